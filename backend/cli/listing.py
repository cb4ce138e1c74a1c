"""``paintbridge models``: what a running daemon offers (models, LoRAs, embeddings,
upscalers, ControlNets), as a table or as the daemon sends it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from paintbridge.plugin.protocol import ErrorCode

from .common import ClientUnusable, ExitCode, client_options, fail, open_client


def add_parser(sub: Any) -> None:
    m = sub.add_parser("models", help="list the daemon's models")
    client_options(m)
    m.add_argument("--json", action="store_true", help="print the list as the daemon sends it")
    m.add_argument("--loras", action="store_true", help="with --json: the LoRAs instead")
    m.add_argument("--controlnets", action="store_true",
                   help="with --json: the ControlNets instead")
    m.set_defaults(func=cmd_models)



def cmd_models(args: argparse.Namespace) -> int:
    from paintbridge.plugin.client import DaemonError

    try:
        client = open_client(args)
    except ClientUnusable as exc:
        return fail(str(exc))
    with client:
        try:
            header = client.request("models", timeout=args.timeout)[0]
        except DaemonError as exc:
            unreachable = exc.code in (ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT)
            return fail(exc.message, ExitCode.UNREACHABLE if unreachable else ExitCode.FAILED)
    models = header["models"]
    loras = header.get("loras", [])   # daemons before LoRAs send none
    if args.json:
        shown = (loras if args.loras else header.get("controlnets", []) if args.controlnets
                 else models)
        print(json.dumps(shown, indent=2))
    else:
        for m in models:
            mark = "*" if m["name"] == header.get("default") else " "
            state = "" if m["usable"] else f"  (not loaded: {m.get('error')})"
            print(f"{mark} {m['name']:40s} {m['arch'] or '?':12s} {m['source']}{state}")
        embeddings = header.get("embeddings", [])
        if embeddings:
            print("Embeddings (a word in a prompt):")
        for em in embeddings:
            state = f"  (not usable: {em.get('error')})" if not em["usable"] else ""
            print(f"  {em['name']:40s} {em['arch'] or '?':12s} {em['vectors']:>3d} vectors"
                  f"{state}")
        upscalers = header.get("upscalers", [])
        if upscalers:
            print("Upscalers (the upscaler setting):")
        for up in upscalers:
            print(f"  {up['name']:40s} {up['path']}")
        if loras:
            print("LoRAs (in a prompt: <lora:NAME:WEIGHT>):")
        for lo in loras:
            size = f"{lo['size'] / 2**20:.1f} MiB"
            state = f"  (not usable: {lo.get('error')})" if not lo["usable"] else ""
            words = f"  triggers: {', '.join(lo['triggers'])}" if lo.get("triggers") else ""
            print(f"  {lo['name']:40s} {lo['arch'] or '?':12s} {size:>10s}{words}{state}")
        nets = header.get("controlnets", [])
        if nets:
            print("ControlNets (edit --control TYPE:FILE:NAME):")
        for net in nets:
            state = f"  (not usable: {net.get('error')})" if not net["usable"] else ""
            arch = net["arch"] or f"width {net['cross_dim']}"
            print(f"  {net['name']:40s} {net['type'] or '?':12s} {arch:12s} {net['layout']}"
                  f"{state}")
    if not any(m["usable"] for m in models):
        return fail("the daemon has no usable model: start it with --models DIR (a folder of "
                     ".safetensors checkpoints or diffusers folders)", ExitCode.FAILED)
    return ExitCode.OK

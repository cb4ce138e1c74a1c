"""``paintbridge install krita|gimp``: hands over to the host's installer (backend/install/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import ExitCode, fail


def add_parser(sub: Any) -> None:
    i = sub.add_parser("install", help="install a host plugin (krita, gimp)")
    host_parsers = i.add_subparsers(dest="host", required=True)
    k = host_parsers.add_parser("krita", help="copy the Krita plugin into Krita's pykrita folder")
    k.add_argument("--resources", help="Krita's resource folder (default: per OS)")
    k.add_argument("--uninstall", action="store_true", help="remove what was installed")
    g = host_parsers.add_parser("gimp", help="copy the GIMP 3 plug-in into GIMP's plug-ins folder")
    g.add_argument("--plug-ins", dest="plug_ins", help="GIMP's plug-ins folder (default: per OS)")
    g.add_argument("--uninstall", action="store_true", help="remove what was installed")
    i.set_defaults(func=cmd_install)


def cmd_install(args: argparse.Namespace) -> int:
    option, given = (("--resources", args.resources) if args.host == "krita"
                     else ("--plug-ins", args.plug_ins))
    if given and Path(given).expanduser().exists() and not Path(given).expanduser().is_dir():
        return fail(f"{option} {given} is a file: give the folder")
    from ..install import gimp, krita

    try:
        return int({"krita": krita, "gimp": gimp}[args.host].run(args))
    except OSError as exc:
        return fail(f"cannot install the {args.host} plugin: {exc}", ExitCode.FAILED)

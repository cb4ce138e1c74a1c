"""The ``paintbridge`` command: ``serve`` (the daemon) and the headless client commands.

Every mistake is one line on stderr, ``paintbridge: …``, and an exit code (``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from paintbridge.plugin import __version__, hosts
from paintbridge.plugin.controls import PREPROCESSORS
from paintbridge.plugin.controls import TYPES as CONTROL_TYPES
from paintbridge.plugin.hosts import ENDPOINT_ENV, is_loopback
from paintbridge.plugin.params import PARAMS
from paintbridge.plugin.protocol import (
    DEFAULT_ENDPOINT,
    KINDS,
    UPSCALE_FACTORS,
    ErrorCode,
    Limits,
)


class ExitCode(IntEnum):
    """What a script can rely on; the numbers are the interface (docstring above)."""

    OK = 0
    FAILED = 1        # the daemon refused or failed the job
    USAGE = 2         # bad usage or input
    UNREACHABLE = 3   # no daemon reachable, or it went silent
    INTERRUPTED = 130  # Ctrl+C (128 + SIGINT); the job is cancelled


DESCRIPTION = ("Stable Diffusion editing for Krita and GIMP: the daemon (serve) and the "
               "command-line clients.")
EXIT_CODES = """exit codes:
  0    done
  1    the daemon refused or failed the job (or had no usable model)
  2    bad usage or input (the message says which)
  3    no daemon reachable, or it went silent
  130  interrupted by Ctrl+C (the job is cancelled)"""


def _fail(message: str, code: ExitCode = ExitCode.USAGE) -> ExitCode:
    print(f"paintbridge: {message}", file=sys.stderr)
    return code


def _config_path() -> Path:
    return hosts.config_dir() / "config.json"


def _offline_env() -> None:
    """Before torch/diffusers are imported: never touch a hub, never spin idle threads."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


# --------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    _offline_env()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from .config import ConfigError, load

    try:
        config = load(Path(args.config) if args.config else _config_path(), bool(args.config))
    except ConfigError as exc:
        return _fail(str(exc))
    for option, folders in (("--models", args.models), ("--loras", args.loras),
                            ("--embeddings", args.embeddings),
                            ("--controlnets", args.controlnets)):
        missing = [d for d in folders if not Path(d).expanduser().is_dir()]
        if missing:
            return _fail(f"{option} {missing[0]}: no such folder")
    from .door.daemon import Daemon
    from .models import device as dev
    from .models.registry import ModelEntry, ModelRegistry, Source

    explicit = []
    for item in config.get("models", []):
        path = Path(item["path"]).expanduser()
        source = Source.FOLDER if path.is_dir() else Source.SINGLE_FILE
        cfg = Path(item["config"]).expanduser() if item.get("config") else None
        explicit.append(ModelEntry(item.get("name") or path.stem, path, source, config=cfg))
    roots = [Path(p) for p in config.get("model_dirs", [])] + [Path(p) for p in args.models]
    registry = ModelRegistry(roots, explicit, include_embedded=not args.no_embedded,
                             default=args.default_model or config.get("default_model"),
                             cache_size=args.cache_size or config.get("cache_size", 2))
    from .models.loras import LoraLibrary, beside_checkpoints

    lora_roots = [Path(p) for p in config.get("lora_dirs", []) + args.loras]
    loras = LoraLibrary(lora_roots + [d for d in beside_checkpoints(roots)
                                      if d not in lora_roots])
    from .models.embeddings import EmbeddingLibrary
    from .models.embeddings import beside_checkpoints as embeddings_beside

    embedding_roots = [Path(p) for p in config.get("embedding_dirs", []) + args.embeddings]
    embeddings = EmbeddingLibrary(embedding_roots + [d for d in embeddings_beside(roots)
                                                     if d not in embedding_roots])
    from .models.upscalers import Upscalers
    from .models.upscalers import default_dirs as upscalers_beside

    upscaler_roots = [Path(p) for p in config.get("upscaler_dirs", []) + args.upscalers]
    upscaler_roots += [d for d in upscalers_beside(roots) if d not in upscaler_roots]
    upscalers = Upscalers(upscaler_roots)
    from .models.controlnets import ControlNetLibrary
    from .models.controlnets import default_dirs as controlnets_beside

    control_roots = [Path(p) for p in config.get("controlnet_dirs", []) + args.controlnets]
    control_roots += [d for d in controlnets_beside(roots) if d not in control_roots]
    controlnets = ControlNetLibrary(control_roots)
    threads = dev.configure_threads(args.threads or config.get("threads"))
    try:
        choice = dev.choose(args.device or config.get("device"),
                            args.dtype or config.get("dtype"))
    except ValueError as exc:
        return _fail(str(exc))
    bind = args.bind or config.get("bind") or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    problem = hosts.endpoint_problem(bind)
    if problem:
        given_by = ("--bind" if args.bind else "config 'bind'" if config.get("bind")
                    else f"${ENDPOINT_ENV}")
        return _fail(f"{given_by} {problem}")
    limits = Limits(**{k: v for k, v in (("max_queue", args.max_queue),
                                         ("max_queue_per_client", args.max_queue_per_client),
                                         ("max_pixels", args.max_pixels))
                       if v is not None})
    from .door import keys

    auth = None
    if args.auth or not is_loopback(bind):
        keys_dir = Path(args.keys or config.get("keys") or keys.default_dir()).expanduser()
        try:
            auth = keys.load_server(keys_dir)
        except (FileNotFoundError, ValueError) as exc:
            return _fail(f"refusing to bind {bind} without authentication: {exc}")
    entries = registry.scan()
    usable = [e for e in entries if e.error is None]
    wanted = registry.default_name
    if wanted and wanted not in {e.name for e in usable}:
        names = ", ".join(e.name for e in usable) or "none"
        return _fail(f"--default-model {wanted!r} is not a usable model here "
                     f"(usable: {names})")
    cluster = None
    address = args.cluster or config.get("cluster")
    replicas = args.replicas or config.get("replicas", 1)
    replica_gpus = (args.replica_gpus if args.replica_gpus is not None
                    else config.get("replica_gpus"))
    if not address and (replicas != 1 or replica_gpus is not None):
        return _fail("--replicas and --replica-gpus need --cluster auto|RAY_ADDRESS "
                     "(docs/cluster.md)")
    if address:
        from .cluster.dispatch import Cluster, ClusterError, ReplicaSetup

        setup = ReplicaSetup(roots, explicit, not args.no_embedded, registry.default_name,
                             args.device or config.get("device"),
                             args.dtype or config.get("dtype"),
                             args.threads or config.get("threads"), upscaler_roots,
                             cache_size=registry.cache_size)
        try:
            cluster = Cluster.start(address, replicas, setup, gpus_per_replica=replica_gpus)
        except ClusterError as exc:
            return _fail(str(exc))
    try:
        daemon = Daemon(bind, registry, choice, limits, dtype_forced=bool(args.dtype),
                        auth=auth, loras=loras, embeddings=embeddings,
                        upscalers=upscalers, cluster=cluster, controlnets=controlnets)
    except ValueError as exc:
        if cluster is not None:
            cluster.stop()
        return _fail(str(exc))
    except Exception as exc:  # zmq.ZMQError: address in use, bad endpoint
        if cluster is not None:
            cluster.stop()
        return _fail(f"cannot bind {bind}: {exc}")
    print(f"paintbridge {__version__} daemon on {daemon.endpoint} "
          f"(device {choice.device}, {choice.dtype_name}, {threads} "
          f"thread{'s' if threads != 1 else ''})", flush=True)
    if cluster is not None:
        info, n = cluster.info, cluster.replicas
        print(f"  cluster: {n} replica{'s' if n != 1 else ''} on Ray ({address}), "
              f"{info.get('gpus_per_replica', 0):g} GPU and {info.get('models_per_replica')} "
              "models kept loaded each", flush=True)
    if auth is not None:
        print(f"  CurveZMQ on: server public key {auth.public.decode()}; clients admitted from "
              f"{auth.authorized}", flush=True)
    for e in entries:
        state = "ok" if e.error is None else f"UNUSABLE: {e.error}"
        print(f"  model {e.name!r} [{e.arch or '?'}, {e.source}] {state}", flush=True)
    for emb in embeddings.entries():
        state = "ok" if emb.error is None else f"UNUSABLE: {emb.error}"
        print(f"  embedding {emb.name!r} [{emb.arch or '?'}, {emb.vectors} vectors] {state}",
              flush=True)
    for lora in loras.scan():
        state = "ok" if lora.error is None else f"UNUSABLE: {lora.error}"
        print(f"  LoRA {lora.name!r} [{lora.arch or '?'}, {lora.format or '?'}] {state}",
              flush=True)
    for net in controlnets.scan():
        state = "ok" if net.error is None else f"UNUSABLE: {net.error}"
        print(f"  ControlNet {net.name!r} [{net.type or '?'}, {net.arch or net.cross_dim}, "
              f"{net.layout or '?'}] {state}", flush=True)
    if not usable:
        print("  no usable model: pass --models DIR (a folder of .safetensors checkpoints or "
              "diffusers folders); jobs will be refused until one is found", flush=True)
    else:
        print(f"  default model: {registry.default}", flush=True)
    daemon.serve()
    print("paintbridge daemon stopped", flush=True)
    return ExitCode.OK


# --------------------------------------------------------------------------- client commands


def _client(args: argparse.Namespace) -> Any:
    from paintbridge.plugin.client import Client

    return Client(args.endpoint, server_key=args.server_key, client_key=args.client_key)


class ClientUnusable(Exception):
    """A client that cannot even be made (a malformed endpoint, unusable keys)."""


def open_client(args: argparse.Namespace) -> Any:
    from paintbridge.plugin.client import DaemonError

    try:
        return _client(args)
    except ValueError as exc:   # the endpoint
        source = "--endpoint" if args.endpoint else f"${ENDPOINT_ENV}"
        raise ClientUnusable(f"{source} {exc}") from None
    except DaemonError as exc:  # the keys
        raise ClientUnusable(hosts.keys_unusable(exc.message)) from None


def cmd_keys(args: argparse.Namespace) -> int:
    from .door import keys

    keys_dir = Path(args.dir).expanduser() if args.dir else keys.default_dir()
    if args.what == "client" and not args.name:
        return _fail("keys client needs a NAME (e.g. `paintbridge keys client bob-laptop`)")
    if args.what != "client" and args.name:
        return _fail(f"keys {args.what} takes no name (got {args.name!r})")
    try:
        if args.what == "server":
            public = keys.create_server(keys_dir, force=args.force)
            print(f"server keys written to {keys_dir}")
            print(f"server public key (give it to clients): {keys.server_public_key(keys_dir)}")
            print(f"  file: {public}")
        elif args.what == "client":
            secret, _ = keys.create_client(keys_dir, args.name)
            server = "SERVER_PUBLIC_KEY"    # a placeholder until `keys server` has run
            if (keys_dir / "server.key").exists():
                server = shlex.quote(keys.server_public_key(keys_dir))
            print(f"client '{args.name}' authorized; copy {secret} to that machine and use "
                  "(quoted for a shell):")
            print(f"  --client-key {shlex.quote(secret.name)} --server-key {server}")
            if server == "SERVER_PUBLIC_KEY":
                print("  (no server keys yet: run `paintbridge keys server`, then `paintbridge "
                      "keys show` prints the key)")
        else:
            print(f"server public key: {keys.server_public_key(keys_dir)}")
            for f in sorted((keys_dir / "authorized").glob("*.key")):
                print(f"authorized client: {f.stem}")
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        raise
    except OSError as exc:   # a keys folder that cannot be written
        return _fail(f"cannot write keys in {keys_dir}: {exc}", ExitCode.FAILED)
    return ExitCode.OK


def cmd_models(args: argparse.Namespace) -> int:
    from paintbridge.plugin.client import DaemonError

    try:
        client = open_client(args)
    except ClientUnusable as exc:
        return _fail(str(exc))
    with client:
        try:
            header = client.request("models", timeout=args.timeout)[0]
        except DaemonError as exc:
            unreachable = exc.code in (ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT)
            return _fail(exc.message, ExitCode.UNREACHABLE if unreachable else ExitCode.FAILED)
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
        return _fail("the daemon has no usable model: start it with --models DIR (a folder of "
                     ".safetensors checkpoints or diffusers folders)", ExitCode.FAILED)
    return ExitCode.OK


def cmd_edit(args: argparse.Namespace) -> int:
    from paintbridge.plugin.client import DaemonError

    from .edit import EditFailed, run_edit

    try:
        return run_edit(args)
    except ClientUnusable as exc:
        return _fail(str(exc))
    except DaemonError as exc:
        return _fail(exc.message, ExitCode.FAILED)
    except EditFailed as exc:
        return _fail(str(exc), exc.exit_code)


def cmd_install(args: argparse.Namespace) -> int:
    """Hand over to the host's installer module (backend/install_<host>.py)."""
    import importlib

    option, given = (("--resources", args.resources) if args.host == "krita"
                     else ("--plug-ins", args.plug_ins))
    if given and Path(given).expanduser().exists() and not Path(given).expanduser().is_dir():
        return _fail(f"{option} {given} is a file: give the folder")
    module = importlib.import_module(f".install.{args.host}", __package__)
    try:
        return int(module.run(args))
    except OSError as exc:
        return _fail(f"cannot install the {args.host} plugin: {exc}", ExitCode.FAILED)


# --------------------------------------------------------------------------- parser


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def _gpus(text: str) -> float:
    from .config import MAX_REPLICA_GPUS

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= MAX_REPLICA_GPUS:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and {MAX_REPLICA_GPUS}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


#: older spellings of `edit` options, still accepted
EDIT_ALIASES = {"negative_prompt": ("--negative",), "guidance": ("--cfg",)}
#: where the command line differs from a host's panel
EDIT_HELP = {"model": "model name (default: the daemon's default model)",
             "count": "variations, seeds SEED, SEED+1, …: one output file each"}


class _Parser(argparse.ArgumentParser):
    """argparse with the one message style: ``paintbridge: …`` on one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"paintbridge: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="paintbridge", description=DESCRIPTION, epilog=EXIT_CODES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"paintbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the daemon in the foreground")
    s.add_argument("--bind", help=f"endpoint to listen on (default ${ENDPOINT_ENV} or "
                                  f"{DEFAULT_ENDPOINT}); non-loopback needs keys "
                                  "(paintbridge keys)")
    s.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="a model folder to scan (repeatable): A1111 models/Stable-diffusion, "
                        "ComfyUI models/checkpoints, or any folder")
    s.add_argument("--loras", action="append", default=[], metavar="DIR",
                   help="a LoRA folder to scan (repeatable); models/Lora beside an A1111 "
                        "models/Stable-diffusion and models/loras beside a ComfyUI "
                        "models/checkpoints given with --models are scanned too")
    s.add_argument("--embeddings", action="append", default=[], metavar="DIR",
                   help="a textual-inversion folder to scan (repeatable); A1111's embeddings/ "
                        "and ComfyUI's models/embeddings beside the --models folders too")
    s.add_argument("--upscalers", action="append", default=[], metavar="DIR",
                   help="an upscaler folder to scan (repeatable: ESRGAN-family .safetensors "
                        "or .pth); A1111's models/ESRGAN and ComfyUI's models/upscale_models "
                        "beside the --models folders too")
    s.add_argument("--controlnets", action="append", default=[], metavar="DIR",
                   help="a ControlNet folder to scan (repeatable: .safetensors single files "
                        "and diffusers folders); A1111's models/ControlNet (and the "
                        "ControlNet extension's models) and ComfyUI's models/controlnet "
                        "beside the --models folders too")
    s.add_argument("--config", help=f"config file (default {_config_path()})")
    s.add_argument("--default-model", help="model used when a request names none")
    s.add_argument("--no-embedded", action="store_true",
                   help="do not offer the embedded default model")
    s.add_argument("--cache-size", type=_at_least_one, help="models kept loaded (LRU, default 2)")
    s.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    s.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                   help="default: fp16 on GPUs, bf16 on CPUs that support it, else fp32")
    s.add_argument("--threads", type=_at_least_one,
                   help="CPU threads (default: cores - 1 on ≤ 4 cores)")
    s.add_argument("--auth", action="store_true",
                   help="require CurveZMQ keys even on loopback (always on for other binds)")
    s.add_argument("--keys", help="keys folder (default ~/.config/paintbridge/keys)")
    s.add_argument("--max-queue", type=int, help=f"jobs queued in all (default "
                                                  f"{Limits.max_queue}); more are refused busy")
    s.add_argument("--max-pixels", type=int,
                   help=f"largest image accepted, in pixels (default {Limits.max_pixels})")
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="run jobs on Ray Serve replicas (pip install 'paintbridge[cluster]'): "
                        "'auto' starts Ray on this machine, an address joins a running Ray "
                        "cluster (docs/cluster.md)")
    s.add_argument("--replicas", type=_at_least_one,
                   help="with --cluster: replicas to run, each owning one device (one GPU "
                        "each where the cluster has GPUs; default 1)")
    s.add_argument("--replica-gpus", type=_gpus, metavar="N",
                   help="with --cluster: GPUs each replica takes (default 1 where the Ray "
                        "cluster has GPUs, else 0: CPU replicas; 0.5 puts two on a GPU)")
    s.add_argument("--max-queue-per-client", type=int,
                   help=f"jobs queued per client (default {Limits.max_queue_per_client})")
    s.set_defaults(func=cmd_serve)

    def client_opts(c: argparse.ArgumentParser) -> None:
        c.add_argument("--endpoint", default=None,
                       help=f"daemon endpoint (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")
        c.add_argument("--timeout", type=_seconds, default=10.0,
                       help="seconds to wait for the daemon to answer (default 10)")
        c.add_argument("--server-key", help="a remote daemon's public key (or its server.key "
                                            "file); turns on CurveZMQ "
                                            f"(env {hosts.SERVER_KEY_ENV})")
        c.add_argument("--client-key", help="this client's secret key file "
                                            f"(env {hosts.CLIENT_KEY_ENV})")

    m = sub.add_parser("models", help="list the daemon's models")
    client_opts(m)
    m.add_argument("--json", action="store_true", help="print the list as the daemon sends it")
    m.add_argument("--loras", action="store_true", help="with --json: the LoRAs instead")
    m.add_argument("--controlnets", action="store_true",
                   help="with --json: the ControlNets instead")
    m.set_defaults(func=cmd_models)

    e = sub.add_parser(
        "edit", help="edit an image through a running daemon",
        description="Edit an image through a running daemon, as a host plugin does.",
        epilog="On success it prints one JSON line on stdout: {\"model\", \"seconds\", "
               "\"results\": [{\"output\", \"patch\", \"x\", \"y\", \"width\", \"height\", "
               "\"seed\"}]}. Exit codes: 0 done, 1 the daemon failed the job, 2 bad usage or "
               "input, 3 no daemon reachable, 130 interrupted.")
    client_opts(e)
    e.add_argument("image", help="input image (PNG, JPEG, ...)")
    e.add_argument("--mask", help="grayscale mask: white = selected, grey = partly selected")
    e.add_argument("--kind", choices=("auto", *KINDS), default="auto",
                   help="auto: inpaint with a mask, else img2img; upscale: the image (or "
                        "the mask's bounding box) enlarged --scale times, OUT the new image")
    e.add_argument("--scale", type=int, choices=UPSCALE_FACTORS, default=2,
                   help="how many times an upscale enlarges (default 2)")
    for row in PARAMS:   # one option per row of the parameter table
        names = [f"--{row.arg_name}", *EDIT_ALIASES.get(row.name, ())]
        default = None if row.unset is not None else row.start
        fixed = list(row.choices) if row.choices and not row.from_daemon else None
        facts = [t for t in (row.range_text(), row.default_text() and
                             f"default {row.default_text()}") if t]
        text = EDIT_HELP.get(row.name, row.help)
        if facts:   # into the help's own closing parenthesis, if it has one
            text = (f"{text[:-1]}; " if text.endswith(")") else f"{text} (") + \
                f"{'; '.join(facts)})"
        if row.wire == "loras":   # --lora NAME:WEIGHT, repeatable, as A1111 users write it
            e.add_argument("--lora", *names, dest=row.name, action="append", metavar="LORA",
                           help=f"{text}; repeatable")
            continue
        e.add_argument(*names, dest=row.name, type=row.type, default=default, choices=fixed,
                       required=row.name == "prompt", help=text)
    e.add_argument("--control", action="append", default=[], metavar="TYPE:FILE[:MODEL[:STRENGTH]]",
                   help="steer with a control image the size of IMAGE (repeatable, up to 4): "
                        "TYPE is one of " + ", ".join(CONTROL_TYPES) + " (TYPE/PREPROCESS "
                        "picks the preprocessor: " + ", ".join(PREPROCESSORS) + "); MODEL a "
                        "ControlNet's name (default: one of the type for the model); "
                        "STRENGTH 0-2 (default 1)")
    e.add_argument("-o", "--output", required=True,
                   help="the image with the result laid over it: .png, .webp (lossless), .tif "
                        "or .jpg (transparency flattened onto white); beside it OUT.patch.png, "
                        "the result alone with its alpha; with --count N also OUT-1 … OUT-(N-1)")
    e.add_argument("--job-timeout", type=_seconds, default=600.0,
                   help="give up when the daemon is silent this long during a job, in seconds "
                        "(default 600)")
    e.set_defaults(func=cmd_edit)

    kp = sub.add_parser(
        "keys", help="create CurveZMQ keys for a remote daemon",
        description="Keys let a daemon listen beyond this machine (docs/security.md).",
        epilog="  server       make the daemon's keypair (once, on the daemon's machine)\n"
               "  client NAME  make and authorize a keypair for one client machine; prints "
               "the\n               options to use there, quoted for a shell\n"
               "  show         print the daemon's public key and the authorized clients",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kp.add_argument("what", choices=["server", "client", "show"], help="what to do (below)")
    kp.add_argument("name", nargs="?", help="the client's name, for 'client': letters, digits, "
                                            "- and _ (e.g. bob-laptop)")
    kp.add_argument("--dir", help="keys folder (default ~/.config/paintbridge/keys)")
    kp.add_argument("--force", action="store_true", help="replace existing server keys")
    kp.set_defaults(func=cmd_keys)

    i = sub.add_parser("install", help="install a host plugin (krita, gimp)")
    host_parsers = i.add_subparsers(dest="host", required=True)
    k = host_parsers.add_parser("krita", help="copy the Krita plugin into Krita's pykrita folder")
    k.add_argument("--resources", help="Krita's resource folder (default: per OS)")
    k.add_argument("--uninstall", action="store_true", help="remove what was installed")
    g = host_parsers.add_parser("gimp", help="copy the GIMP 3 plug-in into GIMP's plug-ins folder")
    g.add_argument("--plug-ins", dest="plug_ins", help="GIMP's plug-ins folder (default: per OS)")
    g.add_argument("--uninstall", action="store_true", help="remove what was installed")
    i.set_defaults(func=cmd_install)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:   # `paintbridge keys show | head -1`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return ExitCode.OK
    return code


if __name__ == "__main__":
    sys.exit(main())

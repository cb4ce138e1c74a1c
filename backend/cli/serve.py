"""``paintbridge serve``: the daemon in the foreground.

Reads as its steps: 1. the settings (config file, then options); 2. the artist's files;
3. the device; 4. the endpoint and its keys; 5. the cluster, if asked for; 6. the daemon,
its banner, and the poll loop until a signal stops it. Every refusal is one line and exit 2
before anything is bound or loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paintbridge.plugin import __version__, shared
from paintbridge.plugin.limits import Limits
from paintbridge.plugin.protocol import DEFAULT_ENDPOINT
from paintbridge.plugin.shared import ENDPOINT_ENV, is_loopback

from .. import settings
from .common import ExitCode, config_path, fail


class Refused(Exception):
    """A setting the daemon cannot start with; the message is the one line shown."""


def add_parser(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the daemon in the foreground")
    s.add_argument("--config", help=f"config file (default {config_path()})")
    settings.add_options(s)
    s.set_defaults(func=cmd_serve)


def _offline_env() -> None:
    """Before torch/diffusers are imported: never touch a hub, never spin idle threads."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def cmd_serve(args: argparse.Namespace) -> int:
    _offline_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cluster = None
    try:
        # 1. the settings
        config = settings.load(Path(args.config) if args.config else config_path(),
                               bool(args.config))
        s = settings.resolve(args, config)
        _check_folders(args)
        # 2. the artist's files
        files = _library(s)
        # 3. the device
        from ..models import device as dev

        threads = dev.configure_threads(s["threads"])
        try:
            choice = dev.choose(s["device"], s["dtype"])
        except ValueError as exc:
            raise Refused(str(exc)) from None
        # 4. the endpoint and its keys
        bind, auth = _endpoint(s)
        files.entries = _usable_default(files)
        # 5. the cluster
        cluster = _cluster(s, files)
        # 6. the daemon
        daemon = _daemon(s, files, choice, bind, auth, cluster)
    except (settings.ConfigError, Refused) as exc:
        if cluster is not None:
            cluster.stop()
        return fail(str(exc))
    _banner(daemon, choice, threads, files, auth, cluster, s["cluster"])
    daemon.serve()
    print("paintbridge daemon stopped", flush=True)
    return ExitCode.OK


def _check_folders(args: argparse.Namespace) -> None:
    """A folder typed on the command line that is not there is a typo; one in the config
    file may be a disk not mounted yet, and is scanned when it appears."""
    for key in ("model_dirs", "lora_dirs", "embedding_dirs", "controlnet_dirs"):
        missing = [d for d in getattr(args, key) if not Path(d).expanduser().is_dir()]
        if missing:
            raise Refused(f"{settings.BY_KEY[key].option} {missing[0]}: no such folder")


@dataclass
class Library:
    """The artist's files, found once at start: what every job may name."""

    registry: Any
    explicit: list[Any]
    loras: Any
    embeddings: Any
    upscalers: Any
    upscaler_roots: list[Path]
    controlnets: Any
    roots: list[Path]
    entries: list[Any] = field(default_factory=list)   # the models, once scanned


def _beside(given: list[Path], found: list[Path]) -> list[Path]:
    """The folders given, then those found beside the checkpoints, each once."""
    return given + [d for d in found if d not in given]


def _library(s: settings.Resolved) -> Library:
    from ..models import controlnets, embeddings, loras, upscalers
    from ..models.registry import ModelEntry, ModelRegistry, Source

    explicit = []
    for item in s["models"]:
        path = Path(item["path"]).expanduser()
        source = Source.FOLDER if path.is_dir() else Source.SINGLE_FILE
        cfg = Path(item["config"]).expanduser() if item.get("config") else None
        explicit.append(ModelEntry(item.get("name") or path.stem, path, source, config=cfg))
    roots = s["model_dirs"]
    registry = ModelRegistry(roots, explicit, include_embedded=not s["no_embedded"],
                             default=s["default_model"], cache_size=s["cache_size"])
    upscaler_roots = _beside(s["upscaler_dirs"], upscalers.default_dirs(roots))
    return Library(
        registry, explicit,
        loras.LoraLibrary(_beside(s["lora_dirs"], loras.beside_checkpoints(roots))),
        embeddings.EmbeddingLibrary(_beside(s["embedding_dirs"],
                                            embeddings.beside_checkpoints(roots))),
        upscalers.Upscalers(upscaler_roots), upscaler_roots,
        controlnets.ControlNetLibrary(_beside(s["controlnet_dirs"],
                                              controlnets.default_dirs(roots))),
        roots)


def _endpoint(s: settings.Resolved) -> tuple[str, Any]:
    """The endpoint to bind and its CurveZMQ keys (None on loopback without --auth)."""
    from ..door import keys

    bind = s["bind"] or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    problem = shared.endpoint_problem(bind)
    if problem:
        raise Refused(f"{s.given_by.get('bind', f'${ENDPOINT_ENV}')} {problem}")
    if not (s["auth"] or not is_loopback(bind)):
        return bind, None
    keys_dir = Path(s["keys"] or keys.default_dir()).expanduser()
    try:
        return bind, keys.load_server(keys_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise Refused(f"refusing to bind {bind} without authentication: {exc}") from None


def _usable_default(files: Library) -> list[Any]:
    """The models found, once the default asked for is among the usable ones."""
    entries = files.registry.scan()
    usable = [e for e in entries if e.error is None]
    wanted = files.registry.default_name
    if wanted and wanted not in {e.name for e in usable}:
        names = ", ".join(e.name for e in usable) or "none"
        raise Refused(f"--default-model {wanted!r} is not a usable model here "
                      f"(usable: {names})")
    return entries


def _cluster(s: settings.Resolved, files: Library) -> Any:
    address = s["cluster"]
    if not address:
        if s["replicas"] != 1 or s["replica_gpus"] is not None:
            raise Refused("--replicas and --replica-gpus need --cluster auto|RAY_ADDRESS "
                          "(docs/cluster.md)")
        return None
    from ..cluster.dispatch import Cluster, ClusterError, ReplicaSetup

    setup = ReplicaSetup(files.roots, files.explicit, not s["no_embedded"],
                         files.registry.default_name, s["device"], s["dtype"], s["threads"],
                         files.upscaler_roots, cache_size=files.registry.cache_size,
                         whole_max_pixels=s["whole_max_pixels"])
    try:
        return Cluster.start(address, s["replicas"], setup, gpus_per_replica=s["replica_gpus"])
    except ClusterError as exc:
        raise Refused(str(exc)) from None


def _daemon(s: settings.Resolved, files: Library, choice: Any, bind: str, auth: Any,
            cluster: Any) -> Any:
    from ..door.daemon import Daemon

    limits = Limits(max_queue=s["max_queue"], max_queue_per_client=s["max_queue_per_client"],
                    max_pixels=s["max_pixels"])
    try:
        return Daemon(bind, files.registry, choice, limits, s["whole_max_pixels"],
                      dtype_forced=s["dtype"] not in (None, "auto"), auth=auth,
                      loras=files.loras, embeddings=files.embeddings, upscalers=files.upscalers,
                      cluster=cluster, controlnets=files.controlnets)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    except Exception as exc:  # zmq.ZMQError: address in use, bad endpoint
        raise Refused(f"cannot bind {bind}: {exc}") from None


def _banner(daemon: Any, choice: Any, threads: int, files: Library, auth: Any, cluster: Any,
            address: str | None) -> None:
    def say(text: str) -> None:
        print(text, flush=True)

    say(f"paintbridge {__version__} daemon on {daemon.endpoint} (device {choice.device}, "
        f"{choice.dtype_name}, {threads} thread{'s' if threads != 1 else ''})")
    if cluster is not None:
        info, n = cluster.info, cluster.replicas
        say(f"  cluster: {n} replica{'s' if n != 1 else ''} on Ray ({address}), "
            f"{info.get('gpus_per_replica', 0):g} GPU and {info.get('models_per_replica')} "
            "models kept loaded each")
    if auth is not None:
        say(f"  CurveZMQ on: server public key {auth.public.decode()}; clients admitted from "
            f"{auth.authorized}")

    def state(error: str | None) -> str:
        return "ok" if error is None else f"UNUSABLE: {error}"

    entries = files.entries
    for e in entries:
        say(f"  model {e.name!r} [{e.arch or '?'}, {e.source}] {state(e.error)}")
    for emb in files.embeddings.entries():
        say(f"  embedding {emb.name!r} [{emb.arch or '?'}, {emb.vectors} vectors] "
            f"{state(emb.error)}")
    for lora in files.loras.scan():
        say(f"  LoRA {lora.name!r} [{lora.arch or '?'}, {lora.format or '?'}] "
            f"{state(lora.error)}")
    for net in files.controlnets.scan():
        say(f"  ControlNet {net.name!r} [{net.type or '?'}, {net.arch or net.cross_dim}, "
            f"{net.layout or '?'}] {state(net.error)}")
    if not any(e.error is None for e in entries):
        say("  no usable model: pass --models DIR (a folder of .safetensors checkpoints or "
            "diffusers folders); jobs will be refused until one is found")
    else:
        say(f"  default model: {files.registry.default}")

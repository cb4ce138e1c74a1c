"""The daemon's settings, one table: each row is a ``serve`` option, a config-file key or both,
with its rule, default and help.

``paintbridge serve``'s options, the config file's checks and the table in docs/daemon.md
(``scripts/settings_table.py`` writes it) all read :data:`SETTINGS`, so a new setting costs
one row. A wrong type in the config file would otherwise surface much later and far away
(``"model_dirs": "/a/path"`` walked the whole filesystem character by character), so every
key has a rule, a wrong value stops ``serve`` with one line naming the file and the key, and
an unknown key (a typo like ``default_modle``) is reported and ignored. Command-line options
win over the config file; folder lists add up.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paintbridge.plugin.limits import Limits
from paintbridge.plugin.protocol import DEFAULT_ENDPOINT
from paintbridge.plugin.shared import ENDPOINT_ENV

#: the torch dtypes a user may name (config, paintbridge.json); device.DTYPES maps them
DTYPE_NAMES = ("float32", "float16", "bfloat16")
#: the most GPUs one cluster replica may take (config and --replica-gpus)
MAX_REPLICA_GPUS = 64
#: the largest region painted in one call at low strength (why: backend/jobs/paths.py)
WHOLE_MAX_PIXELS = 1024 * 1024


class ConfigError(ValueError):
    """The config file cannot be used: the message names the file and what to fix."""


# ------------------------------------------------------------- config-file rules (JSON values)

def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError('must be a list of paths, e.g. ["/data/models"]')
    return value


def _positive(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a whole number of at least 1")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _dtype(value: Any) -> str:
    if value != "auto" and value not in DTYPE_NAMES:
        raise ValueError(f"must be auto, {', '.join(DTYPE_NAMES[:-1])} or {DTYPE_NAMES[-1]}")
    return value


def _gpus(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value <= MAX_REPLICA_GPUS:
        raise ValueError(f"must be a number from 0 to {MAX_REPLICA_GPUS} (GPUs each replica "
                         "takes)")
    return float(value)


def _models(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError('must be a list of {"path": ..., "name": ..., "config": ...}')
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) \
                or not item["path"]:
            raise ValueError(f"entry {i + 1} needs a \"path\" (a file or folder)")
        extra = set(item) - {"path", "name", "config"}
        if extra:
            raise ValueError(f"entry {i + 1} has unknown key(s) {', '.join(sorted(extra))} "
                             "(known: path, name, config)")
        for key in ("name", "config"):
            if key in item:
                _string(item[key])
    return value


# ------------------------------------------------------------- command-line parsers (text)

def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def gpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= MAX_REPLICA_GPUS:
        raise argparse.ArgumentTypeError(
            f"{value:g} is not between 0 and {MAX_REPLICA_GPUS}")
    return value


# ------------------------------------------------------------- the table

@dataclass(frozen=True)
class Setting:
    """One setting. ``rule`` checks its config-file value (None: command line only);
    ``option`` is its ``serve`` option (None: config file only)."""

    key: str
    help: str
    rule: Callable[[Any], Any] | None = None
    option: str | None = None
    parse: Callable[[str], Any] | None = None   # the option's text -> value
    default: Any = None
    folders: bool = False      # a repeatable DIR option; the config's list and it add up
    flag: bool = False
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    shown_default: str | None = None   # for help and docs, where the default is worked out


_FOLDER_HELP = " (repeatable)"

SETTINGS: tuple[Setting, ...] = (
    Setting("bind", "endpoint to listen on; a non-loopback one needs keys (paintbridge keys)",
            _string, "--bind", shown_default=f"${ENDPOINT_ENV} or {DEFAULT_ENDPOINT}"),
    Setting("model_dirs", "a model folder to scan: A1111 models/Stable-diffusion, ComfyUI "
            "models/checkpoints, or any folder", _strings, "--models", folders=True),
    Setting("lora_dirs", "a LoRA folder to scan; models/Lora beside an A1111 "
            "models/Stable-diffusion and models/loras beside a ComfyUI models/checkpoints "
            "are scanned too", _strings, "--loras", folders=True),
    Setting("embedding_dirs", "a textual-inversion folder to scan; A1111's embeddings/ and "
            "ComfyUI's models/embeddings beside the model folders too", _strings,
            "--embeddings", folders=True),
    Setting("upscaler_dirs", "an upscaler folder to scan (ESRGAN-family .safetensors or "
            ".pth); A1111's models/ESRGAN and ComfyUI's models/upscale_models beside the "
            "model folders too", _strings, "--upscalers", folders=True),
    Setting("controlnet_dirs", "a ControlNet folder to scan (.safetensors single files and "
            "diffusers folders); A1111's models/ControlNet (and the ControlNet extension's "
            "models) and ComfyUI's models/controlnet beside the model folders too", _strings,
            "--controlnets", folders=True),
    Setting("models", 'models named one by one: [{"path": …, "name": …, "config": …}]; '
            "config is a diffusers config folder for a single file of an unusual "
            "architecture", _models, default=[]),
    Setting("default_model", "model used when a request names none", _optional(_string),
            "--default-model", shown_default="the first usable model"),
    Setting("no_embedded", "do not offer the embedded default model", _flag, "--no-embedded",
            default=False, flag=True),
    Setting("cache_size", "models kept loaded (least recently used goes first)", _positive,
            "--cache-size", at_least_one, default=2),
    Setting("device", "cpu, cuda, cuda:1, mps or auto", _string, "--device",
            shown_default="the best available"),
    Setting("dtype", "the weights' precision", _dtype, "--dtype", choices=DTYPE_NAMES,
            shown_default="fp16 on GPUs, bf16 on CPUs that support it, else fp32"),
    Setting("threads", "CPU threads", _optional(_positive), "--threads", at_least_one,
            shown_default="cores - 1 on ≤ 4 cores"),
    Setting("auth", "require CurveZMQ keys even on loopback (always on for other binds)",
            _flag, "--auth", default=False, flag=True),
    Setting("keys", "keys folder", _string, "--keys",
            shown_default="~/.config/paintbridge/keys"),
    Setting("max_queue", "jobs queued in all; more are refused busy", _positive,
            "--max-queue", at_least_one, default=Limits.max_queue),
    Setting("max_queue_per_client", "jobs queued per client", _positive,
            "--max-queue-per-client", at_least_one, default=Limits.max_queue_per_client),
    Setting("max_pixels", "largest image accepted, in pixels", _positive, "--max-pixels",
            at_least_one, default=Limits.max_pixels),
    Setting("whole_max_pixels", "image to image at low strength (up to 0.6) repaints "
            "regions up to this many pixels in one call at their own resolution, as the "
            "model's own pipeline would; larger ones in one call reduced to this, its change "
            "carried up over the source's own detail, with memory flat. More: more of the "
            "model's own detail on large regions, more memory and time (a large GPU may "
            "take 4194304, 2048²)",
            _positive, "--whole-max-pixels", at_least_one, default=WHOLE_MAX_PIXELS),
    Setting("cluster", "run jobs on Ray Serve replicas (pip install 'paintbridge[cluster]'): "
            "'auto' starts Ray on this machine, an address joins a running Ray cluster "
            "(docs/cluster.md)", _optional(_string), "--cluster", metavar="ADDRESS"),
    Setting("replicas", "with cluster: replicas to run, each owning one device (one GPU each "
            "where the cluster has GPUs)", _positive, "--replicas", at_least_one, default=1),
    Setting("replica_gpus", "with cluster: GPUs each replica takes (0.5 puts two on a GPU)",
            _optional(_gpus), "--replica-gpus", gpus, metavar="N",
            shown_default="1 where the Ray cluster has GPUs, else 0: CPU replicas"),
)
BY_KEY = {s.key: s for s in SETTINGS}


def shown_default(s: Setting) -> str:
    if s.shown_default is not None:
        return s.shown_default
    unset = s.default is None or s.default is False or s.default == []
    return "" if unset else json.dumps(s.default)


def add_options(parser: argparse.ArgumentParser) -> None:
    """One ``serve`` option per row that has one."""
    for s in SETTINGS:
        if s.option is None:
            continue
        default = shown_default(s)
        text = s.help + (_FOLDER_HELP if s.folders else "") + (f" (default: {default})"
                                                               if default else "")
        if s.flag:
            parser.add_argument(s.option, dest=s.key, action="store_true", default=None,
                                help=text)
        elif s.folders:
            parser.add_argument(s.option, dest=s.key, action="append", default=[],
                                metavar=s.metavar or "DIR", help=text)
        else:
            parser.add_argument(s.option, dest=s.key, type=s.parse or str, choices=s.choices,
                                metavar=s.metavar, help=text)


@dataclass(frozen=True)
class Resolved:
    """The settings in force: the command line over the config file over the defaults."""

    values: dict[str, Any]
    given_by: dict[str, str]    # key -> "--bind" or "config 'bind'", for messages

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def given(self, key: str) -> bool:
        return key in self.given_by


def resolve(args: argparse.Namespace, config: dict[str, Any]) -> Resolved:
    values: dict[str, Any] = {}
    given_by: dict[str, str] = {}
    for s in SETTINGS:
        cli = getattr(args, s.key, None) if s.option else None
        if s.folders:
            values[s.key] = [Path(p) for p in [*config.get(s.key, []), *(cli or [])]]
            if cli:
                given_by[s.key] = s.option or s.key
            continue
        if cli is not None:
            values[s.key], given_by[s.key] = cli, s.option or s.key
        elif config.get(s.key) is not None:
            values[s.key], given_by[s.key] = config[s.key], f"config {s.key!r}"
        else:
            values[s.key] = s.default
    return Resolved(values, given_by)


def check(data: Any, where: Path) -> dict[str, Any]:
    """The config's keys, each checked; raises ConfigError naming the first wrong one and
    reports unknown keys on stderr."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object")
    known = [s.key for s in SETTINGS if s.rule is not None]
    out: dict[str, Any] = {}
    for key, value in data.items():
        rule = BY_KEY[key].rule if key in BY_KEY else None
        if rule is None:
            print(f"paintbridge: {where}: ignoring unknown key {key!r} (known: "
                  f"{', '.join(known)})", file=sys.stderr)
            continue
        try:
            out[key] = rule(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {key!r} {exc}") from None
    return out


def load(path: Path, given: bool) -> dict[str, Any]:
    """The checked config at ``path``; {} when the default file does not exist."""
    if not path.is_file():
        if given:
            raise ConfigError(f"config file {path} not found")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return check(data, path)


def markdown_table() -> str:
    """docs/daemon.md's settings table, as ``scripts/settings_table.py`` writes it."""
    lines = ["| option | config key | default | what it does |", "|---|---|---|---|"]
    for s in SETTINGS:
        option = f"`{s.option}`" if s.option else "—"
        key = f"`{s.key}`" if s.rule is not None else "—"
        what = s.help + (" (repeatable; adds to the config's list)" if s.folders else "")
        lines.append(f"| {option} | {key} | {shown_default(s) or '—'} | "
                     f"{what.replace('|', '/')} |")
    return "\n".join(lines) + "\n"

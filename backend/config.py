"""The daemon's config file, checked key by key before anything starts.

A wrong type would otherwise surface much later and far away (``"model_dirs": "/a/path"``
walked the whole filesystem character by character), so every key has a rule here, a wrong
value stops ``serve`` with one line naming the file and the key, and an unknown key (a typo
like ``default_modle``) is reported and ignored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the torch dtypes a user may name (config, paintbridge.json); device.DTYPES maps them
DTYPE_NAMES = ("float32", "float16", "bfloat16")


class ConfigError(ValueError):
    """The config file cannot be used: the message names the file and what to fix."""


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


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _dtype(value: Any) -> str:
    if value != "auto" and value not in DTYPE_NAMES:
        raise ValueError(f"must be auto, {', '.join(DTYPE_NAMES[:-1])} or {DTYPE_NAMES[-1]}")
    return value


#: the most GPUs one cluster replica may take (config and --replica-gpus)
MAX_REPLICA_GPUS = 64


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


RULES: dict[str, Callable[[Any], Any]] = {
    "bind": _string, "model_dirs": _strings, "lora_dirs": _strings, "embedding_dirs": _strings,
    "upscaler_dirs": _strings, "controlnet_dirs": _strings,
    "models": _models,
    "default_model": _optional(_string), "cache_size": _positive, "device": _string,
    "dtype": _dtype, "threads": _optional(_positive), "keys": _string,
    "cluster": _optional(_string), "replicas": _positive, "replica_gpus": _optional(_gpus),
}


def check(data: Any, where: Path) -> dict[str, Any]:
    """The config's keys, each checked; raises ConfigError naming the first wrong one and
    reports unknown keys on stderr."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a JSON object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        rule = RULES.get(key)
        if rule is None:
            print(f"paintbridge: {where}: ignoring unknown key {key!r} (known: "
                  f"{', '.join(RULES)})", file=sys.stderr)
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

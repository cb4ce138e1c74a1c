"""How LoRAs are asked for: A1111's ``<lora:NAME:WEIGHT>`` in a prompt, the hosts' text
field (``ink:0.8, detail:1:0.5``) and the wire form (``[{"name", "weight",
"text_encoder_weight"?}]``), one grammar for all three.

A1111's meaning of the numbers is kept: ``NAME:W`` sets both weights, ``NAME:TE:UNET`` sets
the text encoder's then the UNet's, and ``te=``/``unet=`` name them. Standard library only
(the hosts import it).
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_WEIGHT = 4.0
MAX_NAME = 512
_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)


def _weight(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: '{text}' is not a weight (a number like 0.8)") from None
    if not math.isfinite(value) or abs(value) > MAX_WEIGHT:
        raise ValueError(f"{where}: weight {text} is outside -{MAX_WEIGHT:g}..{MAX_WEIGHT:g}")
    return value


def parse_one(text: str) -> dict[str, Any]:
    """``NAME``, ``NAME:W``, ``NAME:TE:UNET``, ``NAME:te=X:unet=Y`` -> a wire item."""
    parts = [p.strip() for p in text.split(":")]
    name, rest = parts[0], parts[1:]
    if not name:
        raise ValueError(f"'{text}': a LoRA needs a name (NAME:WEIGHT)")
    positional = [p for p in rest if "=" not in p]
    named = dict(p.split("=", 1) for p in rest if "=" in p)
    unknown = set(named) - {"te", "unet"}
    if unknown or len(positional) > 2:
        raise ValueError(f"'{text}': write NAME:WEIGHT, NAME:TE:UNET or NAME:te=X:unet=Y")
    te = _weight(positional[0], name) if positional else 1.0
    te = _weight(named["te"], name) if "te" in named else te
    unet = _weight(positional[1], name) if len(positional) > 1 else te
    unet = _weight(named["unet"], name) if "unet" in named else unet
    item: dict[str, Any] = {"name": name, "weight": unet}
    if te != unet:
        item["text_encoder_weight"] = te
    return item


def parse_text(text: str) -> list[dict[str, Any]] | None:
    """A host's field: comma-separated ``NAME:WEIGHT`` (or ``<lora:…>`` tags); None when
    empty. ValueError with the wrong entry named."""
    text = _TAG.sub(lambda m: f",{m.group(1)},", text or "")
    items = [parse_one(part) for part in (p.strip() for p in text.split(",")) if part]
    return items or None


def format_text(items: list[dict[str, Any]] | None) -> str:
    """The wire form back as a host's field."""
    out = []
    for item in items or []:
        unet = item.get("weight", 1.0)
        te = item.get("text_encoder_weight", unet)
        weights = f":{unet:g}" if te == unet else f":{te:g}:{unet:g}"
        out.append(f"{item['name']}{'' if weights == ':1' else weights}")
    return ", ".join(out)


def from_prompt(prompt: str) -> tuple[str, list[dict[str, Any]]]:
    """A1111's tags taken out of a prompt: (the text the encoder sees, the LoRAs asked for)."""
    items = [parse_one(m.group(1)) for m in _TAG.finditer(prompt)]
    if not items:
        return prompt, []
    text = _TAG.sub(" ", prompt)
    text = re.sub(r"\s*,(\s*,)+", ",", text)          # "a, <lora:x>, b" -> "a, b"
    text = re.sub(r"\s+", " ", text).strip(" ,")
    return text, items


def check(value: Any, limit: int) -> list[dict[str, Any]]:
    """The wire form, checked: ValueError with what is wrong. Names are looked up by the
    daemon later; here only their shape."""
    if not isinstance(value, list):
        raise ValueError('loras must be a list of {"name": ..., "weight": ...}')
    if len(value) > limit:
        raise ValueError(f"loras: {len(value)} given; at most {limit} at once")
    out, seen = [], set()
    for i, item in enumerate(value):
        where = f"loras[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f'{where} must be {{"name": ..., "weight": ...}}')
        extra = set(item) - {"name", "weight", "text_encoder_weight"}
        if extra:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        name = item["name"]
        if not name or len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
            raise ValueError(f"{where}.name must be 1-{MAX_NAME} printable characters")
        if name in seen:
            raise ValueError(f"{where}: LoRA '{name}' is asked for twice")
        seen.add(name)
        clean: dict[str, Any] = {"name": name}
        for key in ("weight", "text_encoder_weight"):
            w = item.get(key, 1.0 if key == "weight" else None)
            if w is None:
                continue
            if isinstance(w, bool) or not isinstance(w, (int, float)) or \
                    not math.isfinite(w) or abs(w) > MAX_WEIGHT:
                raise ValueError(f"{where}.{key} must be a number in "
                                 f"-{MAX_WEIGHT:g}..{MAX_WEIGHT:g}")
            clean[key] = float(w)
        out.append(clean)
    return out

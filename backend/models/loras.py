"""The artist's LoRA files: where they are, what each one is for, read from headers only.

A LoRA is listed before it is ever loaded, so everything here comes from the safetensors
header (tensor names, shapes, and the metadata kohya's trainer writes): which format, which
architecture (SD 1.x / SD 2.x / SDXL), its rank, its size, and the trigger words it was
trained with. No tensor is read; a broken file is listed with the reason, not skipped.

Folders: ``--loras DIR`` (and ``lora_dirs`` in the config), plus the ones users already have
beside their checkpoints: A1111 ``models/Lora`` next to ``models/Stable-diffusion``, ComfyUI
``models/loras`` next to ``models/checkpoints``. Names are the file's path relative to its
folder without the extension (``style/ink``); A1111's ``<lora:ink:0.8>`` also finds it by its
bare file name when that is unique.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import folders

#: trigger words listed per LoRA (kohya's tag counts can hold thousands of caption tags)
MAX_TRIGGERS = 12
#: pickle formats: listed, never opened
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PICKLE_REFUSED = ("pickle files are unsafe, they can run code when opened: use the "
                  ".safetensors version of this LoRA")

#: cross-attention width -> architecture (the text encoder's hidden size the UNet attends to)
_CROSS_DIM_ARCH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
#: what kohya writes in ss_base_model_version / modelspec.architecture
_META_ARCH = (("sdxl", "sdxl"), ("stable-diffusion-xl", "sdxl"), ("sd_v2", "sd2"),
              ("stable-diffusion-v2", "sd2"), ("sd_v1", "sd1"), ("stable-diffusion-v1", "sd1"))


@dataclass
class LoraEntry:
    name: str
    path: Path
    size: int = 0
    format: str | None = None        # "kohya", "diffusers" (PEFT keys), "diffusers-old"
    arch: str | None = None          # "sd1", "sd2", "sdxl", or None when unknown
    cross_dim: int | None = None     # the cross-attention width it was trained against
    rank: int | None = None
    text_encoder: bool = False       # it also changes the text encoder
    triggers: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def stem(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "arch": self.arch, "format": self.format,
                               "size": self.size, "rank": self.rank,
                               "text_encoder": self.text_encoder, "triggers": self.triggers,
                               "usable": self.error is None}
        if self.cross_dim is not None:
            out["cross_dim"] = self.cross_dim
        if self.error:
            out["error"] = self.error
        return out


# --------------------------------------------------------------------------- folders


def beside_checkpoints(model_roots: Iterable[Path]) -> list[Path]:
    """The LoRA folders of the A1111 / ComfyUI installs whose checkpoint folders are given."""
    return folders.beside_checkpoints(model_roots, "../Lora", "../loras")


def discover(root: Path) -> list[LoraEntry]:
    """Every LoRA file under ``root``, confined to it like models."""
    found: list[LoraEntry] = []
    for path in folders.walk(root):
        name = path.relative_to(root).with_suffix("").as_posix()
        if path.suffix == ".safetensors":
            found.append(LoraEntry(name, path))
        elif path.suffix in PICKLE_SUFFIXES:
            found.append(LoraEntry(name, path, error=PICKLE_REFUSED))
    return found


# --------------------------------------------------------------------------- inspection


def _format(keys: list[str]) -> str | None:
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        if any(part in k for k in keys for part in ("hada_w", "lokr_w", ".oft_")):
            return "lycoris"
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "diffusers"
    if any(k.endswith((".down.weight", ".up.weight")) and "lora" in k for k in keys):
        return "diffusers-old"
    return None


def _cross_dim(shapes: dict[str, list[int]]) -> int | None:
    """The input width of a cross-attention key/value projection's down matrix."""
    for key, shape in shapes.items():
        k = key.replace(".", "_")
        if "attn2" in k and ("to_k" in k or "to_v" in k) and len(shape) == 2 and \
                re.search(r"(lora_down|lora_A|down)_weight$", k):
            return shape[1]
    return None


def _rank(shapes: dict[str, list[int]]) -> int | None:
    for key, shape in shapes.items():
        if re.search(r"(lora_down|lora_A|\.down)\.weight$", key) and shape:
            return shape[0]
    return None


def _meta_arch(meta: dict[str, str]) -> str | None:
    text = " ".join(meta.get(k, "") for k in ("modelspec.architecture",
                                             "ss_base_model_version")).lower()
    for marker, arch in _META_ARCH:
        if marker in text:
            return arch
    return None


def triggers(meta: dict[str, str]) -> list[str]:
    """The words a LoRA was trained with: kohya's ``ss_tag_frequency`` (caption tags by
    dataset folder, most frequent first), or a modelspec trigger phrase."""
    phrase = meta.get("modelspec.trigger_phrase", "").strip()
    out = [p.strip() for p in phrase.split(",") if p.strip()] if phrase else []
    try:
        folders = json.loads(meta.get("ss_tag_frequency") or "{}")
    except ValueError:
        folders = {}
    counts: dict[str, int] = {}
    if isinstance(folders, dict):
        for tags in folders.values():
            if isinstance(tags, dict):
                for tag, n in tags.items():
                    if isinstance(n, int) and isinstance(tag, str) and tag.strip():
                        counts[tag.strip()] = counts.get(tag.strip(), 0) + n
    for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if tag not in out:
            out.append(tag)
    return out[:MAX_TRIGGERS]


def inspect(entry: LoraEntry) -> LoraEntry:
    """Fill in what the header tells; a file that is not a LoRA gets ``error``."""
    if entry.error:
        return entry
    from safetensors import safe_open

    try:
        entry.size = entry.path.stat().st_size
        with safe_open(str(entry.path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:   # a truncated or foreign file: listed, with why
        entry.error = f"cannot read {entry.path.name}: {exc}"
        return entry
    keys = list(shapes)
    entry.format = _format(keys)
    if entry.format is None:
        entry.error = ("not a LoRA (no lora_unet_/lora_te_ or lora_A/lora_B keys): a "
                       "checkpoint or an embedding belongs in another folder")
        return entry
    if entry.format == "lycoris":
        entry.error = "LyCORIS (LoHa/LoKr) files are not supported: use a plain LoRA"
    entry.cross_dim = _cross_dim(shapes)
    entry.rank = _rank(shapes)
    entry.text_encoder = any(k.startswith(("lora_te", "text_encoder")) for k in keys)
    xl_keys = any(k.startswith(("lora_te2_", "text_encoder_2.")) for k in keys)
    entry.arch = _meta_arch(meta) or ("sdxl" if xl_keys else None) or \
        _CROSS_DIM_ARCH.get(entry.cross_dim or 0)
    entry.triggers = triggers(meta)
    return entry


# --------------------------------------------------------------------------- the library


class LoraLibrary(folders.Library[LoraEntry]):
    """The table of LoRA files (headers read once per file version)."""

    kind = "LoRA"

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(roots, discover, inspect)

    def resolve(self, name: str) -> LoraEntry:
        """A name as a request or ``<lora:NAME:W>`` gives it -> entry; KeyError with words.
        The bare file name works too when only one folder holds it (as in A1111)."""
        entry = self._entries.get(name)
        if entry is None:
            self.scan()
            entry = self._entries.get(name)
        if entry is None:
            by_stem = [e for e in self._entries.values() if e.stem == name]
            if len(by_stem) == 1:
                entry = by_stem[0]
            elif by_stem:
                raise KeyError(f"LoRA name '{name}' is ambiguous: "
                               f"{', '.join(e.name for e in by_stem)}")
        if entry is None:
            raise KeyError(f"unknown LoRA '{name}'; known: "
                           f"{', '.join(sorted(self._entries)) or 'none'}")
        return entry

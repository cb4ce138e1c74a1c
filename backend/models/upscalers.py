"""Upscaler models (ESRGAN and its family) for the first upscale of a full-resolution job.

Users keep them where A1111 (``models/ESRGAN``) and ComfyUI (``models/upscale_models``) do,
beside their checkpoints, or in folders given with ``--upscalers``. They are loaded by
spandrel, which knows the architectures (ESRGAN, Real-ESRGAN, Compact, SPAN, SwinIR, …),
from ``.safetensors``, or from ``.pth`` through ``torch.load(weights_only=True)`` — never a
plain pickle (spandrel's own ``.pth`` loading unpickles with an allow-list, not weights_only).

spandrel imports every architecture when imported, and two of them (LaMa, RestoreFormer)
import torchvision at module level; the CPU torch this project pins has no matching
torchvision build, so where none is importable a stand-in is in ``sys.modules`` only while
spandrel loads (those two architectures then refuse to run; no upscaler needs them).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import folders

log = logging.getLogger("paintbridge.upscalers")

SUFFIXES = (".safetensors", ".pth")
TILE = 192       # input px per tile: activations stay bounded whatever the image size
OVERLAP = 16     # input px of context each tile gets on every side


class UpscalerError(Exception):
    """An upscaler that cannot be used, with what to do about it."""


@dataclass
class UpscalerEntry:
    name: str
    path: Path


def default_dirs(model_roots: Iterable[Path]) -> list[Path]:
    """A1111's models/ESRGAN and ComfyUI's models/upscale_models beside the checkpoints."""
    return folders.beside_checkpoints(model_roots, "../ESRGAN", "../upscale_models")


def discover(root: Path) -> list[UpscalerEntry]:
    """Upscaler files under ``root``, named by their path without the suffix."""
    return [UpscalerEntry(p.relative_to(root).with_suffix("").as_posix(), p)
            for p in folders.walk(root) if p.suffix.lower() in SUFFIXES]


class UpscalerLibrary(folders.Library[UpscalerEntry]):
    kind = "upscaler"

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(roots, discover, lambda e: e)


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    try:
        importlib.import_module("torchvision")
    except Exception:   # absent, or a build for another torch (it fails to register ops)
        pass
    else:
        yield
        return

    def missing(*_: Any, **__: Any) -> Any:
        raise ImportError("torchvision is not installed")

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    saved = {n: sys.modules.get(n) for n in names}
    stand_ins = {n: types.ModuleType(n) for n in names}
    functional = stand_ins["torchvision.transforms.functional"]
    functional.InterpolationMode = types.SimpleNamespace(  # type: ignore[attr-defined]
        BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    functional.rotate = functional.normalize = missing   # type: ignore[attr-defined]
    stand_ins["torchvision"].transforms = stand_ins["torchvision.transforms"]  # type: ignore
    stand_ins["torchvision.transforms"].functional = functional  # type: ignore[attr-defined]
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module


def _spandrel() -> Any:
    try:
        with _torchvision_stand_in():
            import spandrel  # type: ignore  # (untyped; absent where the extra is not installed)
    except ImportError:
        raise UpscalerError("upscaler models need spandrel: pip install "
                            "'paintbridge[upscalers]'") from None
    return spandrel


def load(path: Path, device: Any = "cpu") -> Any:
    """The file as a spandrel ImageModelDescriptor of an RGB super-resolution model."""
    spandrel = _spandrel()
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix == ".pth":
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise UpscalerError(f"{path.name}: upscalers load from .safetensors or .pth")
        state = spandrel.canonicalize_state_dict(state)
        model = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except UpscalerError:
        raise
    except Exception as exc:   # a pickle with code in it, an unknown architecture, …
        raise UpscalerError(f"cannot load upscaler {path.name}: "
                            f"{type(exc).__name__}: {exc}") from None
    if not isinstance(model, spandrel.ImageModelDescriptor) or model.input_channels != 3 \
            or model.output_channels != 3 or model.scale < 2:
        raise UpscalerError(f"{path.name} is a {model.architecture.name} model for "
                            f"{model.purpose}, not an RGB upscaler")
    return model.to(device).eval()


def upscale(model: Any, rgb8: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (h·s, w·s, 3) uint8 by the model's scale s, tile by tile."""
    height, width = rgb8.shape[:2]
    s = int(model.scale)
    out = np.empty((height * s, width * s, 3), np.uint8)
    device = next(model.model.parameters()).device
    dtype = next(model.model.parameters()).dtype
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            y1, x1 = min(y + TILE, height), min(x + TILE, width)
            ty, tx = max(0, y - OVERLAP), max(0, x - OVERLAP)
            by, bx = min(height, y1 + OVERLAP), min(width, x1 + OVERLAP)
            tile = torch.from_numpy(np.ascontiguousarray(rgb8[ty:by, tx:bx]))
            t = tile.permute(2, 0, 1)[None].to(device, dtype) / 255.0
            with torch.inference_mode():
                up = model(t)[0].float().clamp_(0, 1).permute(1, 2, 0).cpu().numpy()
            up = up[(y - ty) * s:(y1 - ty) * s, (x - tx) * s:(x1 - tx) * s]
            out[y * s:y1 * s, x * s:x1 * s] = np.rint(up * 255.0)
    return out


class Upscalers:
    """The daemon's upscalers: the library of files, and the last one loaded."""

    def __init__(self, roots: Iterable[Path], device: Any = "cpu") -> None:
        self.library = UpscalerLibrary(roots)
        self.device = device
        self._loaded: tuple[Path, Any] | None = None

    def names(self) -> list[str]:
        return [e.name for e in self.library.fresh()]

    def entry(self, name: str) -> UpscalerEntry:
        """The file named ``name``; UpscalerError lists the names there are."""
        entries = {e.name: e for e in self.library.fresh()}
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise UpscalerError(f"unknown upscaler '{name}'; known: {known}")
        return entries[name]

    def get(self, name: str) -> Any:
        entry = self.entry(name)
        if self._loaded is None or self._loaded[0] != entry.path:
            self._loaded = (entry.path, load(entry.path, self.device))
        return self._loaded[1]

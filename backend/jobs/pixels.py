"""Pixels: wire frames to float arrays and back, the soft selection alpha, scaling, patches.

All maths runs on float32 in [0, 1]; integer formats are converted exactly (u8 /255,
u16 /65535) and float frames are clipped to [0, 1] for the model (HDR values above 1
are not preserved in the generated pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from paintbridge.plugin.protocol import FORMATS, FrameSpec

_DTYPES: dict[int, np.dtype[Any]] = {1: np.dtype(np.uint8), 2: np.dtype("<u2"),
                                     4: np.dtype("<f4")}
_SCALE = {1: 255.0, 2: 65535.0}


def frame_array(buffer: Any, spec: FrameSpec) -> np.ndarray:
    """The raw frame as an (height, width, channels) view of its buffer, in the frame's
    own channel order and type: no copy, so huge regions can be read a window at a time."""
    channels, depth = FORMATS[spec.format]
    return np.frombuffer(buffer, dtype=_DTYPES[depth]).reshape(spec.height, spec.width,
                                                                channels)


def to_float(raw: np.ndarray, fmt: str) -> np.ndarray:
    """A window of :func:`frame_array` -> float32 in [0, 1], RGBA channel order."""
    depth = FORMATS[fmt][1]
    if fmt.startswith("bgra"):
        raw = raw[..., [2, 1, 0, 3]]
    if depth == 4:
        return np.nan_to_num(raw.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)
    return raw.astype(np.float32) / _SCALE[depth]


def decode_frame(buffer: Any, spec: FrameSpec) -> np.ndarray:
    """Raw frame -> (height, width, channels) float32, RGBA channel order."""
    return to_float(frame_array(buffer, spec), spec.format)


def encode_frame(pixels: np.ndarray, fmt: str) -> bytes:
    """(height, width, 4) float32 RGBA in [0, 1] -> raw frame bytes in ``fmt``."""
    channels, depth = FORMATS[fmt]
    assert pixels.shape[2] == channels, (pixels.shape, fmt)
    if fmt.startswith("bgra"):
        pixels = pixels[..., [2, 1, 0, 3]]
    if depth == 4:
        return np.ascontiguousarray(pixels, dtype="<f4").tobytes()
    scaled = np.rint(np.clip(pixels, 0.0, 1.0) * _SCALE[depth])
    return np.ascontiguousarray(scaled.astype(_DTYPES[depth])).tobytes()


# --------------------------------------------------------------------------- selection alpha


def _pool(t: torch.Tensor, radius: int, op: str) -> torch.Tensor:
    """Separable square max/min/mean filter of the given radius, edges replicated."""
    if radius <= 0:
        return t
    k = 2 * radius + 1
    for kernel, pad in (((1, k), (radius, radius, 0, 0)), ((k, 1), (0, 0, radius, radius))):
        padded = F.pad(t, pad, mode="replicate")
        if op == "max":
            t = F.max_pool2d(padded, kernel, stride=1)
        elif op == "min":
            t = -F.max_pool2d(-padded, kernel, stride=1)
        else:
            t = F.avg_pool2d(padded, kernel, stride=1)
    return t


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """The selection dilated by ``radius`` px (square neighbourhood), soft values kept."""
    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return _pool(t, radius, "max")[0, 0].numpy()


def feather_inward(grown: np.ndarray, feather: int) -> np.ndarray:
    """The patch's alpha: ``grown`` with a soft edge of ``feather`` px laid *inside* it.

    Erodes by ``feather`` and blurs with a kernel of the same total radius, so wherever
    ``grown`` is 0 the alpha is exactly 0, and the ramp reaches 0.5 ``feather`` px inside the
    grown edge (``grow == feather`` centres it on the original selection's boundary).
    A selection too thin to survive the erosion gets a smaller feather, never an empty patch.
    """
    t = torch.from_numpy(np.ascontiguousarray(grown, dtype=np.float32))[None, None]
    while feather > 0:
        core = _pool(t, feather, "min")
        if bool((core > 0).any()):
            half = feather // 2
            t = _pool(_pool(core, half, "mean"), feather - half, "mean")
            break
        feather //= 2
    return t[0, 0].clamp_(0.0, 1.0).numpy()


def cover(alpha: np.ndarray, grown: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """The patch's alpha made opaque over the image's see-through pixels inside the grown
    selection: what outpainting fills must not leave a see-through edge."""
    return np.maximum(alpha, (1 - opacity) * (grown > 0))


# --------------------------------------------------------------------------- scaling


def model_size(width: int, height: int, native: int, multiple: int = 8) -> tuple[int, int]:
    """Size to run the model at: about native² pixels, the region's aspect, ×``multiple``.

    Sides are kept within [multiple, 2 × native]: models degrade far from their training
    size, so very thin regions are stretched rather than made huge.
    """
    scale = native / math.sqrt(width * height)

    def side(n: int) -> int:
        s = round(n * scale / multiple) * multiple
        return int(min(max(s, multiple), 2 * native))

    return side(width), side(height)


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, c) float32 -> (height, width, c), bicubic with antialiasing, clipped to [0,1]."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    t = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(height, width), mode="bicubic", align_corners=False,
                        antialias=True)
    return out[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy()


# --------------------------------------------------------------------------- patches


@dataclass
class EncodedPatch:
    x: int
    y: int
    width: int
    height: int
    format: str
    data: bytes | bytearray   # a bytearray when written band by band (no final copy)


def transparent_black(rgba: np.ndarray, fmt: str) -> np.ndarray:
    """``rgba`` with every pixel whose alpha is 0 in ``fmt`` made fully zero, in place."""
    if FORMATS[fmt][1] != 4:  # what quantises to alpha 0 must be transparent black
        rgba[np.rint(rgba[..., 3] * _SCALE[FORMATS[fmt][1]]) == 0] = 0.0
    else:
        rgba[rgba[..., 3] == 0] = 0.0
    return rgba


def make_patch(rgb: np.ndarray, alpha: np.ndarray, offset: tuple[int, int],
               fmt: str) -> EncodedPatch:
    """RGB + alpha over the region -> the smallest patch holding every non-zero alpha pixel.

    Pixels whose alpha is 0 are fully zero (RGB too), so nothing outside the selection
    can leak into the document whatever the blend mode.
    """
    rgba = transparent_black(np.concatenate([rgb, alpha[..., None]], axis=2)
                             .astype(np.float32), fmt)
    rows = np.flatnonzero(rgba[..., 3].any(axis=1))
    cols = np.flatnonzero(rgba[..., 3].any(axis=0))
    if rows.size == 0:
        y0 = y1 = x0 = x1 = 0
    else:
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = rgba[y0:y1, x0:x1]
    return EncodedPatch(offset[0] + int(x0), offset[1] + int(y0), int(x1 - x0), int(y1 - y0),
                        fmt, encode_frame(crop, fmt))

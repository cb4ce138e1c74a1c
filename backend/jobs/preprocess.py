"""Control maps from the artist's layers: the preprocessors that need no downloaded weights.

ControlNets read white-on-black maps, so transparent pixels always end black ("nothing
here"); what a preprocessor does with the painted pixels is in ``plugin.controls``. Edges
come from OpenCV's Canny. Maps made of lines keep their lines when the region is scaled
down to the model's size (a grey dilation first, twice the scale factor wide), so a 2 px
pencil stroke on a 2048 px canvas still reaches a 512 px model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Canny's hysteresis thresholds (0-255), A1111's defaults
CANNY_LOW, CANNY_HIGH = 100, 200
#: types whose maps are thin lines on black (scaled down with their lines kept)
LINE_TYPES = ("scribble", "lineart", "softedge", "canny", "mlsd")
LINE_PREPROCESSORS = ("scribble", "threshold", "invert", "canny")


def decode(data: Any, spec: Any) -> np.ndarray:
    """A control frame as (h, w, 4) float RGBA; a grey frame is opaque grey."""
    from .pixels import decode_frame

    frame = decode_frame(data, spec)
    if frame.shape[2] == 1:
        frame = np.concatenate([np.repeat(frame, 3, axis=2), np.ones_like(frame)], axis=2)
    return frame


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _over(rgba: np.ndarray, paper: float) -> np.ndarray:
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + paper * (1.0 - alpha)


def _grey3(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.float32)[..., None], 3, axis=2)


def ink(rgba: np.ndarray) -> np.ndarray:
    """Bool HxW: where the artist drew. On a layer with transparency, the opaque pixels
    whatever their colour; on an opaque one, the minority side of mid grey (dark strokes on
    light paper, or light strokes on dark)."""
    alpha = rgba[..., 3]
    if bool((alpha < 0.5).any()):
        return alpha >= 0.5
    lum = _luminance(rgba[..., :3])
    return lum < 0.5 if float(lum.mean()) >= 0.5 else lum >= 0.5


def run(name: str, rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) float RGBA in 0..1 -> (h, w, 3) float control map in 0..1."""
    if name == "none":
        return _over(rgba, 0.0)
    if name == "scribble":
        return _grey3(ink(rgba))
    if name == "threshold":
        return _grey3(_luminance(_over(rgba, 0.0)) >= 0.5)
    if name == "invert":
        return 1.0 - _over(rgba, 1.0)
    if name == "canny":
        import cv2

        grey = np.clip(_luminance(_over(rgba, 0.0)) * 255 + 0.5, 0, 255).astype(np.uint8)
        return _grey3(cv2.Canny(grey, CANNY_LOW, CANNY_HIGH) > 0)
    raise ValueError(f"unknown preprocessor {name!r}")


def keeps_lines(control_type: str, preprocess: str) -> bool:
    return preprocess in LINE_PREPROCESSORS or (preprocess == "none"
                                                and control_type in LINE_TYPES)


def fit(control: np.ndarray, width: int, height: int, lines: bool) -> np.ndarray:
    """The map at the model's size; line maps are dilated by the scale factor first, so
    their strokes survive the averaging of area resampling."""
    import cv2

    h, w = control.shape[:2]
    if (w, h) == (width, height):
        return control
    factor = max(w / width, h / height)
    if lines and factor > 1.5:
        k = 2 * int(round(factor)) - 1   # covers a whole output pixel wherever it lies
        control = cv2.dilate(control, np.ones((k, k), np.uint8))
    interp = cv2.INTER_AREA if factor > 1 else cv2.INTER_LINEAR
    out = cv2.resize(control, (width, height), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32)

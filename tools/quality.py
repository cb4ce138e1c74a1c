"""How much of a source's fine structure a result keeps, for benchmarks and tests.

The embedded model's VAE shifts colours (it cannot even reproduce cyan), so PSNR and SSIM
against the source mostly measure that shift, for every way of running it. :func:`detail`
does not: it correlates the two pictures' fine structure (luminance minus its local mean
over a few pixels: lines, edges, texture), so it is near 0 when a result was scaled down
to the model's size and back (the fine structure is blurred away) and grows with every
line kept where it was, whatever the colours did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DETAIL_RADIUS = 2   # px: structure finer than a 5 × 5 neighbourhood
WINDOW = 7          # SSIM's window
_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def _luma(rgb: np.ndarray) -> torch.Tensor:
    y = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return torch.from_numpy(np.ascontiguousarray(y))[None, None]


def _box(t: torch.Tensor, radius: int) -> torch.Tensor:
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(t, (radius,) * 4, mode="replicate"), k, stride=1)


def detail(result: np.ndarray, source: np.ndarray, radius: int = DETAIL_RADIUS) -> float:
    """Correlation (-1..1) of the fine structure of two (h, w, ≥3) images in [0, 1]."""
    a, b = _luma(result), _luma(source)
    ha, hb = a - _box(a, radius), b - _box(b, radius)
    den = float(torch.sqrt((ha * ha).sum() * (hb * hb).sum()))
    return float((ha * hb).sum()) / den if den > 0 else 0.0


def ssim(result: np.ndarray, source: np.ndarray) -> float:
    """Mean SSIM of the luminances (7 × 7 box windows)."""
    a, b = _luma(result), _luma(source)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, WINDOW, stride=1)

    ma, mb = mean(a), mean(b)
    va, vb = mean(a * a) - ma * ma, mean(b * b) - mb * mb
    cov = mean(a * b) - ma * mb
    s = ((2 * ma * mb + _C1) * (2 * cov + _C2)) / ((ma * ma + mb * mb + _C1) * (va + vb + _C2))
    return float(s.mean())


def psnr(result: np.ndarray, source: np.ndarray) -> float:
    err = float(np.mean((result[..., :3].astype(np.float64) - source[..., :3]) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(1.0 / err))


def test_picture(side: int, seed: int = 5) -> np.ndarray:
    """(side, side, 4) uint8: flat shapes with sharp edges over 2-px lines every side/16 px,
    the fine structure a scale-down to a model's size loses (benchmarks, tests)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (200, 190, 170))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(seed)
    for i in range(12):
        x, y = (int(v) for v in rng.integers(0, side, 2))
        r = int(rng.integers(side // 16, side // 5))
        colour = tuple(int(v) for v in rng.integers(30, 230, 3))
        (draw.ellipse if i % 2 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    for k in range(0, side, max(8, side // 16)):
        draw.line([(k, 0), (k, side)], fill=(40, 40, 60), width=2)
    return np.asarray(image.convert("RGBA"))


def tile_seam_ratio(image: np.ndarray, xs: list[int], ys: list[int]) -> float:
    """Mean step across the given tile boundaries (columns ``xs``, rows ``ys``) against the
    mean step between any two neighbouring pixels: 1 means the boundaries do not show."""
    y = _luma(image)[0, 0].numpy()
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    across = [dx[:, x - 1] for x in xs if 0 < x < y.shape[1]] + \
        [dy[r - 1] for r in ys if 0 < r < y.shape[0]]
    if not across:
        return float("nan")
    return float(np.concatenate(across).mean() / max(float((dx.mean() + dy.mean()) / 2), 1e-6))


def smooth_picture(side: int) -> np.ndarray:
    """(side, side, 4) uint8: gradients and two large flat shapes, little that a small VAE
    loses on its way through, so a change measured on it is the model's, not the VAE's."""
    from PIL import Image, ImageDraw

    y, x = np.mgrid[0:side, 0:side] / side
    rgb = np.stack([0.3 + 0.4 * x, 0.5 + 0.2 * y, 0.6 - 0.3 * x * y], -1)
    image = Image.fromarray(np.rint(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse([side * 0.1, side * 0.2, side * 0.5, side * 0.7], fill=(60, 60, 140))
    draw.rectangle([side * 0.55, side * 0.15, side * 0.9, side * 0.6], fill=(200, 120, 60))
    return np.asarray(image.convert("RGBA"))


def ramp_selection(side: int) -> np.ndarray:
    """(side, side) uint8 selection rising from 0 at the left to 255 at the right."""
    return np.tile(np.linspace(0, 255, side).astype(np.uint8)[None, :], (side, 1))


def change_by_band(result: np.ndarray, source: np.ndarray, bands: int = 8) -> list[float]:
    """Mean change of a result against its source, both (h, w, ≥3) in [0, 1], in ``bands``
    bands of columns (the first column left out: a ramp selection's 0 is cut away there)."""
    change = np.abs(result[..., :3] - source[..., :3]).mean(axis=(0, 2))
    width = change.shape[0] // bands
    return [float(change[max(1, i):i + width].mean()) for i in range(0, bands * width, width)]


def placed(patch: Any, width: int, height: int) -> np.ndarray:
    """An rgba8 result patch (x, y, width, height, data) at its place on a transparent
    (height, width, 4) canvas, as floats in [0, 1]."""
    out = np.zeros((height, width, 4), np.float32)
    px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
    out[patch.y:patch.y + patch.height, patch.x:patch.x + patch.width] = px / 255.0
    return out


# ------------------------------------------------------------------ measures an artist sees

#: a pixel is on an edge of the source when its luminance gradient is in this top fraction
EDGE_FRACTION = 0.05
#: a source pixel is flat when its 3 × 3 neighbourhood has no luminance step above this (0..1)
FLAT_STEP = 1.0 / 255
COLOUR_RADIUS = 8   # px: colour drift is measured on colours averaged over 17 × 17


def _gradient(t: torch.Tensor) -> torch.Tensor:
    """|∇| of a (1, 1, h, w) luminance by central differences (edges replicated)."""
    p = F.pad(t, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return torch.sqrt(gx * gx + gy * gy)


def edge_steepness(result: np.ndarray, source: np.ndarray) -> float:
    """How steep the source's edges still are in ``result``: the mean gradient over the
    source's steepest pixels (:data:`EDGE_FRACTION`), result's over the source's (1 = kept,
    lower = blurred). Images (h, w, ≥3) in [0, 1]."""
    gs, gr = _gradient(_luma(source)), _gradient(_luma(result))
    cut = torch.quantile(gs.flatten()[:: max(1, gs.numel() // 1_000_000)], 1 - EDGE_FRACTION)
    edges = gs >= max(float(cut), 1e-6)
    return float(gr[edges].mean() / gs[edges].mean())


def flat_texture(result: np.ndarray, source: np.ndarray) -> float:
    """The mean luminance gradient of ``result`` (in 0..255 steps) where the source is flat:
    what a tile grid, noise or blotches add to areas that had nothing."""
    ls = _luma(source)
    step = F.max_pool2d(_gradient(ls), 3, stride=1, padding=1)
    flat = step <= FLAT_STEP
    if not bool(flat.any()):
        return 0.0
    return float(_gradient(_luma(result))[flat].mean()) * 255


def colour_drift(result: np.ndarray, source: np.ndarray, radius: int = COLOUR_RADIUS) -> float:
    """Mean distance (0..255, RGB) between the two pictures' local colours (averaged over
    (2·radius+1)² px): yellow turned orange shows here, fine detail does not."""
    def local(img: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(img[..., :3].astype(np.float32)))
        return _box(t.permute(2, 0, 1)[None], radius)

    d = local(result) - local(source)
    return float(torch.sqrt((d * d).sum(1)).mean()) * 255


def flat_shapes(side: int, seed: int = 3) -> np.ndarray:
    """(side, side, 4) uint8: flat coloured shapes with sharp edges on a flat ground (the
    embedded model's own world; where a tile grid or blotches show at once)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), (224, 208, 64))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(seed)
    for i in range(10):
        x, y = (int(v) for v in rng.integers(side // 8, side - side // 8, 2))
        r = int(rng.integers(side // 14, side // 6))
        colour = tuple(int(v) for v in rng.integers(20, 235, 3))
        (draw.ellipse if i % 2 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
    return np.asarray(image.convert("RGBA"))


def sample_photo(side: int, name: str = "china.jpg") -> np.ndarray:
    """(side, side, 4) uint8: a photo no one here took (scikit-learn's sample images), its
    middle square resized to ``side`` (Lanczos)."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image(name)
    h, w = rgb.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    square = Image.fromarray(np.ascontiguousarray(rgb[y:y + s, x:x + s]))
    return np.asarray(square.resize((side, side), Image.Resampling.LANCZOS).convert("RGBA"))

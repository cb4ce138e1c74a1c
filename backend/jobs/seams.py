"""Seamless edges: the repainted area's colour matched to the pixels around it, and the
seam metric the benchmark and the tests use.

A model redraws the context around a selection too (the VAE alone shifts colours a little,
a model more), so its result, cut to the selection and laid over the untouched layer, can
sit a shade off from its surroundings: a visible square on a flat background. The fix
measures that offset where it is known, in a ring of context just outside the patch, where
the result should have reproduced the source, and spreads it smoothly over the patch
(a pull-push membrane: each pixel gets the offset of the ring parts nearest to it, blended
across scales). A uniform shift is removed everywhere; an offset that varies along the
edge is corrected where it occurs and fades towards the middle. What the prompt asked for
keeps its colour relative to its surroundings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import pixels

#: width of the context ring (px at region scale) whose offset is measured
RING = 8


def membrane(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(h, w, c) ``values`` given where ``known``, filled smoothly everywhere else."""
    v = torch.from_numpy(np.ascontiguousarray(values, np.float32)).permute(2, 0, 1)[None]
    w = torch.from_numpy(np.ascontiguousarray(known, np.float32))[None, None]
    levels = []
    while True:
        levels.append((v, w))
        if min(v.shape[-2:]) <= 1 or bool((w >= 1).all()):
            break
        num = F.avg_pool2d(v * w, 2, ceil_mode=True)
        den = F.avg_pool2d(w, 2, ceil_mode=True)
        v = num / den.clamp_min(1e-6)
        w = (den * 4).clamp_(max=1.0)   # a cell with some known pixel counts as known
    v, w = levels[-1]   # the coarsest level: cells still unknown take the known mean
    mean = (v * w).sum((2, 3), keepdim=True) / w.sum((2, 3), keepdim=True).clamp_min(1e-6)
    filled = w * v + (1 - w) * mean
    for v_l, w_l in reversed(levels[:-1]):
        up = F.interpolate(filled, size=v_l.shape[-2:], mode="bilinear", align_corners=False)
        filled = w_l * v_l + (1 - w_l) * up
    return filled[0].permute(1, 2, 0).numpy()


def fill(rgb: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """``rgb`` with its transparent part replaced by the colours around it, extended and
    smoothed (what an outpainting model starts from; a hard black would bleed in)."""
    if not bool((opacity > 0).any()):
        return np.full_like(rgb, 0.5, dtype=np.float32)   # nothing to extend: mid grey
    filled = membrane(rgb, opacity)
    a = opacity[..., None]
    return (rgb * a + filled * (1 - a)).astype(np.float32)


def edge_offset(result: np.ndarray, source: np.ndarray, alpha: np.ndarray,
                ring: int = RING) -> np.ndarray | None:
    """The (h, w, 3) offset that moves ``result`` to ``source`` in the ring just outside
    the patch (``alpha`` > 0), spread smoothly over the patch; None when there is no ring
    (the patch fills the region)."""
    patch = alpha > 0
    near = pixels.grow(patch.astype(np.float32), ring) > 0
    known = near & ~patch
    if not known.any() or not patch.any():
        return None
    return membrane(np.where(known[..., None], source - result, 0.0), known)


def match_edges(result: np.ndarray, source: np.ndarray, alpha: np.ndarray,
                ring: int = RING) -> np.ndarray:
    """``result`` (h, w, 3) with :func:`edge_offset` added inside the patch."""
    offset = edge_offset(result, source, alpha, ring)
    if offset is None:
        return result
    patch = alpha > 0
    out = result.copy()
    out[patch] = np.clip(result[patch] + offset[patch], 0.0, 1.0)
    return out


def composite(source: np.ndarray, result: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """What the user sees: the patch laid over the layer (straight alpha)."""
    a = alpha[..., None]
    return source * (1 - a) + result * a


def seam_ratio(image: np.ndarray, selection: np.ndarray, gap: int = 6) -> float:
    """How much the picture steps across the selection's edge, against how much it steps
    over the same distance just outside (1: the edge is as smooth as the picture; a
    repainted square a shade off shows as several).

    For every edge pixel and each axis direction that leaves the selection, it compares the
    pixel ``gap`` inside with the one ``gap`` + 1 outside (the step across), and that one
    with the pixel 2·``gap`` + 1 further out (the picture's own step, same distance). Mean
    absolute differences over channels and edge pixels; ``gap`` clears a feathered edge.
    """
    inside = selection > 0.5
    h, w = inside.shape
    across, own = [], []
    span = 2 * gap + 1
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        ys, xs = np.nonzero(inside)
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        ys, xs, ny, nx = ys[ok], xs[ok], ny[ok], nx[ok]
        edge = ~inside[ny, nx]
        ys, xs = ys[edge], xs[edge]
        yi, xi = ys - dy * gap, xs - dx * gap                       # inside
        yo, xo = ys + dy * (gap + 1), xs + dx * (gap + 1)           # just outside
        yf, xf = yo + dy * span, xo + dx * span                     # further out
        ok = ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w) & (yf >= 0) & (yf < h)
              & (xf >= 0) & (xf < w))
        ok &= inside[yi.clip(0, h - 1), xi.clip(0, w - 1)]
        ok &= ~inside[yf.clip(0, h - 1), xf.clip(0, w - 1)]
        yi, xi, yo, xo, yf, xf = (a[ok] for a in (yi, xi, yo, xo, yf, xf))
        across.append(np.abs(image[yi, xi] - image[yo, xo]).mean(-1))
        own.append(np.abs(image[yo, xo] - image[yf, xf]).mean(-1))
    a, o = np.concatenate(across), np.concatenate(own)
    if a.size == 0:
        return float("nan")
    return float(a.mean() / max(float(o.mean()), 1.0 / 255))

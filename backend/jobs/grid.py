"""The tile grid over a large region: where tiles go (evenly spread, overlapping) and how
each one is blended over what earlier tiles left (its ramp)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    x: int
    y: int
    width: int
    height: int
    left: int    # px shared with the tile before it in its row (0 for the first)
    top: int     # px shared with the row of tiles above (0 for the first row)


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one side: evenly spread, every overlap at least ``overlap``."""
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def grid(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles covering the region in raster order (the order they are refined in)."""
    overlap = max(0, min(overlap, tile // 2))
    xs, ys = starts(width, tile, overlap), starts(height, tile, overlap)
    tw, th = min(tile, width), min(tile, height)
    return [Tile(x, y, tw, th, xs[i - 1] + tw - x if i else 0, ys[j - 1] + th - y if j else 0)
            for j, y in enumerate(ys) for i, x in enumerate(xs)]


def ramp(tile: Tile) -> np.ndarray:
    """(h, w, 1) weight of a tile over what earlier tiles left: 0 → 1 across the middle half
    of each overlap, so neither tile's outermost pixels (where a model's padding shows)
    reach the picture."""
    def side(n: int, shared: int) -> np.ndarray:
        w = np.ones(n, np.float32)
        if shared:
            margin = shared // 4
            span = shared - 2 * margin
            w[:shared] = np.clip((np.arange(shared, dtype=np.float32) - margin + 0.5) / span,
                                 0.0, 1.0)
        return w
    return (side(tile.height, tile.top)[:, None] * side(tile.width, tile.left)[None, :]
            )[..., None]

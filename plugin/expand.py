"""Expand: grow the canvas on chosen sides and paint the new area, as a host-agnostic job.

Nothing is resized until the result is there. The job's image is cut from the layer as it
is, with the new area added as transparent pixels (which the daemon fills: outpainting), and
the new area is the job's mask. Only when the job is done does the host grow its canvas
(its own operation, which the user can undo) and lay the result as a new layer; a failed or
cancelled job leaves the document exactly as it was. Coordinates in the job are those of
the grown canvas. Standard library only (this runs in the hosts' Pythons).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import protocol
from .client import Frame
from .region import Rect

#: the sides a host offers, by name -> (left, top, right, bottom) switched on
SIDES: dict[str, tuple[bool, bool, bool, bool]] = {
    "all": (True, True, True, True),
    "left": (True, False, False, False),
    "right": (False, False, True, False),
    "top": (False, True, False, False),
    "bottom": (False, False, False, True),
    "left-right": (True, False, True, False),
    "top-bottom": (False, True, False, True),
}
SIDE_LABELS = {"all": "All sides", "left": "Left", "right": "Right", "top": "Top",
               "bottom": "Bottom", "left-right": "Left and right",
               "top-bottom": "Top and bottom"}
MAX_PIXELS = 4096   # per side, per Expand


@dataclass(frozen=True)
class Expansion:
    """How many pixels each side of the canvas grows by."""

    left: int = 0
    top: int = 0
    right: int = 0
    bottom: int = 0

    @classmethod
    def of(cls, pixels: int, sides: str) -> Expansion:
        """``pixels`` on the ``sides`` named in :data:`SIDES`; ValueError says what is wrong."""
        if sides not in SIDES:
            raise ValueError(f"Expand: unknown sides {sides!r}; one of {', '.join(SIDES)}")
        if not 1 <= pixels <= MAX_PIXELS:
            raise ValueError(f"Expand by 1 to {MAX_PIXELS} pixels, not {pixels}.")
        on = SIDES[sides]
        return cls(*(pixels if side else 0 for side in on))

    def grown(self, canvas: Rect) -> Rect:
        """The grown canvas, in its own coordinates (the old one sits at left, top)."""
        return Rect(0, 0, canvas.width + self.left + self.right,
                    canvas.height + self.top + self.bottom)

    def old_in_new(self, canvas: Rect) -> Rect:
        return Rect(self.left, self.top, canvas.width, canvas.height)

    def region(self, canvas: Rect, padding: int | None) -> Rect:
        """What the job sends: the new strips and ``padding`` px of the picture beside
        them (automatic: as deep as the strips, at least 32, at most the picture)."""
        grown = self.grown(canvas)
        depth = max(self.left, self.top, self.right, self.bottom)
        pad = max(32, depth) if padding is None else padding

        def span(before: int, after: int, total: int) -> tuple[int, int]:
            if bool(before) == bool(after):   # both sides grow, or neither: all of it
                return 0, total
            if before:
                return 0, min(total, before + pad)
            return max(0, total - after - pad), total

        x0, x1 = span(self.left, self.right, grown.width)
        y0, y1 = span(self.top, self.bottom, grown.height)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def image(self, region: Rect, canvas: Rect, fmt: str,
              read: Callable[[Rect], bytes]) -> Frame:
        """The region's pixels: the layer's where the old canvas was (``read(rect)`` in old
        coordinates), transparent (all zero) in the new area."""
        channels, depth = protocol.FORMATS[fmt]
        px = channels * depth
        old = self.old_in_new(canvas).intersected(region)
        if old.is_empty:
            return Frame(region.width, region.height, fmt,
                         bytes(region.width * region.height * px))
        data = read(old.translated(-self.left, -self.top))
        before = bytes((old.x - region.x) * px)
        after = bytes((region.right - old.right) * px)
        empty_row = bytes(region.width * px)
        row = old.width * px
        rows = [empty_row] * (old.y - region.y)
        rows += [before + data[i * row:(i + 1) * row] + after for i in range(old.height)]
        rows += [empty_row] * (region.bottom - old.bottom)
        return Frame(region.width, region.height, fmt, b"".join(rows))

    def mask(self, region: Rect, canvas: Rect) -> Frame:
        """gray8 over the region: 255 in the new area, 0 over the old canvas."""
        old = self.old_in_new(canvas).intersected(region)
        full = b"\xff" * region.width
        if old.is_empty:
            return Frame(region.width, region.height, "gray8", full * region.height)
        inner = (b"\xff" * (old.x - region.x) + bytes(old.width)
                 + b"\xff" * (region.right - old.right))
        rows = (full * (old.y - region.y) + inner * old.height
                + full * (region.bottom - old.bottom))
        return Frame(region.width, region.height, "gray8", rows)

    def as_dict(self) -> dict[str, int]:
        return {"left": self.left, "top": self.top, "right": self.right,
                "bottom": self.bottom}

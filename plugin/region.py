"""Which part of the canvas a job needs: the selection's box, grown by context, clamped.

The client sends only this region, never the whole canvas, so the cost of a job depends on
the selection, not on the document size. Coordinates are canvas pixels, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def expanded(self, by: int) -> Rect:
        return Rect(self.x - by, self.y - by, self.width + 2 * by, self.height + 2 * by)

    def intersected(self, other: Rect) -> Rect:
        x, y = max(self.x, other.x), max(self.y, other.y)
        right, bottom = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x, y, max(0, right - x), max(0, bottom - y))

    def translated(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def auto_padding(selection: Rect) -> int:
    """Context around a selection when the user gives none: half its longest side, ≥ 32 px.

    The model needs to see what surrounds the hole to continue it; more context dilutes the
    resolution the hole gets after scaling to the model's native size.
    """
    return max(32, max(selection.width, selection.height) // 2)


def job_region(kind: str, canvas: Rect, selection: Rect | None, padding: int | None = None,
               grow: int = 0) -> Rect:
    """The crop rectangle a job sends and the daemon edits.

    - no selection: the whole layer (img2img) or canvas (txt2img); inpaint needs a selection.
    - txt2img: the selection grown by ``grow`` (new content, no context needed).
    - img2img / inpaint: the selection grown by ``grow`` and the context ``padding``.
    Feathering softens inside the grown selection (docs/protocol.md), so it needs no room.
    """
    if selection is None or selection.is_empty:
        if kind == "inpaint":
            raise ValueError("inpaint needs a selection")
        return canvas
    region = selection.expanded(grow)
    if kind != "txt2img":
        region = region.expanded(auto_padding(selection) if padding is None else padding)
    clamped = region.intersected(canvas)
    if clamped.is_empty:
        raise ValueError("the selection lies outside the canvas")
    return clamped

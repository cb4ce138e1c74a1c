"""What a host implements (:class:`Document`, a handful of reads and one write on its own
API) and what the artist sets up in it (:class:`ControlLayer`)."""

from __future__ import annotations

from typing import Any, Protocol

from . import controls
from .expand import Expansion
from .job import Frame, Patch
from .region import Rect


class UnsupportedDocument(Exception):
    """The document cannot be sent (e.g. CMYK, Lab, grayscale): say so, send nothing."""


class Document(Protocol):
    """The host's side: implemented by krita/ and gimp/ on their own APIs."""

    def canvas(self) -> Rect: ...

    def selection_bounds(self) -> Rect | None:
        """Bounding box of the selection, or None when nothing is selected."""

    def pixel_format(self) -> str:
        """The active layer's wire format (rgba8, bgra8, rgba16, bgra16, rgbaf32);
        raises UnsupportedDocument for colour models the daemon cannot take."""

    def read_pixels(self, rect: Rect) -> bytes:
        """The active layer's pixels in ``rect``, in ``pixel_format()``."""

    def read_selection(self, rect: Rect) -> Frame:
        """The selection's values in ``rect`` (gray8/gray16/grayf32), soft edges kept."""

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> Any:
        """New layers above the active layer; in a new layer group named ``group`` when
        there are several (``group`` is None for one)."""

    def image_rect(self) -> Rect:
        """The whole image (Expand grows it; ``canvas`` may be just the layer's part)."""

    def expand_canvas(self, expansion: Expansion) -> None:
        """Grow the canvas by ``expansion`` (the host's own resize, which the user can undo);
        the layers keep their pixels where they were in the picture."""

    def open_image(self, width: int, height: int, patches: list[Patch], names: list[str],
                   group: str | None, title: str) -> Any:
        """A new image (document) of ``width`` × ``height`` in the source layer's colour
        space, holding the patches as layers (as add_results does), shown to the user where
        the host has a window. This document is not touched."""

    def layer_key(self) -> str:
        """The identity of the layer jobs read from (as ``read_layer`` takes it)."""

    def read_layer(self, key: str, rect: Rect) -> Frame:
        """Another layer's pixels in ``rect`` (a control layer's drawing), in its own wire
        format; ValueError when the layer is gone or cannot be read."""


class ControlLayer:
    """One control the artist set up: the layer its drawing is on, and how it steers.
    The layer is never the one edited; its pixels go as a ``control`` frame.

    One value per key of :data:`controls.FIELDS` (``type``, ``strength``, ``start``...),
    read as attributes; a key added there is taken here, by the hosts' widgets and by the
    daemon without an edit. An empty string means "not set" (the daemon's choice)."""

    def __init__(self, layer: str, type: str = "scribble", *, name: str = "",
                 **values: Any) -> None:
        unknown = set(values) - set(controls.BY_NAME)
        if unknown:
            raise TypeError(f"unknown control key(s): {', '.join(sorted(unknown))}")
        self.layer = layer          # the host's key of the layer (Document.read_layer)
        self.name = name            # the layer's name, for messages
        self.values: dict[str, Any] = {f.name: f.default for f in controls.FIELDS}
        self.values.update(values, type=type)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ControlLayer) and (self.layer, self.name, self.values)
                == (other.layer, other.name, other.values))

    def __repr__(self) -> str:
        return f"ControlLayer({self.layer!r}, name={self.name!r}, {self.values!r})"

    def item(self) -> dict[str, Any]:
        """The wire item, checked (ValueError naming what is wrong)."""
        return controls.check_item({k: (None if v == "" else v) for k, v in self.values.items()},
                                   f"control '{self.name or self.layer}'")

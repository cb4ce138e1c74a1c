"""GIMP 3's side of ``plugin.session.Document``: pixels in and result layers out.

Pixels go through the drawable's GEGL buffer with an explicit babl format, never through
files: 8-bit images are read as "R'G'B'A u8" (wire ``rgba8``), 16-bit integer ones as
"R'G'B'A u16" (``rgba16``) and every deeper or float precision as "R'G'B'A float"
(``rgbaf32``). The perceptual (R') formats make babl convert linear-light images to the
sRGB-encoded values the model was trained on, and back when the results are written.
"""

from __future__ import annotations

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from plugin.client import Frame, Patch  # noqa: E402
from plugin.expand import Expansion  # noqa: E402
from plugin.region import Rect  # noqa: E402
from plugin.session import UnsupportedDocument  # noqa: E402

#: wire format -> (babl RGBA format, babl selection format, wire selection format)
BABL = {
    "rgba8": ("R'G'B'A u8", "Y u8", "gray8"),
    "rgba16": ("R'G'B'A u16", "Y u16", "gray16"),
    "rgbaf32": ("R'G'B'A float", "Y float", "grayf32"),
}


def wire_format(precision: Gimp.Precision) -> str:
    """The wire format that carries this image precision without losing bits."""
    nick = precision.value_nick  # e.g. "u8-non-linear", "u16-linear", "half-perceptual"
    if nick.startswith("u8"):
        return "rgba8"
    if nick.startswith("u16"):
        return "rgba16"
    return "rgbaf32"


def source_layer(drawable: Gimp.Drawable) -> Gimp.Drawable:
    """The layer to read: a selected layer mask stands for its layer; channels are refused."""
    if isinstance(drawable, Gimp.LayerMask):
        return Gimp.Layer.from_mask(drawable)
    if not isinstance(drawable, Gimp.Layer):
        raise UnsupportedDocument("Select a layer (not a channel or path) to work on.")
    return drawable


class GimpDocument:
    """One image and the drawable the user chose; implements ``plugin.session.Document``."""

    def __init__(self, image: Gimp.Image, drawable: Gimp.Drawable) -> None:
        self.image = image
        self.drawable = source_layer(drawable)
        _, self.ox, self.oy = self.drawable.get_offsets()
        self.layers: list[Gimp.Layer] = []  # what add_results created
        self.group: Gimp.Layer | None = None
        self.opened: Gimp.Image | None = None    # the image open_image made

    def canvas(self) -> Rect:
        """The drawable's extent on the canvas, clipped to the image."""
        d = self.drawable
        layer = Rect(self.ox, self.oy, d.get_width(), d.get_height())
        return layer.intersected(Rect(0, 0, self.image.get_width(), self.image.get_height()))

    def selection_bounds(self) -> Rect | None:
        _, non_empty, x1, y1, x2, y2 = Gimp.Selection.bounds(self.image)
        if not non_empty:
            return None
        bounds = Rect(x1, y1, x2 - x1, y2 - y1).intersected(self.canvas())
        if bounds.is_empty:
            raise ValueError("The selection does not overlap the active layer.")
        return bounds

    def pixel_format(self) -> str:
        if self.image.get_base_type() == Gimp.ImageBaseType.INDEXED:
            raise UnsupportedDocument("Indexed images are not supported: convert the image "
                                      "with Image ▸ Mode ▸ RGB first.")
        return wire_format(self.image.get_precision())

    def read_pixels(self, rect: Rect) -> bytes:
        babl = BABL[self.pixel_format()][0]
        box = Gegl.Rectangle.new(rect.x - self.ox, rect.y - self.oy, rect.width, rect.height)
        buffer = self.drawable.get_buffer()
        return bytes(buffer.get(box, 1.0, babl, Gegl.AbyssPolicy.NONE))

    def read_selection(self, rect: Rect) -> Frame:
        _, babl, wire = BABL[self.pixel_format()]
        box = Gegl.Rectangle.new(rect.x, rect.y, rect.width, rect.height)
        buffer = self.image.get_selection().get_buffer()
        data = bytes(buffer.get(box, 1.0, babl, Gegl.AbyssPolicy.NONE))
        return Frame(rect.width, rect.height, wire, data)

    def layer_key(self) -> str:
        return str(self.drawable.get_id())

    def read_layer(self, key: str, rect: Rect) -> Frame:
        """A control layer's pixels in ``rect`` (canvas coordinates), in the image's format;
        transparent where the layer does not reach."""
        item = Gimp.Item.get_by_id(int(key))
        if item is None or not isinstance(item, Gimp.Drawable):
            raise ValueError("The control layer is gone: pick it again.")
        layer = source_layer(item)
        _, ox, oy = layer.get_offsets()
        fmt = self.pixel_format()
        box = Gegl.Rectangle.new(rect.x - ox, rect.y - oy, rect.width, rect.height)
        data = bytes(layer.get_buffer().get(box, 1.0, BABL[fmt][0], Gegl.AbyssPolicy.NONE))
        return Frame(rect.width, rect.height, fmt, data)

    def image_rect(self) -> Rect:
        return Rect(0, 0, self.image.get_width(), self.image.get_height())

    def expand_canvas(self, expansion: Expansion) -> None:
        """GIMP's Image ▸ Canvas Size (an undo step of its own): layers keep their size
        and pixels and move with the picture; the new area has no layer pixels yet."""
        e = expansion
        self.image.resize(self.image.get_width() + e.left + e.right,
                          self.image.get_height() + e.top + e.bottom, e.left, e.top)
        _, self.ox, self.oy = self.drawable.get_offsets()

    @staticmethod
    def _new_layer(image: Gimp.Image, patch: Patch, name: str) -> Gimp.Layer:
        kind = (Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() ==
                Gimp.ImageBaseType.GRAY else Gimp.ImageType.RGBA_IMAGE)
        layer = Gimp.Layer.new(image, name, patch.width, patch.height, kind, 100.0,
                               Gimp.LayerMode.NORMAL)
        layer.set_offsets(patch.x, patch.y)
        return layer

    def _fill(self, layer: Gimp.Layer, patch: Patch) -> None:
        buffer = layer.get_buffer()
        box = Gegl.Rectangle.new(0, 0, patch.width, patch.height)
        buffer.set(box, BABL[patch.format][0], bytes(patch.data))
        buffer.flush()
        layer.update(0, 0, patch.width, patch.height)

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> None:
        """New layers directly above the drawable (in a layer group named ``group`` when
        there is one), all in one undo group so that one Ctrl+Z takes them away."""
        self.image.undo_group_start()
        try:
            self._insert(self.image, self.drawable.get_parent(),
                         self.image.get_item_position(self.drawable), patches, names, group)
        finally:
            self.image.undo_group_end()

    def _insert(self, image: Gimp.Image, parent: Gimp.Layer | None, position: int,
                patches: list[Patch], names: list[str], group: str | None) -> None:
        if group is not None:
            self.group = Gimp.GroupLayer.new(image, group)
            image.insert_layer(self.group, parent, position)
            parent, position = self.group, 0
        for i, (patch, name) in enumerate(zip(patches, names, strict=True)):
            layer = self._new_layer(image, patch, name)
            image.insert_layer(layer, parent, position + i)
            self._fill(layer, patch)
            self.layers.append(layer)

    def open_image(self, width: int, height: int, patches: list[Patch], names: list[str],
                   group: str | None, title: str) -> Gimp.Image:
        """A new image (an Upscale's result) of this one's mode, precision and resolution,
        holding the patches as layers; its undo history starts with them in it. Displaying
        it is the caller's choice (batch runs have no display). GIMP names images by their
        file, so ``title`` only names the layers' group or layer."""
        image = Gimp.Image.new_with_precision(width, height, self.image.get_base_type(),
                                              self.image.get_precision())
        _, xres, yres = self.image.get_resolution()
        image.set_resolution(xres, yres)
        image.undo_disable()
        try:
            self._insert(image, None, 0, patches, names, group)
        finally:
            image.undo_enable()
        self.opened = image
        return image

"""Krita's side of ``plugin.controller.Target``: read the active layer and the selection,
write results as new layers, show or hide them. Nothing else; every decision is made in
``plugin/``.

Pixel layouts (Krita 5.1, ``Node.pixelData``): 8- and 16-bit integer RGBA come as
B, G, R, A; 32-bit float RGBA comes as R, G, B, A. The selection is always 8-bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PyQt5.QtCore import QByteArray

from .plugin import protocol
from .plugin.client import Frame, Patch
from .plugin.expand import Expansion
from .plugin.region import Rect
from .plugin.session import UnsupportedDocument

if TYPE_CHECKING:   # Krita's module, checked against tools/stubs/krita.pyi
    from krita import Document, GroupLayer, Node

#: Krita (colour model, depth) -> wire format.
FORMATS = {("RGBA", "U8"): "bgra8", ("RGBA", "U16"): "bgra16", ("RGBA", "F32"): "rgbaf32"}

_MODEL_NAMES = {"CMYKA": "CMYK", "GRAYA": "grayscale", "LABA": "L*a*b*", "XYZA": "XYZ",
                "YCbCrA": "YCbCr"}
_DEPTH_NAMES = {"U8": "8-bit integer", "U16": "16-bit integer", "F16": "16-bit float",
                "F32": "32-bit float"}


def wire_format(model: str, depth: str) -> str:
    """The wire format for a layer, or UnsupportedDocument with what to do about it."""
    fmt = FORMATS.get((model, depth))
    if fmt is not None:
        return fmt
    if model == "RGBA":
        raise UnsupportedDocument(
            f"Paintbridge cannot read {_DEPTH_NAMES.get(depth, depth)} RGB layers: convert "
            "the image to 8-bit, 16-bit integer or 32-bit float RGB/Alpha "
            "(Image ▸ Convert Image Color Space…). Nothing was sent.")
    raise UnsupportedDocument(
        f"Paintbridge works on RGB images; this layer is {_MODEL_NAMES.get(model, model)}. "
        "Convert it to RGB/Alpha (Image ▸ Convert Image Color Space…) or work on an RGB "
        "copy. Nothing was sent.")


class KritaDocument:
    """One Krita document and the layer a job reads from (the active one by default).

    The layer is fixed when the adapter is made, so results land next to the layer that
    was read even if the user switches layers while the job runs.
    """

    def __init__(self, doc: Document, node: Node | None = None) -> None:
        self.doc = doc
        active = node if node is not None else doc.activeNode()
        if active is None:
            raise ValueError("Select a paint layer first.")
        if active.type() != "paintlayer":
            raise ValueError(f"'{active.name()}' is a {active.type()}: select a paint "
                             "layer to generate from.")
        self.node: Node = active
        self.added: list[Node] = []   # the layers the last add_results made
        self.group: GroupLayer | None = None       # ... and their group, for a batch
        self.live_layer: Node | None = None        # Live's preview layer, while it is on
        self._live_rect: tuple[int, int, int, int] | None = None   # what it holds
        self.opened: Document | None = None        # the document open_image made

    # ---------------------------------------------------------------- reading

    def canvas(self) -> Rect:
        return Rect(0, 0, self.doc.width(), self.doc.height())

    def selection_bounds(self) -> Rect | None:
        sel = self.doc.selection()
        if sel is None or sel.width() <= 0 or sel.height() <= 0:
            return None
        return Rect(sel.x(), sel.y(), sel.width(), sel.height())

    def pixel_format(self) -> str:
        return wire_format(self.node.colorModel(), self.node.colorDepth())

    def read_pixels(self, rect: Rect) -> bytes:
        return bytes(self.node.pixelData(rect.x, rect.y, rect.width, rect.height))

    def read_selection(self, rect: Rect) -> Frame:
        sel = self.doc.selection()
        if sel is None:
            raise ValueError("The selection was removed: select the area again.")
        data = bytes(sel.pixelData(rect.x, rect.y, rect.width, rect.height))
        return Frame(rect.width, rect.height, "gray8", data)

    def layer_key(self) -> str:
        return self.key(self.node)

    def find_layer(self, key: str) -> Node | None:
        """The layer with this key anywhere in the document (groups included)."""
        stack = list(self.doc.rootNode().childNodes())
        while stack:
            node = stack.pop()
            if self.key(node) == key:
                return node
            stack.extend(node.childNodes())
        return None

    def read_layer(self, key: str, rect: Rect) -> Frame:
        node = self.find_layer(key)
        if node is None:
            raise ValueError("A control layer was deleted: pick its layer again.")
        fmt = wire_format(node.colorModel(), node.colorDepth())
        return Frame(rect.width, rect.height, fmt,
                     bytes(node.pixelData(rect.x, rect.y, rect.width, rect.height)))

    @classmethod
    def paint_layers_of(cls, doc: Document) -> list[tuple[str, str]]:
        """(name, key) of every paint layer, top first, for the control layer pickers."""
        out: list[tuple[str, str]] = []

        def walk(nodes: list[Node]) -> None:
            for node in reversed(nodes):
                if node.type() == "paintlayer":
                    out.append((node.name(), cls.key(node)))
                walk(node.childNodes())

        walk(doc.rootNode().childNodes())
        return out

    # ---------------------------------------------------------------- writing

    def _new_layer(self, name: str, patch: Patch) -> Node:
        layer = self.doc.createNode(name, "paintlayer")
        src = self.node
        if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (
                src.colorModel(), src.colorDepth(), src.colorProfile()):
            layer.setColorSpace(src.colorModel(), src.colorDepth(), src.colorProfile())
        layer.setPixelData(QByteArray(bytes(patch.data)), patch.x, patch.y, patch.width,
                           patch.height)
        return layer

    def add_results(self, patches: list[Patch], names: list[str], group: str | None = None
                    ) -> list[Node]:
        """One new layer above the source; several go into a new group named ``group``
        above it, with only the first visible. Returns the new paint layers."""
        fmt = self.pixel_format()
        for p in patches:
            if p.format != fmt:
                raise ValueError(f"result is {p.format}, the layer is {fmt}")
        parent = self.node.parentNode() or self.doc.rootNode()
        self.group = None
        layers = [self._new_layer(name, p) for p, name in zip(patches, names, strict=True)]
        if len(layers) == 1:
            parent.addChildNode(layers[0], self.node)
        else:
            self.group = self.doc.createGroupLayer(group or "Paintbridge results")
            parent.addChildNode(self.group, self.node)
            for i, layer in reversed(list(enumerate(layers))):  # None = on top: first ends up
                layer.setVisible(i == 0)                          # on top, and visible
                self.group.addChildNode(layer, None)
        self.doc.refreshProjection()
        self.added = layers
        return layers

    def image_rect(self) -> Rect:
        return self.canvas()

    def expand_canvas(self, expansion: Expansion) -> None:
        """Krita's canvas resize (Image ▸ Resize Canvas, one undo step): the new rectangle
        in the old coordinates, so the picture moves right and down by left and top."""
        e = expansion
        self.doc.resizeImage(-e.left, -e.top, self.doc.width() + e.left + e.right,
                             self.doc.height() + e.top + e.bottom)
        self.doc.waitForDone()

    def open_image(self, width: int, height: int, patches: list[Patch], names: list[str],
                   group: str | None, title: str) -> list[Node]:
        """A new document (an Upscale's result) in the source layer's colour space and the
        source document's resolution, holding the patches as layers as add_results does;
        shown in the active window when there is one. The results' toggles then act on it."""
        from krita import Krita

        app = Krita.instance()
        src = self.node
        doc = app.createDocument(width, height, title, src.colorModel(), src.colorDepth(),
                                 src.colorProfile(), self.doc.resolution())
        base = doc.rootNode().childNodes()[0]      # Krita's white "Background": not ours
        target = KritaDocument(doc, base)
        target.add_results(patches, names, group)
        base.remove()
        doc.refreshProjection()
        window = app.activeWindow()
        if window is not None:
            window.addView(doc)
        self.added, self.group, self.opened = target.added, target.group, doc
        return target.added

    # ---------------------------------------------------------------- live mode

    def overview(self, side: int) -> Frame:
        """``side`` evenly spaced full rows of the source layer: a stroke that crosses one
        shows, and where along it. (Krita's layer thumbnail is cheaper but cached: it does
        not follow writes; the document's thumbnail renders the whole projection.)"""
        w, h = self.doc.width(), self.doc.height()
        n = min(side, h)
        rows = [bytes(self.node.pixelData(0, (2 * i + 1) * h // (2 * n), w, 1))
                for i in range(n)]
        return Frame(w, n, self.pixel_format(), b"".join(rows))

    def show_live(self, patch: Patch, name: str) -> None:
        """The preview layer above the source, made once and then rewritten in place."""
        layer = self.live_layer
        if layer is None or layer.parentNode() is None:   # first result, or deleted by hand
            layer = self.live_layer = self._new_layer(f"Live: {name}", patch)
            (self.node.parentNode() or self.doc.rootNode()).addChildNode(layer, self.node)
        else:
            if self._live_rect is not None:   # what the last result covered goes
                x, y, w, h = self._live_rect
                channels, depth = protocol.FORMATS[patch.format]
                layer.setPixelData(QByteArray(bytes(w * h * channels * depth)), x, y, w, h)
            layer.setPixelData(QByteArray(bytes(patch.data)), patch.x, patch.y, patch.width,
                               patch.height)
            layer.setName(f"Live: {name}")
        self._live_rect = (patch.x, patch.y, patch.width, patch.height)
        self.doc.refreshProjection()

    def remove_live(self) -> None:
        layer, self.live_layer, self._live_rect = self.live_layer, None, None
        if layer is not None and layer.parentNode() is not None:
            layer.remove()
            self.doc.refreshProjection()

    # ---------------------------------------------------------------- results afterwards

    @staticmethod
    def key(layer: Node) -> str:
        """A layer's identity: Krita hands out a new wrapper object on every call."""
        return layer.uniqueId().toString()

    def toggle(self, layer: Node) -> None:
        layer.setVisible(not layer.visible())
        (self.opened or self.doc).refreshProjection()

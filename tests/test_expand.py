"""Expand (plugin/expand.py): the region, image and mask an Expand job sends, and through a
real daemon with an in-memory document: the canvas grows only when the result is there,
the new area comes back opaque, and a cancelled job leaves the document as it was."""

from __future__ import annotations

import numpy as np
import pytest

from paintbridge.plugin.client import JobState
from paintbridge.plugin.expand import Expansion
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings, Session, prepare_expand

from .conftest import DaemonProc
from .test_session import ArrayDocument, finish


class GrowingDocument(ArrayDocument):
    """ArrayDocument whose canvas can grow (as the hosts' resize does: layers keep their
    pixels, the new area is empty)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.expansions: list[Expansion] = []

    def image_rect(self) -> Rect:
        return self.canvas()

    def expand_canvas(self, expansion: Expansion) -> None:
        self.expansions.append(expansion)
        h, w = self.pixels.shape[:2]
        grown = np.zeros((h + expansion.top + expansion.bottom,
                          w + expansion.left + expansion.right, 4), np.uint8)
        grown[expansion.top:expansion.top + h, expansion.left:expansion.left + w] = self.pixels
        self.pixels = grown


@pytest.mark.fast
@pytest.mark.parametrize("sides,region", [
    ("right", Rect(300 - 40, 0, 40 + 40, 200)),   # the strip and as much picture (≥ 32)
    ("left", Rect(0, 0, 40 + 40, 200)),
    ("top", Rect(0, 0, 300, 40 + 40)),
    ("bottom", Rect(0, 200 - 40, 300, 40 + 40)),
    ("left-right", Rect(0, 0, 380, 200)),
    ("all", Rect(0, 0, 380, 280)),
])
def test_the_region_holds_the_new_strips_and_the_picture_beside_them(sides: str,
                                                                     region: Rect) -> None:
    assert Expansion.of(40, sides).region(Rect(0, 0, 300, 200), None) == region


@pytest.mark.fast
def test_the_image_is_the_layer_with_the_new_area_transparent_and_selected() -> None:
    doc = GrowingDocument(60, 40)
    e = Expansion.of(10, "all")
    job = prepare_expand(doc, GenerationSettings(padding=5), e)
    assert job.kind == "inpaint" and job.region == Rect(0, 0, 80, 60)
    assert doc.reads == [Rect(0, 0, 60, 40)]
    img = np.frombuffer(job.image.data, np.uint8).reshape(60, 80, 4)
    assert np.array_equal(img[10:50, 10:70], doc.pixels)
    inside = np.zeros((60, 80), bool)
    inside[10:50, 10:70] = True
    assert (img[~inside] == 0).all()
    mask = np.frombuffer(job.mask.data, np.uint8).reshape(60, 80)
    assert (mask[inside] == 0).all() and (mask[~inside] == 255).all()
    # one side: only the band of picture next to it is read
    doc = GrowingDocument(60, 40)
    job = prepare_expand(doc, GenerationSettings(padding=5), Expansion.of(10, "right"))
    assert job.region == Rect(55, 0, 15, 40) and doc.reads == [Rect(55, 0, 5, 40)]
    with pytest.raises(ValueError, match="unknown sides"):
        Expansion.of(10, "diagonal")
    with pytest.raises(ValueError, match="1 to 4096"):
        Expansion.of(0, "left")


def test_expand_grows_the_canvas_only_with_the_result(daemon: DaemonProc) -> None:
    doc = GrowingDocument(120, 80)
    before = doc.pixels.copy()
    session = Session(daemon.endpoint)
    e = Expansion.of(24, "right")
    # cancelled: nothing happens to the document
    session.submit(doc, GenerationSettings(steps=200, refine="off"), expansion=e)
    while session.job.state is not JobState.RUNNING:
        session.poll(100)
    session.cancel()
    finish(session)
    assert session.deliver(doc) == [] and doc.expansions == [] and doc.layers == []
    # done: grown, then the layer over the new strip
    session.submit(doc, GenerationSettings(prompt="", seed=4, steps=4), expansion=e)
    finish(session)
    assert session.job.state is JobState.DONE, session.job.error_message
    assert len(session.deliver(doc)) == 1
    assert doc.expansions == [e] and doc.pixels.shape == (80, 144, 4)
    assert np.array_equal(doc.pixels[:, :120], before)     # the layer itself: unchanged
    (_, patch), = doc.layers
    px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
    layer = np.zeros((80, 144, 4), np.uint8)
    layer[patch.y:patch.y + patch.height, patch.x:patch.x + patch.width] = px
    assert (layer[:, 120:, 3] == 255).all()                 # the new strip: filled, opaque
    assert (layer[:, :120 - 8, 3] == 0).all()               # the picture: left alone
    session.close()

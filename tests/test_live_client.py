"""plugin.live (Krita's Live mode without Qt) through the controller, against a real daemon,
with an in-memory document standing in for the host; the Krita binding is proven in the
real Krita by tests/test_krita_ui.py."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from paintbridge.plugin.client import Frame, Patch
from paintbridge.plugin.live import Live, box_around, changed_box
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings

from .conftest import DaemonProc
from .test_controller import LayerDocument, make, spin


class LiveDoc(LayerDocument):
    """LayerDocument plus the live side: an overview, and one preview layer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pixels[..., :3] = 200   # a plain light canvas to paint on
        self.preview: Patch | None = None
        self.preview_updates = 0

    def overview(self, side: int) -> Frame:   # as Krita's: evenly spaced full rows
        h, w = self.pixels.shape[:2]
        n = min(side, h)
        rows = self.pixels[[(2 * i + 1) * h // (2 * n) for i in range(n)]]
        return Frame(w, n, "bgra8", np.ascontiguousarray(rows).tobytes())

    def show_live(self, patch: Patch, name: str) -> None:
        self.preview = patch
        self.preview_updates += 1

    def remove_live(self) -> None:
        self.preview = None

    def dab(self, x: int, y: int, r: int = 3) -> None:
        self.pixels[max(0, y - r):y + r, max(0, x - r):x + r, :3] = (30, 30, 220)


SETTINGS = GenerationSettings(prompt="a red circle", steps=4, seed=5, mode="auto")


def test_changed_box_and_the_box_around_it() -> None:
    canvas = Rect(0, 0, 4000, 2000)
    old = Frame(4, 2, "gray8", bytes(8))
    new = Frame(4, 2, "gray8", bytes([0, 0, 0, 0, 0, 0, 9, 0]))
    assert changed_box(old, old, canvas) is None
    assert changed_box(old, new, canvas) == Rect(2000, 1000, 1000, 1000)
    assert box_around(Rect(3990, 10, 5, 5), canvas) == Rect(3488, 0, 512, 512)
    assert box_around(Rect(100, 100, 900, 20), canvas) == Rect(100, 0, 900, 512)


def test_live_follows_the_brush_and_apply_keeps_a_layer(daemon: DaemonProc) -> None:
    """Strokes on a small canvas: the preview layer updates several times, each job sends
    only what changed, the source layer is never written, Apply adds an ordinary layer,
    Live off removes the preview."""
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveDoc(96, 80)
    assert c.live_start(SETTINGS, lambda: doc), c.message
    painted = doc.pixels.copy()
    for i in range(6):
        doc.dab(20 + 10 * i, 40)
        painted = doc.pixels.copy()
        shown = doc.preview_updates
        spin(c, lambda shown=shown: (c.live_tick(SETTINGS), doc.preview_updates)[1] > shown,
             120)
        assert np.array_equal(doc.pixels, painted)    # nothing written into the source
    assert doc.preview_updates >= 6 and c.live.sent >= 6
    sent = c.live.sent
    for _ in range(5):                                # an unchanged canvas sends nothing
        c.live_tick(SETTINGS)
        time.sleep(0.05)
    assert c.live.sent == sent
    c.live_apply()
    assert len(doc.layers) == 1 and doc.layers[0][0].startswith("a red circle [seed 5]")
    c.live_stop()
    assert doc.preview is None and not c.live.on
    assert np.array_equal(doc.pixels, painted) and len(doc.layers) == 1


def test_a_new_prompt_is_a_new_job(daemon: DaemonProc) -> None:
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveDoc(64, 64)
    c.live_start(SETTINGS, lambda: doc)
    spin(c, lambda: (c.live_tick(SETTINGS), doc.preview_updates)[1] >= 1, 120)
    other = GenerationSettings(prompt="a blue square", steps=4, seed=5, mode="auto")
    spin(c, lambda: (c.live_tick(other), doc.preview_updates)[1] >= 2, 120)
    assert c.live.shown_prompt == "a blue square"
    c.live_stop()


def test_on_a_large_canvas_live_works_around_the_last_stroke(daemon: DaemonProc) -> None:
    """Without a selection, a canvas over a megapixel is live in a 512 box around where
    the painter last painted; only that box is read and sent."""
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveDoc(1600, 1200)
    c.live_start(SETTINGS, lambda: doc)
    c.live_tick(SETTINGS)
    doc.reads.clear()
    doc.dab(1500, 100, r=8)
    spin(c, lambda: (c.live_tick(SETTINGS), doc.preview_updates)[1] >= 1, 120)
    region = Rect(1088, 0, 512, 512)
    assert set(doc.reads) == {region}
    p = doc.preview
    assert p is not None and (p.x, p.y, p.width, p.height) == (1088, 0, 512, 512)
    c.live_stop()


def test_live_inpaints_the_selection(daemon: DaemonProc) -> None:
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveDoc(128, 128, selection=Rect(40, 40, 32, 32))
    c.live_start(SETTINGS, lambda: doc)
    spin(c, lambda: (c.live_tick(SETTINGS), doc.preview_updates)[1] >= 1, 120)
    p = doc.preview
    assert p is not None
    alpha = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4)[..., 3]
    assert alpha.max() == 255 and alpha[0, 0] == 0   # the selection only
    c.live_stop()


@pytest.mark.fast
def test_live_needs_a_daemon_that_has_it() -> None:
    c, _ = make("tcp://127.0.0.1:9")
    assert not c.live_start(SETTINGS, lambda: LiveDoc(8, 8))
    assert "daemon" in c.message.text and c.message.error
    c.session.info = {"features": []}
    assert not c.live_start(SETTINGS, lambda: LiveDoc(8, 8))
    assert "no live mode" in c.message.text
    c.close()


def test_painting_faster_than_jobs_still_shows_results(daemon: DaemonProc) -> None:
    """A painter who never pauses (a dab every tick, jobs slower than that) still sees
    results: a running job finishes before the next state goes out."""
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveDoc(96, 80)
    slow = GenerationSettings(prompt="a red circle", steps=30, seed=5, mode="auto")
    c.live_start(slow, lambda: doc)
    live: Live = c.live
    end = time.monotonic() + 20
    i = 0
    while time.monotonic() < end and doc.preview_updates < 3:
        doc.dab(5 + i % 80, 5 + (i // 80) % 70)
        i += 1
        c.pump()
        c.live_tick(slow)
        time.sleep(0.1)
    assert doc.preview_updates >= 3, (live.sent, c.message)
    c.live_stop()

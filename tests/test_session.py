"""plugin.session against a real daemon, with an in-memory document standing in for the host
(the hosts' own adapters are proven in the real Krita and GIMP by their own tests)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from paintbridge.plugin.client import DaemonError, Frame, Job, JobState, Patch
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import (
    GenerationSettings,
    Session,
    UnsupportedDocument,
    layer_name,
    prepare,
)

from .conftest import DaemonProc, free_port


class ArrayDocument:
    """A BGRA8 canvas and a gray8 selection; records every read and the layers it gets."""

    def __init__(self, width: int, height: int, selection: Rect | None = None,
                 colour_model: str = "RGBA") -> None:
        rng = np.random.default_rng(0)
        self.pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        self.pixels[..., 3] = 255
        self.mask = np.zeros((height, width), np.uint8)
        if selection is not None:
            self.mask[selection.y:selection.bottom, selection.x:selection.right] = 255
        self.selection = selection
        self.colour_model = colour_model
        self.reads: list[Rect] = []
        self.layers: list[tuple[str, Patch]] = []

    def canvas(self) -> Rect:
        return Rect(0, 0, self.pixels.shape[1], self.pixels.shape[0])

    def selection_bounds(self) -> Rect | None:
        return self.selection

    def pixel_format(self) -> str:
        if self.colour_model != "RGBA":
            raise UnsupportedDocument(f"{self.colour_model} documents are not supported")
        return "bgra8"

    def read_pixels(self, rect: Rect) -> bytes:
        self.reads.append(rect)
        return self.pixels[rect.y:rect.bottom, rect.x:rect.right].tobytes()

    def read_selection(self, rect: Rect) -> Frame:
        m = self.mask[rect.y:rect.bottom, rect.x:rect.right]
        return Frame(rect.width, rect.height, "gray8", m.tobytes())

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> None:
        self.layers.extend(zip(names, patches, strict=True))
        self.group = group


def finish(session: Session, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not session.job.finished:
        session.poll(100)
        assert time.monotonic() < deadline


def test_settings_round_trip_and_tolerance() -> None:
    s = GenerationSettings(prompt="p", seed=3, strength=0.4, mode="img2img")
    assert GenerationSettings.from_json(s.to_json()) == s
    odd = GenerationSettings.from_json('{"steps": "many", "mode": "x", "count": 2, "zzz": 1, '
                                       '"guidance": 5, "seed": true}')
    assert odd.steps is None and odd.mode == "auto" and odd.count == 2
    assert odd.guidance == 5.0 and odd.seed is None
    assert GenerationSettings.from_json("not json") == GenerationSettings()


def test_prepare_reads_only_the_region() -> None:
    doc = ArrayDocument(4000, 3000, Rect(1000, 1200, 100, 80))
    job = prepare(doc, GenerationSettings(prompt="x", padding=20, grow=4))
    assert job.kind == "inpaint" and doc.reads == [Rect(976, 1176, 148, 128)]
    assert len(job.image.data) == 148 * 128 * 4 and job.mask.format == "gray8"
    assert prepare(doc, GenerationSettings(mode="txt2img", grow=0)).image is None
    whole = prepare(ArrayDocument(50, 40), GenerationSettings())
    assert whole.kind == "img2img" and whole.region == Rect(0, 0, 50, 40) and whole.mask is None


def test_prepare_refuses_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="needs a selection"):
        prepare(ArrayDocument(50, 40), GenerationSettings(mode="inpaint"))
    with pytest.raises(UnsupportedDocument, match="CMYK"):
        prepare(ArrayDocument(50, 40, colour_model="CMYK"), GenerationSettings())


def test_layer_names() -> None:
    assert layer_name("a  red\ncircle", 7) == "a red circle [seed 7]"
    assert layer_name("", 1) == "(no prompt) [seed 1]"
    assert len(layer_name("x" * 500, 1)) < 80


def test_session_generates_new_layers(daemon: DaemonProc) -> None:
    doc = ArrayDocument(300, 200, Rect(100, 60, 50, 40))
    before = doc.pixels.copy()
    session = Session(daemon.endpoint)
    assert session.check() and "tiny-inpainting" in session.models()
    session.submit(doc, GenerationSettings(prompt="a red circle", seed=11, count=2, steps=3))
    with pytest.raises(ValueError, match="already running"):
        session.submit(doc, GenerationSettings())
    finish(session)
    assert session.job.state is JobState.DONE
    names = session.deliver(doc)
    assert names == ["a red circle [seed 11]", "a red circle [seed 12]"]
    assert doc.group == "a red circle [2 variations]"
    assert session.job.id not in session.client.jobs      # delivered jobs are forgotten
    assert [p.format for _, p in doc.layers] == ["bgra8", "bgra8"]
    assert (doc.pixels == before).all()          # the source is never written
    session.close()


def test_cancelled_and_failed_jobs_write_nothing(daemon: DaemonProc) -> None:
    doc = ArrayDocument(300, 200, Rect(100, 60, 50, 40))
    session = Session(daemon.endpoint)
    session.submit(doc, GenerationSettings(steps=200, count=8))
    while session.job.state is not JobState.RUNNING:
        session.poll(100)
    session.cancel()
    finish(session)
    assert session.job.state is JobState.CANCELLED and session.deliver(doc) == []
    session.submit(doc, GenerationSettings(model="no-such-model"))
    finish(session)
    assert session.job.error_code == "unknown_model" and session.deliver(doc) == []
    assert doc.layers == []
    session.close()


def test_unreachable_daemon_is_reported() -> None:
    session = Session(f"tcp://127.0.0.1:{free_port()}")
    assert not session.check(timeout=0.3)
    assert "no paintbridge daemon" in session.last_error
    with pytest.raises(DaemonError):
        session.submit(ArrayDocument(20, 20), GenerationSettings())
    session.close()


def _spin(session: Session, until, limit: float = 10.0) -> float:
    """Drive keepalive like a host's timer; returns the longest single call in seconds."""
    worst, deadline = 0.0, time.monotonic() + limit
    while not until() and time.monotonic() < deadline:
        t = time.monotonic()
        session.poll()
        session.keepalive(time.monotonic())
        worst = max(worst, time.monotonic() - t)
        time.sleep(0.02)
    return worst


def test_keepalive_connects_without_blocking(daemon: DaemonProc) -> None:
    session = Session(daemon.endpoint)
    worst = _spin(session, lambda: session.connected)
    assert session.connected and session.info["event"] == "hello"
    assert "tiny-inpainting" in session.models() and "job" not in session.info
    assert worst < 0.2
    # the next probe's answer from the same daemon is no change (a host then leaves its
    # model list alone)
    assert not session.keepalive(time.monotonic() + 60)
    changed, deadline = [], time.monotonic() + 5
    while session._probe is not None and time.monotonic() < deadline:
        session.poll(50)
        changed.append(session.keepalive(time.monotonic()))
    assert session._probe is None and changed and not any(changed)
    session.close()


def test_keepalive_reports_no_daemon_at_once() -> None:
    session = Session(f"tcp://127.0.0.1:{free_port()}")
    session.job = Job("x-1", "inpaint")                  # a job in flight
    t = time.monotonic()
    assert session.keepalive(time.monotonic())
    assert time.monotonic() - t < 0.2
    assert not session.connected and "no paintbridge daemon" in session.last_error
    assert session.job.state is JobState.FAILED and "lost" in session.job.error_message
    with pytest.raises(DaemonError):
        t = time.monotonic()
        session.submit(ArrayDocument(20, 20), GenerationSettings(), send_timeout=0)
    assert time.monotonic() - t < 0.2
    session.close()


def test_unusable_keys_leave_a_session_that_says_why(tmp_path: Path) -> None:
    """Keys that cannot be loaded: nothing is sent, and every attempt names the key problem."""
    session = Session(f"tcp://127.0.0.1:{free_port()}", server_key="not-a-key",
                      client_key=str(tmp_path / "missing.key_secret"))
    assert session.key_error and session.key_error.startswith("Keys not usable")
    assert session.refusal("the keys") == session.key_error
    assert session.filenos() == [] and not session.keepalive(time.monotonic())
    assert not session.check() and not session.connected
    with pytest.raises(DaemonError, match="Keys not usable"):
        session.submit(ArrayDocument(20, 20), GenerationSettings())
    session.reconnect(server_key=None, client_key=None)     # keys cleared: a plain client
    assert session.key_error is None and session.filenos()
    endpoint = session.endpoint
    with pytest.raises(ValueError):
        session.reconnect("tcp://nowhere:not-a-port")
    assert session.endpoint == endpoint and session.filenos()   # left as it was
    session.close()

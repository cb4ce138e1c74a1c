"""plugin.oneshot, the flow of a host's filter, against real daemon processes over real
ZeroMQ, with an in-memory document standing in for the host (GIMP's own adapters are proven
in the real GIMP by tests/test_gimp.py): a job is delivered as new layers with its progress
told; a refused, failed, cancelled, timed-out or abandoned job raises or returns with the
document untouched."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from paintbridge.plugin import oneshot
from paintbridge.plugin.client import JobState, Patch
from paintbridge.plugin.oneshot import JobSpec, PaintbridgeError
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings, Session

from .conftest import DaemonProc, TinyModels, free_port, start_daemon
from .test_session import ArrayDocument

SELECTION = Rect(100, 60, 50, 40)


class RecordingDocument(ArrayDocument):
    """The test session's in-memory document, with every write it is asked for recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[str] = []

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> None:
        self.writes.append("add_results")
        super().add_results(patches, names, group)

    def expand_canvas(self, expansion: Any) -> None:
        self.writes.append("expand_canvas")

    def open_image(self, *args: Any) -> None:
        self.writes.append("open_image")


class Recorder:
    """The host's callbacks: what the progress bar was told, and a Cancel button pressed
    once the job is ``press_at`` done."""

    def __init__(self, press_at: float | None = None) -> None:
        self.calls: list[tuple[float | None, str]] = []
        self.press_at = press_at
        self.asked = 0

    def progress(self, fraction: float | None, text: str) -> None:
        self.calls.append((fraction, text))

    def cancelled(self) -> bool:
        self.asked += 1
        done = [f for f, _ in self.calls if f is not None]
        return self.press_at is not None and bool(done) and done[-1] >= self.press_at


def untouched(doc: RecordingDocument, before: Any) -> bool:
    return doc.writes == [] and doc.layers == [] and (doc.pixels == before).all()


def test_a_job_is_delivered_as_new_layers_with_its_progress(daemon: DaemonProc) -> None:
    doc = RecordingDocument(300, 200, SELECTION)
    before = doc.pixels.copy()
    host = Recorder()
    session = Session(daemon.endpoint)
    try:
        outcome = oneshot.run(session, doc, GenerationSettings(
            mode="inpaint", prompt="a red circle", seed=11, count=2, steps=3),
            progress=host.progress, cancelled=host.cancelled)
    finally:
        session.close()
    assert not outcome.cancelled and outcome.job.state is JobState.DONE
    assert outcome.names == ["a red circle [seed 11]", "a red circle [seed 12]"]
    assert doc.writes == ["add_results"] and doc.group == "a red circle [2 variations]"
    assert [name for name, _ in doc.layers] == outcome.names
    for _, p in doc.layers:       # over the selection, with the context around it
        assert Rect(p.x, p.y, p.width, p.height).intersected(SELECTION) == SELECTION, p
    assert (doc.pixels == before).all()                  # the source layer is never written
    steps = [(f, t) for f, t in host.calls if t.startswith("Step ")]
    assert steps[-1] == (1.0, "Step 6/6"), host.calls   # 3 steps for each of 2
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and host.asked > 0


def test_a_failing_job_is_an_error_and_changes_nothing(daemon: DaemonProc) -> None:
    doc = RecordingDocument(300, 200, SELECTION)
    before = doc.pixels.copy()
    session = Session(daemon.endpoint)
    try:
        with pytest.raises(PaintbridgeError, match=r"Paintbridge failed: .*\[unknown_model\]"):
            oneshot.run(session, doc, GenerationSettings(mode="inpaint", model="no-such-model"))
        assert session.job is not None and session.job.state is JobState.FAILED
        assert session.job.id not in session.client.jobs      # forgotten, not kept
    finally:
        session.close()
    assert untouched(doc, before)


def test_a_cancelled_job_changes_nothing(daemon: DaemonProc) -> None:
    """The user presses Cancel after a few steps: the daemon stops the job, the run returns
    "cancelled" (not an error) and nothing was written."""
    doc = RecordingDocument(300, 200, SELECTION)
    before = doc.pixels.copy()
    host = Recorder(press_at=0.01)
    session = Session(daemon.endpoint)
    try:
        outcome = oneshot.run(session, doc, GenerationSettings(mode="inpaint", steps=200,
                                                               count=4),
                              progress=host.progress, cancelled=host.cancelled)
    finally:
        session.close()
    assert outcome.cancelled and outcome.names == []
    assert outcome.job.state is JobState.CANCELLED
    assert 0 < outcome.job.step < outcome.job.total
    assert untouched(doc, before)


def test_a_job_past_its_timeout_is_cancelled_and_changes_nothing(daemon: DaemonProc) -> None:
    doc = RecordingDocument(300, 200, SELECTION)
    before = doc.pixels.copy()
    session = Session(daemon.endpoint)
    try:
        start = time.monotonic()
        with pytest.raises(PaintbridgeError, match="did not finish within 1 s"):
            oneshot.run(session, doc, GenerationSettings(mode="inpaint", steps=200, count=4),
                        timeout=1.0)
        assert time.monotonic() - start < 10
        # the session is free for the next job, which is delivered as usual
        outcome = oneshot.run(session, doc, GenerationSettings(mode="inpaint", steps=2,
                                                               seed=3))
    finally:
        session.close()
    assert doc.writes == ["add_results"] and outcome.names == ["(no prompt) [seed 3]"]
    assert (doc.pixels == before).all()


def test_what_cannot_be_sent_is_an_error_and_changes_nothing(daemon: DaemonProc) -> None:
    """Said before anything is sent: a document the daemon cannot take, an inpaint without a
    selection, a daemon that is not there."""
    cmyk = RecordingDocument(50, 40, SELECTION, colour_model="CMYK")
    plain = RecordingDocument(50, 40)
    before = plain.pixels.copy()
    session = Session(daemon.endpoint)
    try:
        with pytest.raises(PaintbridgeError, match="CMYK documents are not supported"):
            oneshot.run(session, cmyk, GenerationSettings())
        with pytest.raises(PaintbridgeError, match="needs a selection"):
            oneshot.run(session, plain, GenerationSettings(mode="inpaint"))
    finally:
        session.close()
    nobody = Session(f"tcp://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(PaintbridgeError, match="could not send the job"):
            oneshot.run(nobody, plain, GenerationSettings())
    finally:
        nobody.close()
    assert cmyk.writes == [] and untouched(plain, before)


def test_a_daemon_that_stops_answering_is_an_error(tiny_models: TinyModels,
                                                   tmp_path: Path) -> None:
    """The daemon freezes in the middle of a job (its connection still up, so the client
    sees no disconnect): after a short silence the flow asks whether it is still there,
    says it stopped answering, and has written nothing."""
    own = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded")
    doc = RecordingDocument(300, 200, SELECTION)
    before = doc.pixels.copy()
    session = Session(own.endpoint)
    frozen: list[bool] = []

    def freeze_once_running(fraction: float | None, text: str) -> None:
        if fraction is not None and not frozen:
            frozen.append(True)
            own.proc.send_signal(signal.SIGSTOP)

    try:
        start = time.monotonic()
        with pytest.raises(PaintbridgeError, match=r"stopped answering.*\[unreachable\]"):
            oneshot.run(session, doc, GenerationSettings(mode="inpaint", steps=200, count=4),
                        JobSpec(), progress=freeze_once_running, silence_s=1.0)
        assert time.monotonic() - start < 30
    finally:
        session.close()
        own.stop(signal.SIGKILL)
    assert frozen and untouched(doc, before)

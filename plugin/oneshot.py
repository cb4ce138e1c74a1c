"""One job from a filter's start to its end, for a host whose command runs and waits (GIMP's
procedures, a batch script): submit, wait with progress, deliver the result as new layers, or
raise :class:`PaintbridgeError` with what to tell the user. The document is written only by
the delivery of a finished job: a refused, failed, cancelled or timed-out job leaves it as
it was.

The host brings its :class:`~.document.Document`, the settings, an open
:class:`~.session.Session` and two callbacks: ``progress(fraction, text)`` for its progress
bar and ``cancelled()``, asked while waiting, True once the user asks to stop (where a host
with a window also lets it redraw). Connecting, dialogs and the words of a refused
connection stay with the host.

Importing this module needs no pyzmq (a host imports :class:`PaintbridgeError` before it
knows whether pyzmq is there, to say so when it is not): the client's names are imported
when a job runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ErrorCode, ProtocolError
from .job import Job, JobState

if TYPE_CHECKING:
    from .document import ControlLayer, Document
    from .expand import Expansion
    from .generation import GenerationSettings
    from .session import Session

#: job kind -> what the progress bar and the Cancel window are titled
TITLES = {"inpaint": "Inpainting", "img2img": "Image to image", "txt2img": "Generating",
          "upscale": "Upscaling"}
SILENCE_CHECK_S = 5.0    # ask the daemon whether it is alive after this long without news
POLL_MS = 100            # one slice of the wait: callbacks run about ten times a second

Progress = Callable[[float | None, str], None]


class PaintbridgeError(Exception):
    """A failure to show the user as it is (the message says what to do)."""


@dataclass
class JobSpec:
    """What one run asks for beyond the settings: an Expand (``expansion``), an Upscale
    (``upscale`` 2-4) or a generation steered by ``control_layers``."""

    expansion: Expansion | None = None
    upscale: int = 0
    control_layers: Sequence[ControlLayer] = field(default_factory=tuple)


@dataclass
class Outcome:
    """How a run ended without an error: delivered (``names``: the new layers), or
    cancelled by the user (nothing written)."""

    job: Job
    names: list[str]
    cancelled: bool = False


def run(session: Session, doc: Document, settings: GenerationSettings,
        spec: JobSpec | None = None, *, progress: Progress | None = None,
        cancelled: Callable[[], bool] | None = None, timeout: float | None = None,
        silence_s: float = SILENCE_CHECK_S) -> Outcome:
    """Run one job on ``doc`` through ``session`` (connected or not: an unreachable daemon
    is an error) and deliver it. ``timeout``: the most seconds the job may take (None: no
    limit; the daemon's silence for ``silence_s`` is checked either way). Raises
    PaintbridgeError; the document is then unchanged."""
    # 1. send it: a document that cannot be sent, or a daemon that cannot be reached, is
    #    the user's message before anything was written
    job = _submit(session, doc, settings, spec or JobSpec())
    # 2. wait, with progress, until it ends, the user cancels or the time is up
    asked_to_cancel = _wait(session, job, progress, cancelled, timeout, silence_s)
    # 3. deliver, or say why not
    if asked_to_cancel:
        session.discard(job)
        return Outcome(job, [], cancelled=True)
    if job.state is JobState.CANCELLED:
        session.discard(job)
        raise PaintbridgeError(f"Paintbridge: the job was cancelled: {job.error_message}. "
                               "The image was not changed.")
    if job.state is not JobState.DONE:
        session.discard(job)
        raise PaintbridgeError(f"Paintbridge failed: {job.error_message} [{job.error_code}]")
    return Outcome(job, session.deliver(doc))


def _submit(session: Session, doc: Document, settings: GenerationSettings,
            spec: JobSpec) -> Job:
    from .client import DaemonError
    from .document import UnsupportedDocument

    try:
        return session.submit(doc, settings, expansion=spec.expansion, upscale=spec.upscale,
                              control_layers=spec.control_layers)
    except (ValueError, UnsupportedDocument) as exc:
        raise PaintbridgeError(str(exc)) from exc
    except (DaemonError, ProtocolError) as exc:
        raise PaintbridgeError(f"Paintbridge could not send the job: {exc}") from exc


def _wait(session: Session, job: Job, progress: Progress | None,
          cancelled: Callable[[], bool] | None, timeout: float | None,
          silence_s: float) -> bool:
    """Pump the socket until the job ends; True when the user asked to cancel it. When the
    daemon falls silent, check that it is still there rather than wait forever."""
    from .naming import job_progress

    start = last = time.monotonic()
    asked = False
    while not job.finished:
        news = session.poll(POLL_MS) is not None
        now = time.monotonic()
        if news:
            last = now
        elif now - last > silence_s:
            if session.check(timeout=5.0):   # also dispatches the job's events
                last = time.monotonic()
            else:
                job.fail(ErrorCode.UNREACHABLE,
                         f"the daemon stopped answering ({session.last_error})")
        if timeout is not None and now - start > timeout and not job.finished:
            session.cancel()
            job.fail(ErrorCode.TIMEOUT, f"not finished within {timeout:g} s")
            session.discard(job)
            raise PaintbridgeError(f"Paintbridge: the job did not finish within {timeout:g} s "
                                   "and was cancelled. The image was not changed.")
        done, text = job_progress(job)
        if progress is not None and (news or done is None):   # a busy bar keeps moving
            progress(done, text)
        if not asked and cancelled is not None and cancelled():
            asked = True
            session.cancel()
    return asked

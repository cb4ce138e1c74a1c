"""Waiting for one job inside GIMP: the socket is pumped on GIMP's side, the job's state goes
to GIMP's progress bar (and, when run from the menu, to a window with a Cancel button)."""

from __future__ import annotations

import time

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from plugin.protocol import ErrorCode, Stage  # noqa: E402
from plugin.session import job_progress  # noqa: E402

SILENCE_CHECK_S = 5.0    # ask the daemon if it is alive after this long without news
TITLES = {"inpaint": "Inpainting", "img2img": "Image to image", "txt2img": "Generating",
          "upscale": "Upscaling"}


def wait(session, job, kind: str, with_user: bool) -> None:
    """Pump the socket until the job ends, showing its state in GIMP's progress bar; when
    the daemon falls silent, check that it is still there rather than wait forever."""
    title = TITLES[kind]
    Gimp.progress_init(f"Paintbridge: {title}…")
    canceller = None
    if with_user:
        import gimp_dialogs

        canceller = gimp_dialogs.CancelWindow(title, session.cancel)
    last = time.monotonic()
    try:
        while not job.finished:
            if session.poll(100) is not None:
                last = time.monotonic()
                done, text = job_progress(job)
                Gimp.progress_set_text(f"Paintbridge: {title}: {text}")
                if done is not None:
                    Gimp.progress_update(done)
            elif time.monotonic() - last > SILENCE_CHECK_S:
                if session.check(timeout=5.0):   # also dispatches the job's events
                    last = time.monotonic()
                else:
                    job.fail(ErrorCode.UNREACHABLE,
                             f"the daemon stopped answering ({session.last_error})")
            if job.stage == Stage.LOADING:   # no steps to count yet
                Gimp.progress_pulse()
            if canceller is not None:
                canceller.iterate(job)
    finally:
        if canceller is not None:
            canceller.close()
        Gimp.progress_end()

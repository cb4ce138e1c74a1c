"""Waiting for one job inside GIMP: the socket is pumped on GIMP's side, steps go to GIMP's
progress bar (and, when run from the menu, to a window with a Cancel button)."""

from __future__ import annotations

import time

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from plugin.client import DaemonError  # noqa: E402

SILENCE_CHECK_S = 5.0    # ask the daemon if it is alive after this long without news


def wait(session, job, kind: str, with_user: bool) -> None:
    """Pump the socket until the job ends, showing steps in GIMP's progress bar; when the
    daemon falls silent, check that it is still there rather than wait forever."""
    title = {"inpaint": "Inpainting", "img2img": "Image to image",
             "txt2img": "Generating"}[kind]
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
                if job.total:
                    Gimp.progress_set_text(f"Paintbridge: {title}, step {job.step}/{job.total}")
                    Gimp.progress_update(job.step / job.total)
                elif job.position:
                    Gimp.progress_set_text(f"Paintbridge: queued, position {job.position}")
            elif time.monotonic() - last > SILENCE_CHECK_S:
                try:
                    session.client.hello(timeout=5.0)  # also dispatches the job's events
                    last = time.monotonic()
                except DaemonError as exc:
                    job.fail(exc.code, f"the daemon stopped answering ({exc.message})")
            if canceller is not None:
                canceller.iterate(job)
    finally:
        if canceller is not None:
            canceller.close()
        Gimp.progress_end()

"""Live painting: the picture follows the brush, with the host left out.

While Live is on, the host calls :meth:`Live.tick` from a timer. Each tick reads the region
live works on from the *source* layer (never the preview layer), and when its pixels, the
selection or the settings changed since the last job, sends a new live job once the canvas
has been still for a moment (``debounce``), replacing a job still on its way; while the
painter goes on, it sends the newest state every ``max_wait`` seconds, but lets a running
job finish first. The daemon keeps one live job per client, so no backlog builds up.
The newest result goes into one preview layer the host updates in place; Apply copies it
into an ordinary new layer. Switching Live off removes the preview layer and leaves the
document as it was, plus what was applied.

Which region: the selection (grown by the usual padding) when there is one; else the whole
canvas when it is small; else a box around the last stroke, found by comparing a sample of
the layer's rows between ticks (hosts' scripting APIs have no "stroke ended" signal, and
Krita's layer thumbnail does not follow writes; ``docs/krita.md`` has what each way of
looking costs Krita).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any, Protocol

from .client import DaemonError, Frame, Job, JobState, Patch
from .region import Rect
from .session import (
    ControlLayer,
    Document,
    GenerationSettings,
    PreparedJob,
    Session,
    layer_name,
    prepare,
)

#: without a selection: canvases up to this many pixels are live as a whole ...
WHOLE_CANVAS_PIXELS = 1024 * 1024
#: ... larger ones in a box of this side around the last stroke
STROKE_BOX = 512
#: rows (at most) of the overview compared between ticks to find where the canvas changed
OVERVIEW = 128


class LiveTarget(Document, Protocol):
    """What a host adds to its document adapter for Live."""

    def overview(self, side: int) -> Frame:
        """A cheap sample of the source layer that shows where it changed: at most ``side``
        evenly spaced rows, each of evenly spaced pixels (any pixel format)."""

    def show_live(self, patch: Patch, name: str) -> None:
        """Put ``patch`` into the one preview layer (made on first use, above the source,
        updated in place afterwards; what an earlier patch covered is cleared)."""

    def remove_live(self) -> None:
        """Remove the preview layer, if there is one."""

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> Any:
        ...


def _first_diff(a: bytes, b: bytes) -> int:
    """Index of the first byte where equal-length ``a`` and ``b`` differ (they do): a
    binary search on slice comparisons, which run in C."""
    lo, hi = 0, len(a)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def changed_box(old: Frame, new: Frame, canvas: Rect) -> Rect | None:
    """The canvas rectangle covering every overview pixel that differs, or None. The
    overview's rows and columns are spread evenly over the canvas."""
    if (old.width, old.height, old.format) != (new.width, new.height, new.format):
        return canvas
    a, b = bytes(old.data), bytes(new.data)
    if a == b:
        return None
    bpp = len(a) // max(1, old.width * old.height)
    row = old.width * bpp
    xs: list[int] = []
    ys: list[int] = []
    for y in range(old.height):
        ra, rb = a[y * row:(y + 1) * row], b[y * row:(y + 1) * row]
        if ra == rb:
            continue
        ys.append(y)
        xs.append(_first_diff(ra, rb) // bpp)
        xs.append((row - 1 - _first_diff(ra[::-1], rb[::-1])) // bpp)
    sx, sy = canvas.width / old.width, canvas.height / old.height
    x0, x1 = int(min(xs) * sx), int((max(xs) + 1) * sx + 0.999)
    y0, y1 = int(min(ys) * sy), int((max(ys) + 1) * sy + 0.999)
    return Rect(canvas.x + x0, canvas.y + y0, x1 - x0, y1 - y0)


def box_around(change: Rect, canvas: Rect, side: int = STROKE_BOX) -> Rect:
    """A ``side``-square box centred on ``change`` (larger when the change is), inside the
    canvas."""
    w, h = min(canvas.width, max(side, change.width)), min(canvas.height, max(side,
                                                                              change.height))
    x = min(max(canvas.x, change.x + change.width // 2 - w // 2), canvas.right - w)
    y = min(max(canvas.y, change.y + change.height // 2 - h // 2), canvas.bottom - h)
    return Rect(x, y, w, h)


class Live:
    """One docker's live mode: what to send when, and which result to show."""

    def __init__(self, session: Session, debounce: float = 0.15, max_wait: float = 0.6
                 ) -> None:
        self.session = session
        self.debounce = debounce
        self.max_wait = max_wait
        self.target: LiveTarget | None = None
        self.job: Job | None = None          # the newest live job sent
        self.shown: Patch | None = None      # the result in the preview layer
        self.shown_prompt = ""
        self.error: str | None = None        # the last job's failure, for the message line
        self.sent = self.results = 0
        self._region: Rect | None = None     # without a selection: the box live works on
        self._overview: Frame | None = None
        self._sent_key: tuple[Any, ...] | None = None
        self._pending: tuple[Any, ...] | None = None
        self._pending_at = self._first_pending = 0.0

    @property
    def on(self) -> bool:
        return self.target is not None

    def start(self, target: LiveTarget) -> None:
        self.stop()
        self.target = target
        self.error = None

    def stop(self) -> None:
        """Cancel the live job, remove the preview layer; the document is as before."""
        if self.job is not None and not self.job.finished:
            try:
                self.session.client.cancel(self.job)
            except DaemonError:
                pass
        self._drop(self.job)
        target, self.target = self.target, None
        self.job = self.shown = None
        self._region = self._overview = self._sent_key = self._pending = None
        if target is not None:
            target.remove_live()   # may raise when the document was closed: nothing to do

    def apply(self) -> list[str]:
        """The shown result as an ordinary new layer (named like any result)."""
        if self.target is None or self.shown is None:
            return []
        name = layer_name(self.shown_prompt, self.shown.seed)
        self.target.add_results([self.shown], [name], None)
        return [name]

    # ------------------------------------------------------------------ each tick

    def tick(self, settings: GenerationSettings, now: float,
             control_layers: Sequence[ControlLayer] = ()) -> None:
        """Show a result that arrived, then send the canvas's state (the control layers'
        drawings included) if it changed and settled. Raises ValueError /
        UnsupportedDocument with words for the user."""
        if self.target is None:
            return
        self._follow()
        key, job = self._read(self.target, settings, control_layers)
        if key == self._sent_key:
            self._pending = None
            return
        if key != self._pending:
            if self._pending is None:
                self._first_pending = now
            self._pending, self._pending_at = key, now
        settled = now - self._pending_at >= self.debounce
        overdue = now - self._first_pending >= self.max_wait
        # Still painting: let a job that runs (or is about to) finish, since it shows the
        # stroke as it was a moment ago, rather than cancel it again and again, which would
        # show nothing until the painter stops; one waiting behind other jobs is replaced
        # for free. Paused: the newest state replaces whatever runs or waits.
        job_now = self.job
        busy = job_now is not None and not job_now.finished and not (
            job_now.state is JobState.QUEUED and (job_now.position or 0) >= 1)
        if settled or (overdue and not busy):
            self._send(job, settings.prompt)
            self._sent_key, self._pending = key, None

    def _follow(self) -> None:
        job = self.job
        if job is None or not job.finished:
            return
        if job.state is JobState.DONE and job.patches and self.target is not None:
            self.shown = job.patches[0]
            self.shown_prompt = job.info.get("prompt", "")
            self.target.show_live(self.shown, layer_name(self.shown_prompt, self.shown.seed))
            self.results += 1
            self.error = None
        elif job.state is JobState.FAILED:
            self.error = f"Live: {job.error_message} [{job.error_code}]"
            self._sent_key = None   # try again with the next change
        self._drop(job)
        self.job = None

    def _drop(self, job: Job | None) -> None:
        if job is not None:
            self.session.discard(job)

    def _region_for(self, target: LiveTarget) -> Rect:
        canvas = target.canvas()
        if canvas.width * canvas.height <= WHOLE_CANVAS_PIXELS:
            return canvas
        overview = target.overview(OVERVIEW)
        if self._overview is not None:
            change = changed_box(self._overview, overview, canvas)
            if change is not None and (self._region is None
                                       or change.intersected(self._region) != change):
                self._region = box_around(change, canvas)
        self._overview = overview
        if self._region is None:   # nothing painted yet: the middle of the canvas
            self._region = box_around(Rect(canvas.width // 2, canvas.height // 2, 0, 0),
                                      canvas)
        return self._region

    def _read(self, target: LiveTarget, settings: GenerationSettings,
              control_layers: Sequence[ControlLayer] = ()
              ) -> tuple[tuple[Any, ...], PreparedJob]:
        """What the next job would send, and a key that changes when any of it does."""
        if settings.mode == "txt2img":   # live follows the layer: inpaint or image to image
            settings = GenerationSettings("auto", **settings.values)
        job = prepare(target, settings, area=lambda: self._region_for(target),
                      control_layers=control_layers)
        assert job.image is not None
        key = (job.region, job.image.format, job.kind, zlib.crc32(job.image.data),
               zlib.crc32(bytes(job.mask.data)) if job.mask is not None else None,
               settings.to_json(), json.dumps(job.params.get("controls")),
               tuple(zlib.crc32(bytes(f.data)) for f in job.controls))
        return key, job

    def _send(self, job: PreparedJob, prompt: str) -> None:
        assert job.image is not None
        sent = self.session.client.submit(job.request(job.image.format, live=True),
                                          send_timeout=0)
        sent.info["prompt"] = prompt
        if self.job is not None:   # replaced at the daemon: its end is of no interest
            self._drop(self.job)
        self.job = sent
        self.sent += 1

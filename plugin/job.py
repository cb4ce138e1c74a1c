"""A job as the client holds it: the pixel buffers it sends and gets (:class:`Frame`,
:class:`Patch`), what it asks for (:class:`JobRequest`) and its life as the daemon's events
tell it (:class:`Job`). Standard library only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import protocol
from .errors import ErrorCode
from .frames import FrameSpec


@dataclass
class Frame:
    """A raw pixel buffer and its shape (``data`` may be bytes or a memoryview)."""

    width: int
    height: int
    format: str
    data: Any

    def spec(self, role: str) -> FrameSpec:
        return FrameSpec(role, self.width, self.height, self.format)


@dataclass
class Patch:
    """One result: RGBA pixels to put on a new layer at (x, y) on the canvas."""

    x: int
    y: int
    width: int
    height: int
    format: str
    seed: int
    data: Any


@dataclass(frozen=True)
class JobRequest:
    """Everything one submit sends: the kind, the params, the frames and where the result
    goes. Made by :meth:`PreparedJob.request <.generation.PreparedJob.request>` in the
    hosts, by the command line and by tests; :meth:`Client.submit <.client.Client.submit>`
    validates and sends it as it is."""

    kind: str
    params: Mapping[str, Any]
    image: Frame | None = None
    mask: Frame | None = None
    offset: tuple[int, int] = (0, 0)
    size: tuple[int, int] | None = None
    result_format: str | None = None
    preview: bool = False
    #: replaces the client's previous live job (which ends 'cancelled', ``replaced_by``)
    live: bool = False
    scale: int | None = None                  # an upscale's factor
    controls: Sequence[Frame] = ()            # one per ``params["controls"]`` item, in order

    def frames(self) -> list[tuple[str, Frame]]:
        """(role, frame) in the order they travel."""
        pairs = [(role, f) for role, f in (("image", self.image), ("mask", self.mask))
                 if f is not None]
        return pairs + [("control", f) for f in self.controls]


class JobState(Enum):
    SENT = "sent"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class Job:
    """Lifecycle of one submitted job, updated by the events the daemon sends back."""

    id: str
    kind: str
    state: JobState = JobState.SENT
    position: int | None = None
    #: while RUNNING: "loading" (``model`` is being loaded: "Loading model X…", no steps
    #: yet), "denoising" (``step`` of ``total``) or "retrying" (a cluster daemon's worker
    #: stopped under it: it runs again from the start)
    stage: str | None = None
    model: str | None = None   # the model the daemon runs the job with, once it says
    step: int = 0
    total: int = 0
    retries: int = 0
    preview: Frame | None = None
    patches: list[Patch] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state.finished

    def fail(self, code: str, message: str) -> None:
        self.state, self.error_code, self.error_message = JobState.FAILED, code, message

    @property
    def lost(self) -> bool:
        """Failed only because the connection dropped: a later ``fetch`` may still bring
        its result (the daemon finishes jobs whose client went away)."""
        return self.state is JobState.FAILED and self.error_code == ErrorCode.DISCONNECTED

    def apply(self, event: Mapping[str, Any], frames: Sequence[Any]) -> None:
        """Advance the state machine; events for a finished job are ignored, except that a
        lost job comes back to life when the daemon answers for it again."""
        kind = event["event"]
        if self.lost and kind == "error" and event.get("code") == ErrorCode.NOT_FOUND:
            self.error_message = (f"{self.error_message}; the daemon no longer knows the job "
                                  "(it was restarted or the result expired)")
            self.error_code = ErrorCode.NOT_FOUND
            return
        if self.finished and not self.lost:
            return
        if self.lost:
            self.error_code = self.error_message = None
        if kind == "accepted":
            self.state, self.stage = JobState.QUEUED, None
            self.position = event.get("position")
            self.model = event.get("model", self.model)
        elif kind == "progress":
            self.state = JobState.RUNNING
            # daemons before stages sent steps only
            self.stage = event.get("stage", protocol.Stage.DENOISING)
            if self.stage == protocol.Stage.LOADING:
                self.model = event.get("model", self.model)
            elif self.stage == protocol.Stage.RETRYING:   # starts over on another worker
                self.retries, self.step = event.get("retry", self.retries + 1), 0
            else:
                self.step, self.total = event.get("step", 0), event.get("total", 0)
            if frames and "preview" in event:
                p = event["preview"]
                self.preview = Frame(p["width"], p["height"], p["format"], frames[0])
        elif kind == "result":
            self.patches = [Patch(p["x"], p["y"], p["width"], p["height"], p["format"],
                                  p["seed"], buf)
                            for p, buf in zip(event["patches"], frames, strict=True)]
            self.info.update((k, v) for k, v in event.items() if k not in ("patches", "v"))
            self.model = event.get("model", self.model)
            self.state = JobState.DONE
        elif kind == "error":
            self.fail(event.get("code", ErrorCode.INTERNAL), event.get("message", ""))
        elif kind == "cancelled":
            self.state = JobState.CANCELLED
            self.error_message = event.get("message")   # why, when the client did not ask
            if "replaced_by" in event:   # a live job a newer one took over from
                self.info["replaced_by"] = event["replaced_by"]

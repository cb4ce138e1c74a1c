"""What a host plugin does between "Generate" and "new layers", with the host left out.

A host implements :class:`Document` (a handful of reads and one write on its own API);
everything else — which kind of job, which region to read, the request, the job's life,
naming the result layers — lives here, where it is tested without a host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from . import protocol
from .client import Client, DaemonError, Frame, Job, JobState, Patch
from .protocol import ErrorCode
from .region import Rect, job_region

MODES = ("auto", *protocol.KINDS)


class UnsupportedDocument(Exception):
    """The document cannot be sent (e.g. CMYK, Lab, grayscale): say so, send nothing."""


class Document(Protocol):
    """The host's side: implemented by krita/ and gimp/ on their own APIs."""

    def canvas(self) -> Rect: ...

    def selection_bounds(self) -> Rect | None:
        """Bounding box of the selection, or None when nothing is selected."""

    def pixel_format(self) -> str:
        """The active layer's wire format (rgba8, bgra8, rgba16, bgra16, rgbaf32);
        raises UnsupportedDocument for colour models the daemon cannot take."""

    def read_pixels(self, rect: Rect) -> bytes:
        """The active layer's pixels in ``rect``, in ``pixel_format()``."""

    def read_selection(self, rect: Rect) -> Frame:
        """The selection's values in ``rect`` (gray8/gray16/grayf32), soft edges kept."""

    def add_results(self, patches: list[Patch], names: list[str]) -> None:
        """New layers above the active layer (a group when there are several)."""


_TYPES: dict[str, Any] = {"prompt": str, "negative_prompt": str, "model": str, "mode": str,
                          "strength": (int, float), "steps": int, "guidance": (int, float),
                          "sampler": str, "seed": int, "count": int, "padding": int,
                          "grow": int, "feather": int}
_FLOATS = ("strength", "guidance")
_NULLABLE = ("model", "strength", "steps", "guidance", "seed", "padding")


@dataclass
class GenerationSettings:
    """Everything the user chooses in the docker or dialog; persisted by the host."""

    prompt: str = ""
    negative_prompt: str = ""
    model: str | None = None
    mode: str = "auto"
    strength: float | None = None    # None = the daemon's default for the kind
    steps: int | None = None
    guidance: float | None = None
    sampler: str = "default"
    seed: int | None = None          # None = random each time
    count: int = 1
    padding: int | None = None       # None = automatic context
    grow: int = 4
    feather: int = 4

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> GenerationSettings:
        """Tolerant: unknown keys and values of the wrong type keep their defaults, so an
        old or hand-edited settings file never stops the plugin from loading."""
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return cls()
        out = cls()
        if not isinstance(data, dict):
            return out
        for f in fields(cls):
            value = data.get(f.name, getattr(out, f.name))
            if value is None and f.name in _NULLABLE:
                setattr(out, f.name, None)
            elif isinstance(value, _TYPES[f.name]) and not isinstance(value, bool):
                setattr(out, f.name, float(value) if f.name in _FLOATS else value)
        if out.mode not in MODES:
            out.mode = "auto"
        if out.sampler not in protocol.SAMPLERS:
            out.sampler = "default"
        return out

    def kind(self, has_selection: bool) -> str:
        if self.mode != "auto":
            return self.mode
        return "inpaint" if has_selection else "img2img"

    def params(self, kind: str) -> dict[str, Any]:
        p: dict[str, Any] = {"prompt": self.prompt, "negative_prompt": self.negative_prompt,
                             "sampler": self.sampler, "count": self.count, "grow": self.grow,
                             "feather": self.feather}
        if kind != "txt2img" and self.strength is not None:
            p["strength"] = self.strength
        for key in ("model", "steps", "guidance", "seed", "padding"):
            value = getattr(self, key)
            if value is not None:
                p[key] = value
        return p


@dataclass
class PreparedJob:
    kind: str
    region: Rect
    params: dict[str, Any]
    image: Frame | None
    mask: Frame | None


def prepare(doc: Document, settings: GenerationSettings) -> PreparedJob:
    """Read exactly the region the job needs from the document; raise ValueError or
    UnsupportedDocument with a message for the user when nothing can be sent."""
    fmt = doc.pixel_format()
    canvas = doc.canvas()
    bounds = doc.selection_bounds()
    if bounds is not None and bounds.is_empty:
        bounds = None
    kind = settings.kind(bounds is not None)
    if kind == "inpaint" and bounds is None:
        raise ValueError("Inpaint needs a selection: select the area to repaint first.")
    region = job_region(kind, canvas, bounds, settings.padding, settings.grow)
    image = None
    if kind != "txt2img":
        image = Frame(region.width, region.height, fmt, doc.read_pixels(region))
    mask = doc.read_selection(region) if bounds is not None else None
    return PreparedJob(kind, region, settings.params(kind), image, mask)


def layer_name(prompt: str, seed: int, limit: int = 60) -> str:
    text = " ".join(prompt.split()) or "(no prompt)"
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{text} [seed {seed}]"


class Session:
    """One host's connection to the daemon and its current job.

    Non-blocking: the host calls :meth:`poll` from its event loop (a socket notifier or a
    timer) and :meth:`deliver` once a job is done. A failed or cancelled job writes nothing.
    """

    keepalive_connected = 3.0     # seconds between hello probes while connected
    keepalive_disconnected = 1.0  # ... and while not, so a daemon that starts is seen at once
    hello_timeout = 5.0

    def __init__(self, endpoint: str | None = None,
                 client_factory: Callable[..., Client] = Client, **client_options: Any) -> None:
        """``client_options`` go to the client: ``server_key``/``client_key`` for a remote
        daemon (CurveZMQ), ``client_id`` to stay the same client across restarts."""
        self._factory = client_factory
        self._options = client_options
        self.client = client_factory(endpoint, **client_options)
        self.info: dict[str, Any] | None = None     # the last hello, None while disconnected
        self.job: Job | None = None
        self.last_error: str | None = None
        self._probe: str | None = None               # request id of the hello in flight
        self._probe_sent = 0.0
        self._probe_next = 0.0

    @property
    def endpoint(self) -> str:
        return self.client.endpoint

    @property
    def connected(self) -> bool:
        return self.info is not None

    def reconnect(self, endpoint: str | None = None) -> None:
        """A fresh socket (after the endpoint changed); jobs in flight are forgotten."""
        self.client.close()
        self.client = self._factory(endpoint or self.endpoint, **self._options)
        self.info, self.job = None, None
        self._probe, self._probe_next = None, 0.0

    def check(self, timeout: float = 1.0) -> bool:
        """Say hello; updates ``info`` and ``last_error``. Cheap enough for a 2 s timer."""
        try:
            self.info = self.client.hello(timeout=timeout)
            self.last_error = None
        except DaemonError as exc:
            self.info = None
            self.last_error = exc.message
        return self.connected

    def _set_state(self, info: dict[str, Any] | None, error: str | None) -> bool:
        changed = info != self.info or error != self.last_error
        self.info, self.last_error = info, error
        return changed

    def keepalive(self, now: float) -> bool:
        """The non-blocking twin of :meth:`check`, for a UI thread: collect the answer to the
        last ``hello`` probe, time it out, or send the next one. Call it often (with
        ``poll``); returns True when the connection state, the hello or the error changed."""
        client = self.client
        changed = False
        if self._probe is not None:
            reply = client.take_reply(self._probe)
            if reply is not None:
                self._probe = None
                header = reply[0]
                if header.get("event") == "error":
                    changed |= self._set_state(None, header.get("message", "refused"))
                else:  # without the request id, so an unchanged daemon reads unchanged
                    changed |= self._set_state({k: v for k, v in header.items() if k != "job"},
                                               None)
            elif now - self._probe_sent > self.hello_timeout:
                client.forget_request(self._probe)
                self._probe = None
                if self.job is None or self.job.finished:  # a busy daemon may answer late
                    changed |= self._set_state(None, f"the daemon at {client.endpoint} did not "
                                                     f"answer within {self.hello_timeout:g} s")
        if self._probe is None and now >= self._probe_next:
            self._probe_next = now + (self.keepalive_connected if self.connected
                                      else self.keepalive_disconnected)
            try:
                self._probe = client.send_request("hello")
                self._probe_sent = now
            except DaemonError as exc:
                changed |= self._set_state(None, exc.message)
                if self.job is not None and not self.job.finished:
                    self.job.fail(ErrorCode.DISCONNECTED,
                                  f"the connection to the daemon was lost: {exc.message}")
                    changed = True
        return changed

    def models(self) -> list[str]:
        return list(self.info.get("models", [])) if self.info else []

    def submit(self, doc: Document, settings: GenerationSettings,
               send_timeout: float = 2.0) -> Job:
        """Read the document and send the job; raises ValueError / UnsupportedDocument /
        DaemonError (not reachable) with a message for the user. ``send_timeout`` 0 never
        waits for a connection (for UI threads)."""
        if self.job is not None and not self.job.finished:
            raise ValueError("A job is already running; cancel it first.")
        prepared = prepare(doc, settings)
        region = prepared.region
        self.job = self.client.submit(prepared.kind, prepared.params, image=prepared.image,
                                      mask=prepared.mask, offset=(region.x, region.y),
                                      size=(region.width, region.height),
                                      result_format=prepared.image.format if prepared.image
                                      else doc.pixel_format(), preview=True,
                                      send_timeout=send_timeout)
        self.job.info["prompt"] = settings.prompt
        return self.job

    def poll(self, timeout_ms: int = 0) -> Job | None:
        """Read what arrived; returns the current job if it changed."""
        changed = self.client.pump(timeout_ms)
        return self.job if self.job is not None and self.job in changed else None

    def cancel(self) -> None:
        if self.job is not None and not self.job.finished:
            try:
                self.client.cancel(self.job)
            except DaemonError as exc:
                self.job.fail(ErrorCode.UNREACHABLE, exc.message)

    def deliver(self, doc: Document) -> list[str]:
        """Put a finished job's patches into the document as new layers; returns their names.
        Does nothing for a failed or cancelled job."""
        job = self.job
        if job is None or job.state is not JobState.DONE or not job.patches:
            return []
        prompt = job.info.get("prompt", "")
        names = [layer_name(prompt, p.seed) for p in job.patches]
        doc.add_results(job.patches, names)
        self.client.jobs.pop(job.id, None)
        return names

    def close(self) -> None:
        self.client.close()

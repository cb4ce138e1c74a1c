"""What a host plugin does between "Generate" and "new layers", with the host left out.

A host implements :class:`Document` (a handful of reads and one write on its own API);
everything else — which kind of job, which region to read, the request, the job's life,
naming the result layers — lives here, where it is tested without a host.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import controls, hosts, protocol
from .client import Client, DaemonError, Frame, Job, JobState, Patch
from .expand import Expansion
from .hosts import default_endpoint
from .params import BY_NAME, PARAMS
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

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> Any:
        """New layers above the active layer; in a new layer group named ``group`` when
        there are several (``group`` is None for one)."""

    def image_rect(self) -> Rect:
        """The whole image (Expand grows it; ``canvas`` may be just the layer's part)."""

    def expand_canvas(self, expansion: Expansion) -> None:
        """Grow the canvas by ``expansion`` (the host's own resize, which the user can undo);
        the layers keep their pixels where they were in the picture."""

    def open_image(self, width: int, height: int, patches: list[Patch], names: list[str],
                   group: str | None, title: str) -> Any:
        """A new image (document) of ``width`` × ``height`` in the source layer's colour
        space, holding the patches as layers (as add_results does), shown to the user where
        the host has a window. This document is not touched."""

    def layer_key(self) -> str:
        """The identity of the layer jobs read from (as ``read_layer`` takes it)."""

    def read_layer(self, key: str, rect: Rect) -> Frame:
        """Another layer's pixels in ``rect`` (a control layer's drawing), in its own wire
        format; ValueError when the layer is gone or cannot be read."""


@dataclass
class ControlLayer:
    """One control the artist set up: the layer its drawing is on, and how it steers.
    The layer is never the one edited; its pixels go as a ``control`` frame."""

    layer: str                      # the host's key of the layer (Document.read_layer)
    type: str = "scribble"
    model: str | None = None        # None: the daemon picks one for the type and model
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocess: str | None = None   # None: the type's usual one
    name: str = ""                  # the layer's name, for messages

    def item(self) -> dict[str, Any]:
        """The wire item, checked (ValueError naming what is wrong)."""
        return controls.check_item({"type": self.type, "model": self.model or None,
                                    "strength": self.strength, "start": self.start,
                                    "end": self.end, "preprocess": self.preprocess or None},
                                   f"control '{self.name or self.layer}'")


class GenerationSettings:
    """Everything the user chooses in the docker or dialog; persisted by the host.

    One attribute per row of :data:`params.PARAMS` (None = the daemon's or model's default,
    where the row allows it) plus ``mode`` ("auto" picks inpaint with a selection, img2img
    without)."""

    def __init__(self, mode: str = "auto", **values: Any) -> None:
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "values", {p.name: p.start for p in PARAMS})
        for name, value in values.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in BY_NAME:
            self.values[name] = BY_NAME[name].coerce(value)
        elif name == "mode":
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"no setting {name!r}")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, GenerationSettings) and self.mode == other.mode
                and self.values == other.values)

    def __repr__(self) -> str:
        return f"GenerationSettings(mode={self.mode!r}, {self.values!r})"

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, **self.values})

    @classmethod
    def from_json(cls, text: str | None) -> GenerationSettings:
        """Tolerant: unknown keys and values of the wrong type keep their defaults, so an
        old or hand-edited settings file never stops the plugin from loading."""
        out = cls()
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return out
        if not isinstance(data, dict):
            return out
        for name in BY_NAME:
            if name in data:
                try:
                    setattr(out, name, data[name])
                except ValueError:
                    pass
        if data.get("mode") in MODES:
            out.mode = data["mode"]
        return out

    def kind(self, has_selection: bool) -> str:
        if self.mode != "auto":
            return self.mode
        return "inpaint" if has_selection else "img2img"

    def params(self, kind: str) -> dict[str, Any]:
        """The submit's ``params`` for ``kind``: the rows the kind uses, with a value."""
        wire = {p.name: p.wire_value(self.values[p.name]) for p in PARAMS if kind in p.kinds}
        return {name: value for name, value in wire.items() if value is not None}


@dataclass
class PreparedJob:
    kind: str
    region: Rect
    params: dict[str, Any]
    image: Frame | None
    mask: Frame | None
    scale: int | None = None    # an upscale's factor
    controls: list[Frame] = field(default_factory=list)   # one per params["controls"]



def prepare(doc: Document, settings: GenerationSettings,
            area: Callable[[], Rect] | None = None,
            control_layers: Sequence[ControlLayer] = ()) -> PreparedJob:
    """Read exactly the region the job needs from the document; raise ValueError or
    UnsupportedDocument with a message for the user when nothing can be sent. ``area``
    gives the region when nothing is selected (default: the whole layer). Each control
    layer's pixels in the same region go along as a control frame."""
    items = [c.item() for c in control_layers]
    active = doc.layer_key() if control_layers else None
    for c in control_layers:
        if c.layer == active:
            raise ValueError(f"'{c.name or 'This layer'}' is a control layer: its drawing "
                             "steers the job. Select the layer to paint on.")
    fmt = doc.pixel_format()
    canvas = doc.canvas()
    bounds = doc.selection_bounds()
    if bounds is not None and bounds.is_empty:
        bounds = None
    kind = settings.kind(bounds is not None)
    if kind == "inpaint" and bounds is None:
        raise ValueError("Inpaint needs a selection: select the area to repaint first.")
    if bounds is None and area is not None:
        region = area()
    else:
        region = job_region(kind, canvas, bounds, settings.padding, settings.grow)
    image = None
    if kind != "txt2img":
        image = Frame(region.width, region.height, fmt, doc.read_pixels(region))
    mask = doc.read_selection(region) if bounds is not None else None
    params = settings.params(kind)
    if items:
        params["controls"] = items
    frames = [doc.read_layer(c.layer, region) for c in control_layers]
    return PreparedJob(kind, region, params, image, mask, controls=frames)


def control_map_name(control: ControlLayer) -> str:
    """The layer "Preprocess to layer" makes."""
    return f"Control map: {control.name or 'layer'} ({control.preprocess or control.type})"


def prepare_expand(doc: Document, settings: GenerationSettings,
                   expansion: Expansion) -> PreparedJob:
    """An Expand job (plugin.expand): the new strips and the picture beside them, the new
    area transparent and selected, in the grown canvas's coordinates. Nothing is resized."""
    fmt = doc.pixel_format()
    canvas = doc.image_rect()
    region = expansion.region(canvas, settings.padding)
    image = expansion.image(region, canvas, fmt, doc.read_pixels)
    return PreparedJob("inpaint", region, settings.params("inpaint"), image,
                       expansion.mask(region, canvas))


def prepare_upscale(doc: Document, settings: GenerationSettings, scale: int) -> PreparedJob:
    """An upscale job: the selection's bounding box, or the whole layer, to be enlarged
    ``scale`` times into a new image (the selection's shape does not matter)."""
    if scale not in protocol.UPSCALE_FACTORS:
        raise ValueError(f"Upscale by {', '.join(map(str, protocol.UPSCALE_FACTORS))} only.")
    fmt = doc.pixel_format()
    bounds = doc.selection_bounds()
    region = bounds if bounds is not None and not bounds.is_empty else doc.canvas()
    image = Frame(region.width, region.height, fmt, doc.read_pixels(region))
    return PreparedJob("upscale", region, settings.params("upscale"), image, None, scale)


def upscaled_title(prompt: str, scale: int) -> str:
    """The new image's title, and its layer's name before the seed."""
    text = " ".join(prompt.split())
    return f"Upscaled ×{scale}" + (f": {_short(text, 40)}" if text else "")


def job_progress(job: Job) -> tuple[float | None, str]:
    """A job on its way as the fraction done (None while it cannot be known: queued, or
    loading its model) and a few words, the same in every host."""
    stage = job.stage or ("queued" if job.state is JobState.QUEUED else None)
    text = hosts.stage_text(stage, job.step, job.total, job.model, job.position, job.retries)
    known = stage not in ("queued", "loading", "retrying") and job.total
    return (job.step / job.total if known else None), text


def _short(prompt: str, limit: int = 60) -> str:
    text = " ".join(prompt.split()) or "(no prompt)"
    return text[: limit - 1] + "…" if len(text) > limit else text


def layer_name(prompt: str, seed: int) -> str:
    """A result layer's name: the prompt (shortened) and the seed to reuse."""
    return f"{_short(prompt)} [seed {seed}]"


def group_name(prompt: str, count: int) -> str:
    """The name of the layer group that holds a batch's variations."""
    return f"{_short(prompt)} [{count} variations]"


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
        daemon (CurveZMQ), ``client_id`` to stay the same client across restarts. Keys that
        cannot be loaded leave a session that sends nothing and says why (``key_error``);
        a malformed endpoint raises ValueError."""
        self._factory = client_factory
        self._options = client_options
        self.info: dict[str, Any] | None = None     # the last hello, None while disconnected
        self.job: Job | None = None
        self._endpoint = endpoint or default_endpoint()
        self._client, self.key_error = self._make(self._endpoint, self._options)
        self.last_error: str | None = self.key_error
        self._probe: str | None = None               # request id of the hello in flight
        self._probe_sent = 0.0
        self._probe_next = 0.0

    def _make(self, endpoint: str, options: dict[str, Any]) -> tuple[Client | None, str | None]:
        """A client, or None and the key problem; a malformed endpoint raises ValueError."""
        try:
            return self._factory(endpoint, **options), None
        except DaemonError as exc:   # unusable keys
            return None, hosts.keys_unusable(exc.message)

    @property
    def client(self) -> Client:
        """The connection; DaemonError with the key problem when the keys were unusable."""
        if self._client is None:
            raise DaemonError(ErrorCode.BAD_FIELD, self.key_error or "no connection")
        return self._client

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def connected(self) -> bool:
        return self.info is not None

    @property
    def handshaken(self) -> bool:
        """The connection itself is up (ZeroMQ's handshake done), answered hello or not."""
        return self._client is not None and self._client.connected

    @property
    def auth_refused(self) -> bool:
        """The daemon completed no handshake because of this client's keys (or their lack)."""
        return self._client is not None and self._client.auth_refused

    @property
    def client_id(self) -> str:
        return self._client.client_id if self._client is not None else ""

    @property
    def uses_keys(self) -> bool:
        return bool(self._options.get("server_key"))

    def filenos(self) -> list[int]:
        """File descriptors a host's event loop watches (none while the keys are unusable)."""
        return self._client.filenos() if self._client is not None else []

    def refusal(self, where: str, refused: bool = False) -> str | None:
        """Why the daemon turns this client away, when it is the keys; ``where`` says where
        this host takes them (e.g. "Server key and Client key file under Connection").
        ``refused``: the host saw the refusal itself (ZeroMQ does not always report it)."""
        if self.key_error:
            return self.key_error
        if self.auth_refused or refused:
            failure = self._client.handshake_failure if self._client is not None else None
            return hosts.handshake_failed(self.endpoint, where, failure, self.uses_keys)
        return None

    def reconnect(self, endpoint: str | None = None, **client_options: Any) -> None:
        """A fresh socket (after the endpoint or the keys changed); jobs in flight are
        forgotten. ``client_options`` replace the ones given so far. A malformed endpoint
        raises ValueError and leaves the session as it was."""
        endpoint = endpoint or self.endpoint
        options = {**self._options, **client_options}
        client, key_error = self._make(endpoint, options)
        if self._client is not None:
            self._client.close()
        self._endpoint, self._options, self._client = endpoint, options, client
        self.info, self.job, self.key_error, self.last_error = None, None, key_error, key_error
        self._probe, self._probe_next = None, 0.0

    def check(self, timeout: float = 1.0) -> bool:
        """Say hello; updates ``info`` and ``last_error``. Cheap enough for a 2 s timer."""
        if self._client is None:
            return False
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
        client = self._client
        if client is None:
            return False
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
               send_timeout: float = 2.0, expansion: Expansion | None = None,
               upscale: int = 0, control_layers: Sequence[ControlLayer] = ()) -> Job:
        """Read the document and send the job; raises ValueError / UnsupportedDocument /
        DaemonError (not reachable) with a message for the user. ``send_timeout`` 0 never
        waits for a connection (for UI threads). With ``expansion`` it is an Expand job:
        the canvas grows only when its result is delivered; with ``upscale`` (2, 3, 4) an
        Upscale job, whose result opens as a new image. ``control_layers`` steer a
        generation (Expand and Upscale take none)."""
        if self.job is not None and not self.job.finished:
            raise ValueError("A job is already running; cancel it first.")
        if expansion is not None:
            prepared = prepare_expand(doc, settings, expansion)
        elif upscale:
            prepared = prepare_upscale(doc, settings, upscale)
        else:
            prepared = prepare(doc, settings, control_layers=control_layers)
        region = prepared.region
        self.job = self.client.submit(prepared.kind, prepared.params, image=prepared.image,
                                      mask=prepared.mask, offset=(region.x, region.y),
                                      size=(region.width, region.height),
                                      result_format=prepared.image.format if prepared.image
                                      else doc.pixel_format(), preview=True,
                                      send_timeout=send_timeout, scale=prepared.scale,
                                      controls=prepared.controls)
        self.job.info["prompt"] = settings.prompt
        if expansion is not None:
            self.job.info["expansion"] = expansion
        if prepared.scale is not None:
            self.job.info["upscaled"] = (region.width * prepared.scale,
                                         region.height * prepared.scale, prepared.scale)
        return self.job

    def preprocess(self, doc: Document, control: ControlLayer, timeout: float = 60.0
                   ) -> str:
        """"Preprocess to layer": the control layer's map (what the daemon would steer
        with) as a new layer above the active one; the control layer is not touched.
        Returns the new layer's name; DaemonError / ValueError with a message."""
        item = control.item()
        rect = doc.canvas()
        frame = doc.read_layer(control.layer, rect)
        fmt = doc.pixel_format()
        out = self.client.preprocess(frame, controls.preprocessor(item), item["type"],
                                     result_format=fmt, timeout=timeout)
        name = control_map_name(control)
        doc.add_results([Patch(rect.x, rect.y, out.width, out.height, out.format, 0,
                               out.data)], [name], None)
        return name

    def poll(self, timeout_ms: int = 0) -> Job | None:
        """Read what arrived; returns the current job if it changed."""
        if self._client is None:
            return None
        changed = self._client.pump(timeout_ms)
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
        upscaled = job.info.get("upscaled")
        # a new image's layers are named for what it is, not for the prompt alone
        label = upscaled_title(prompt, upscaled[2]) if upscaled is not None else prompt
        names = [layer_name(label, p.seed) for p in job.patches]
        group = group_name(label, len(names)) if len(names) > 1 else None
        if upscaled is not None:
            doc.open_image(upscaled[0], upscaled[1], job.patches, names, group, label)
        else:
            expansion = job.info.get("expansion")
            if expansion is not None:
                doc.expand_canvas(expansion)
            doc.add_results(job.patches, names, group)
        self.discard(job)
        return names

    def discard(self, job: Job) -> None:
        """Forget a job the host is done with (delivered, failed or abandoned)."""
        if self._client is not None:
            self._client.jobs.pop(job.id, None)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

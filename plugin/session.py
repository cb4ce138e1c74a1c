"""What a host plugin does between "Generate" and "new layers", with the host left out.

A host implements :class:`~.document.Document`; everything else — which kind of job, which
region to read (:mod:`.generation`), the job's life (here), naming the result layers
(:mod:`.naming`) — lives in plugin/, where it is tested without a host. The names hosts
import are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import controls, shared
from .client import Client, DaemonError
from .document import ControlLayer, Document, UnsupportedDocument
from .errors import ErrorCode
from .expand import Expansion
from .generation import (
    MODES,
    GenerationSettings,
    PreparedJob,
    prepare,
    prepare_expand,
    prepare_upscale,
)
from .job import Job, JobState, Patch
from .naming import control_map_name, group_name, job_progress, layer_name, upscaled_title
from .shared import default_endpoint

__all__ = ["MODES", "ControlLayer", "Document", "GenerationSettings", "PreparedJob", "Session",
           "UnsupportedDocument", "control_map_name", "group_name", "job_progress",
           "layer_name", "prepare", "prepare_expand", "prepare_upscale", "upscaled_title"]


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
            return None, shared.keys_unusable(exc.message)

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
            return shared.handshake_failed(self.endpoint, where, failure, self.uses_keys)
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
        fmt = prepared.image.format if prepared.image else doc.pixel_format()
        self.job = self.client.submit(prepared.request(fmt, preview=True),
                                      send_timeout=send_timeout)
        self.job.info["prompt"] = settings.prompt
        if expansion is not None:
            self.job.info["expansion"] = expansion
        if prepared.scale is not None:
            region = prepared.region
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

"""What a host's docker or panel decides, with the widgets left out.

The Krita docker (and any host with a long-lived panel) binds widgets to a
:class:`Controller`: it forwards the user's actions (generate, cancel, a new endpoint or new
keys, "Start local daemon") and, after each event-loop wake-up, shows the controller's plain
data (status line, message, progress, enabled flags, results). Everything here is Qt- and
host-free, so it is tested in plain pytest against a real daemon.

The host supplies three things: a settings store (two callables), the document it reads and
writes (:class:`Target`, a :class:`~.session.Document` that also knows its result layers)
and, optionally, how to start a local daemon.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import launcher, offers, shared
from .client import DaemonError, Job, JobState
from .expand import Expansion
from .limits import Limits
from .live import Live, LiveTarget
from .localdaemon import LocalDaemon
from .protocol import ProtocolError
from .session import ControlLayer, Document, GenerationSettings, Session, UnsupportedDocument
from .session import job_progress as _session_progress

#: the mode selector (not a parameter row): value -> label
MODE_LABELS = {"auto": "Auto (inpaint a selection, else image-to-image)",
               "txt2img": "Text to image", "img2img": "Image to image", "inpaint": "Inpaint"}
#: where the docker takes the keys, for the key-problem texts
KEYS_WHERE = "Server key and Client key file under Connection"
LOST = "connection lost: waiting for the daemon…"
CANCELLED = "Cancelled: the image was not changed."

Read = Callable[[str], str]
Write = Callable[[str, str], None]


class Target(Document, Protocol):
    """The host's document adapter for one job: where it reads and where results go."""

    node: Any                # the layer read (an opaque handle)
    added: list[Any]         # the layers the last add_results made
    group: Any               # ... and their group, for a batch (else None)

    def key(self, layer: Any) -> Hashable:
        """A layer's stable identity (host layer objects are wrappers made afresh)."""

    def toggle(self, layer: Any) -> None:
        """Show a hidden layer, hide a shown one; raises when the layer is gone."""


@dataclass(frozen=True)
class Line:
    """A line of text for the user and whether it reports a problem (shown in red)."""

    text: str = ""
    error: bool = False


@dataclass(frozen=True)
class Result:
    """One result layer of this session, for the results list and show/hide."""

    name: str
    layer: Any
    seed: int
    job: str
    target: Target


def client_id(read: Read, write: Write, index: int = 0) -> str:
    """This host's identity at the daemon, made once and stored, so that after a restart
    the daemon still hands over results (``fetch``) of jobs that finished meanwhile. A
    second window gets its own id: the daemon routes to its newest connection only."""
    base = read("client_id")
    if not base:
        base = uuid.uuid4().hex
        write("client_id", base)
    return base if index == 0 else f"{base}-{index + 1}"


def job_progress(job: Job) -> tuple[float, str]:
    """The session's words for a job on its way, and the bar's fraction (0 while unknown);
    a job whose connection dropped says so."""
    if job.lost:
        return 0.0, LOST
    fraction, text = _session_progress(job)
    return fraction or 0.0, text


class Controller:
    """A panel's session, settings, job and results; the host binds widgets to it.

    Never blocks: the host calls :meth:`pump` whenever its socket notifiers fire and from a
    timer (a few times a second), then shows the properties."""

    def __init__(self, read: Read, write: Write, window_index: int = 0,
                 launch: Callable[[str], Any] = launcher.start_daemon,
                 daemon_log: Callable[[], Path] = launcher.log_path) -> None:
        """``read``/``write`` persist strings (kritarc in Krita); ``launch(endpoint)``
        starts a daemon process (something with ``poll()``, ``returncode`` and ``pid``)."""
        self._read, self._write = read, write
        self.local = LocalDaemon(launch, daemon_log)   # "Start local daemon"
        self.client_id = client_id(read, write, window_index)
        self.settings = GenerationSettings.from_json(read("settings") or None)
        self.message = Line()
        self.target: Target | None = None    # where the running job's result goes
        self.results: list[Result] = []
        self.last_seed: int | None = None
        self.generation = 0                  # counts new sockets: the host re-watches filenos
        self._source_of: dict[Hashable, Any] = {}   # result layer/group -> the layer read
        try:
            self.session = Session(read("endpoint") or shared.default_endpoint(), **self._options())
        except ValueError:   # a malformed endpoint in the store: start from the default
            self.session = Session(shared.default_endpoint(), **self._options())
        self.live = Live(self.session)
        #: set when the host should open its key fields; the host clears it once shown
        self.reveal_keys = bool(self.server_key or self.session.key_error)

    # ---------------------------------------------------------------- settings and keys

    @property
    def server_key(self) -> str:
        return self._read("server_key")

    @property
    def client_key(self) -> str:
        return self._read("client_key")

    def _options(self) -> dict[str, Any]:
        server_key = self.server_key
        return {"client_id": self.client_id, "server_key": server_key or None,
                "client_key": (self.client_key or None) if server_key else None}

    def save_settings(self, settings: GenerationSettings) -> None:
        """Keep what the widgets show, for the next session."""
        if settings != self.settings or not self._read("settings"):
            self.settings = settings
            self._write("settings", settings.to_json())

    def set_endpoint(self, endpoint: str) -> str:
        """Connect to another daemon; returns the endpoint in use (the old one when the new
        one is malformed, which the message then explains)."""
        endpoint = endpoint.strip()
        if endpoint and endpoint != self.session.endpoint:
            self._reconnect(endpoint)
        return self.session.endpoint

    def set_keys(self, server_key: str, client_key: str) -> None:
        """New keys from the Connection fields: stored, and a fresh connection with them."""
        server_key, client_key = server_key.strip(), client_key.strip()
        if (server_key, client_key) == (self.server_key, self.client_key) \
                and self.session.key_error is None:
            return
        self._write("server_key", server_key)
        self._write("client_key", client_key)
        self.message = Line()
        self._reconnect(self.session.endpoint)

    def _reconnect(self, endpoint: str) -> None:
        """Drop the running job (its results would go nowhere) and connect anew."""
        if self.running:
            self.session.cancel()
        self.live.stop()
        try:
            self.session.reconnect(endpoint, **self._options())
        except ValueError as exc:    # a malformed endpoint: the session stays as it was
            self.message = Line(str(exc), error=True)
            endpoint = self.session.endpoint
        else:
            if self.session.key_error:
                self.reveal_keys = True
                self.message = Line(self.session.key_error, error=True)
        self.target = None
        self.generation += 1
        self._write("endpoint", endpoint)

    # ---------------------------------------------------------------- what the host shows

    @property
    def refusal(self) -> str | None:
        """Why the daemon turns this client away, when it is the keys."""
        return self.session.refusal(KEYS_WHERE)

    @property
    def status(self) -> Line:
        """The connection in one line (an error while not connected)."""
        s = self.session
        if s.connected:
            info = s.info or {}
            secure = " (CurveZMQ)" if s.uses_keys else ""
            cluster = info.get("cluster")
            where = (f"{info.get('device', '?')} ({info.get('dtype', '?')})" if not cluster
                     else shared.cluster_text(cluster))
            return Line(f"Connected to {s.endpoint}{secure} — {where}, default model "
                        f"{info.get('default_model') or 'none'}")
        why = self.refusal or s.last_error or f"connecting to {s.endpoint}…"
        return Line(f"Not connected: {why}", error=True)

    @property
    def can_start_daemon(self) -> bool:
        """Whether "Start local daemon" makes sense: nothing answers on a local endpoint."""
        s = self.session
        return not s.connected and not self.refusal and shared.is_loopback(s.endpoint)

    @property
    def starting_daemon(self) -> bool:
        return self.local.starting

    @property
    def daemon_proc(self) -> Any:
        """The process "Start local daemon" began (None before)."""
        return self.local.proc

    @property
    def running(self) -> bool:
        """A job is on its way (Generate off, Cancel on)."""
        return self.target is not None

    @property
    def progress(self) -> tuple[float, str]:
        """The running job as a fraction done and a few words ((0, "") when idle)."""
        job = self.session.job
        return job_progress(job) if self.running and job is not None else (0.0, "")

    @property
    def preview(self) -> Any:
        """The running job's latest preview frame, or None."""
        job = self.session.job
        return job.preview if self.running and job is not None else None

    @property
    def hello(self) -> dict[str, Any]:
        """The daemon's hello ({} while not connected): what its lists offer
        (:mod:`.offers`)."""
        return self.session.info or {}

    @property
    def limits(self) -> Limits | None:
        """The daemon's announced limits (the widgets' ranges), None while disconnected."""
        return offers.limits(self.session.info)

    def daemon_choices(self, name: str) -> list[tuple[str, str]]:
        """(value, label) for a list the daemon fills (``name``: a parameter row with
        ``from_daemon``, or "controlnet"), with the stored choice kept even when this daemon
        does not offer it (see :func:`.offers.choices`)."""
        return offers.choices(self.session.info, name, self.settings.values.get(name))

    def filenos(self) -> list[int]:
        return self.session.filenos()

    def info(self, text: str) -> None:
        self.message = Line(text)

    def error(self, text: str) -> None:
        self.message = Line(text, error=True)

    # ---------------------------------------------------------------- the event loop

    def pump(self, now: float | None = None) -> None:
        """Read what arrived, probe the daemon, follow the job and the daemon start."""
        now = time.monotonic() if now is None else now
        for _ in range(2):           # the probe's reply may already be there the second time
            self.session.poll()
            self.session.keepalive(now)
        job = self.session.job
        if job is not None and self.running:
            self._follow(job)
        if self.local.starting:
            text, error = self.local.follow(now, self.session.connected)
            self.message = Line(text, error)

    def _follow(self, job: Job) -> None:
        if job.lost or not job.finished:
            # a dropped connection: the client asks for the job again once the daemon is
            # back (a daemon that kept running still has it). Until then: wait, or Cancel
            return
        target, self.target = self.target, None
        assert target is not None
        if job.state is JobState.DONE:
            try:
                names = self.session.deliver(target)
            except Exception as exc:  # a closed document, a layer gone: say so, add nothing
                self.error(f"Could not add the result: {exc}")
            else:
                self._record(job, target, names)
        elif job.state is JobState.CANCELLED and job.error_message:   # not the user's doing
            self.error(f"Cancelled: {job.error_message}. The image was not changed.")
        elif job.state is JobState.CANCELLED:
            self.info(CANCELLED)
        else:
            self.error(f"Generation failed: {job.error_message} [{job.error_code}]")
        self.session.discard(job)

    def _record(self, job: Job, target: Target, names: list[str]) -> None:
        for layer in [*target.added, target.group]:
            if layer is not None:
                self._source_of[target.key(layer)] = target.node
        for layer, name, patch in zip(target.added, names, job.patches, strict=True):
            self.results.append(Result(name, layer, patch.seed, job.id, target))
        self.last_seed = job.patches[0].seed
        secs = job.info.get("seconds")
        what = f"{len(names)} layer{'s' if len(names) > 1 else ''}"
        if job.kind == "upscale":
            p = job.patches[0]
            what = f"a new {p.width}×{p.height} image with {what}"
        self.info(f"Added {what} (seed {self.last_seed}" +
                  (f", {secs:.1f} s)" if secs else ")"))

    # ---------------------------------------------------------------- the user's actions

    def source_of(self, key: Hashable) -> Any:
        """The layer a result layer (or its group) was made from, or None: generating
        while a result is active reads from its source again (hosts activate new layers)."""
        return self._source_of.get(key)

    def generate(self, settings: GenerationSettings,
                 open_target: Callable[[], Target | None],
                 expansion: Expansion | None = None, upscale: int = 0,
                 control_layers: Sequence[ControlLayer] = ()) -> bool:
        """Save the settings and send the job; ``open_target`` makes the document adapter
        (None: no document open; ValueError: not a layer that can be read). Returns whether
        a job was sent; otherwise the message says why. ``expansion``: an Expand job;
        ``upscale``: an Upscale job by that factor (into a new image); ``control_layers``
        steer a generation."""
        self.save_settings(settings)
        if self.running:
            self.error("A job is already running: cancel it first.")
            return False
        refused = self.refusal
        if not self.session.connected and refused:
            self.reveal_keys = True
            self.error(f"Not connected: {refused}")
            return False
        if not self.session.connected:
            hint = "Press “Start local daemon” or run" if self.can_start_daemon else "Run"
            self.error(f"No paintbridge daemon answers at {self.session.endpoint}. "
                       f"{hint} `paintbridge serve`.")
            return False
        done = self._on_target(open_target, lambda target: self.session.submit(
            target, settings, send_timeout=0, expansion=expansion, upscale=upscale,
            control_layers=control_layers))
        if done is None:
            return False
        self.target = done[0]
        self.info("")
        return True

    def _on_target(self, open_target: Callable[[], Target | None],
                   act: Callable[[Target], Any]) -> tuple[Target, Any] | None:
        """(the document ``open_target`` makes, what ``act`` returns on it); None with the
        message set when no document is open or ``act`` fails in a way the user can fix."""
        try:
            target = open_target()
            if target is None:
                self.error("Open an image first.")
                return None
            return target, act(target)
        except (ValueError, UnsupportedDocument, ProtocolError) as exc:
            self.error(str(exc))
        except DaemonError as exc:
            self.error(exc.message)
        return None

    def preprocess(self, control: ControlLayer,
                   open_target: Callable[[], Target | None]) -> bool:
        """"Preprocess to layer" for one control; the message says what happened."""
        if not self.session.connected:
            self.error(f"No paintbridge daemon answers at {self.session.endpoint}.")
            return False
        done = self._on_target(open_target,
                               lambda target: self.session.preprocess(target, control))
        if done is None:
            return False
        self.info(f"Added the layer '{done[1]}'.")
        return True

    def cancel(self) -> None:
        if not self.running:
            return
        job = self.session.job
        if job is not None and job.lost:   # nobody to tell: drop it
            self.target = None
            self.session.discard(job)
            self.info(CANCELLED)
            return
        self.session.cancel()
        self.info("Cancelling…")

    # ---------------------------------------------------------------- live painting

    def live_start(self, settings: GenerationSettings,
                   open_target: Callable[[], LiveTarget | None]) -> bool:
        """Switch Live on for the active layer; False with the reason in the message."""
        self.save_settings(settings)
        if not self.session.connected:
            self.error(f"Live needs a daemon: none answers at {self.session.endpoint}.")
            return False
        if not offers.has_feature(self.session.info, "live"):
            self.error("This daemon has no live mode: update paintbridge where it runs.")
            return False
        try:
            target = open_target()
        except ValueError as exc:
            self.error(str(exc))
            return False
        if target is None:
            self.error("Open an image first.")
            return False
        self.live.start(target)
        self.info("Live: paint, and the preview layer follows.")
        return True

    def live_stop(self) -> None:
        """Live off: the preview layer goes, the document is as it was (plus Applied)."""
        if self.live.on:
            try:
                self.live.stop()
            except Exception:   # noqa: BLE001 - its document was closed: nothing left
                pass
            self.info("Live is off.")

    def live_tick(self, settings: GenerationSettings, now: float | None = None,
                  control_layers: Sequence[ControlLayer] = ()) -> None:
        """From the host's timer while Live is on: never raises, stops Live on trouble
        that a new stroke cannot fix (a closed document, an unsupported layer)."""
        if not self.live.on:
            return
        now = time.monotonic() if now is None else now
        if not self.session.connected:
            return   # the keepalive reports it; Live resumes when the daemon is back
        try:
            self.live.tick(settings, now, control_layers)
        except (ValueError, UnsupportedDocument, ProtocolError) as exc:
            self.error(str(exc))
        except DaemonError as exc:
            self.error(f"Live: {exc.message}")
        except Exception as exc:   # the layer or document went away
            self.live_stop()
            self.error(f"Live stopped: {exc}")
        else:
            if self.live.error:
                self.error(self.live.error)
            elif self.message.error:
                self.info("")

    def live_apply(self) -> None:
        """Keep the current live result as an ordinary layer."""
        try:
            names = self.live.apply()
        except Exception as exc:   # noqa: BLE001 - a closed document: say so, add nothing
            self.error(f"Could not add the result: {exc}")
            return
        if names:
            self.info(f"Applied: {names[0]}")
        else:
            self.info("No live result yet to apply.")

    def toggle(self, index: int) -> None:
        """Show or hide a result layer."""
        result = self.results[index]
        try:
            result.target.toggle(result.layer)
        except Exception:   # deleted by the user, or its document closed
            self.error("That layer no longer exists.")

    def toggle_last(self) -> None:
        if self.results:
            self.toggle(len(self.results) - 1)

    def reuse_last_seed(self) -> int | None:
        """The last result's seed (for the seed widget), or None with a message."""
        if self.last_seed is None:
            self.info("No result yet in this session.")
        return self.last_seed

    def start_daemon(self) -> None:
        """Run ``paintbridge serve`` on the endpoint in the background."""
        text, error = self.local.start(self.session.endpoint, time.monotonic())
        self.message = Line(text, error)

    def close(self) -> None:
        self.session.close()

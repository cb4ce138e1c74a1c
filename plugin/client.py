"""The client side of the wire protocol: one DEALER socket and the jobs it submitted.

Hosts drive it without blocking their UI: they watch ``filenos()`` (QSocketNotifiers in Krita)
or call ``pump(0)`` from a timer, and read job state from the :class:`Job` objects. The CLI
uses the blocking helpers ``request`` and ``wait``. Standard library + pyzmq only.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import protocol, shared
from .errors import ErrorCode, ProtocolError
from .frames import FrameSpec
from .job import Frame, Job, JobRequest, JobState, Patch
from .limits import Limits

__all__ = ["Client", "DaemonError", "Frame", "Job", "JobRequest", "JobState", "Patch"]

HEARTBEAT_MS = 1000
# a keyless client meeting a CURVE daemon often sees only NO_DETAIL, not AUTH
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


class DaemonError(Exception):
    """The daemon answered with an error, or could not be reached."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


_REPLIES = ("hello", "models", "status", "echo", "preprocess")
#: where a plain client takes its keys, for the words of a refused handshake
KEYS_WHERE = "the server key and the client key file"


class Client:
    """A connection to one daemon. Not thread-safe: use it from one thread."""

    def __init__(self, endpoint: str | None = None, context: zmq.Context | None = None,
                 limits: Limits | None = None, server_key: str | None = None,
                 client_key: str | os.PathLike | None = None, client_id: str | None = None,
                 heartbeat_ms: int = HEARTBEAT_MS) -> None:
        """``server_key`` (the daemon's public key, Z85) turns on CurveZMQ; ``client_key`` is
        then this client's secret key file from ``paintbridge keys client NAME``.
        ``client_id`` is this client's identity at the daemon: a host that stores it can
        fetch results of jobs that finished while it was gone (default: random)."""
        self.endpoint = endpoint or shared.default_endpoint()
        self.limits = limits or Limits()
        self._context = context or zmq.Context.instance()
        self.client_id = client_id or uuid.uuid4().hex
        self.connected = False
        #: why the last handshake failed: "refused" (the daemon turned this client's key
        #: down), "mismatch" (no common keys: wrong server key, or keys on one side only)
        self.handshake_failure: str | None = None
        self.uses_keys = False
        self.socket = self._context.socket(zmq.DEALER)
        self._monitor: zmq.Socket | None = None
        try:
            self._configure(server_key or os.environ.get(shared.SERVER_KEY_ENV) or None,
                            client_key or os.environ.get(shared.CLIENT_KEY_ENV) or None,
                            heartbeat_ms)
        except BaseException:
            self.close()  # no socket left behind by a bad key or endpoint
            raise
        self.jobs: dict[str, Job] = {}
        self._replies: dict[str, tuple[dict[str, Any], list[Any]]] = {}
        self._waiting: set[str] = set()  # ids of requests whose reply is awaited
        self._prefix = uuid.uuid4().hex[:8]
        self._counter = itertools.count(1)

    # ------------------------------------------------------------------ plumbing

    def _configure(self, server_key: str | None, client_key: str | os.PathLike | None,
                   heartbeat_ms: int) -> None:
        self.socket.setsockopt(zmq.LINGER, 0)
        if server_key:
            self._use_curve(server_key, client_key)
        # Refuse to queue messages while no daemon is connected: a send then fails at once
        # with a clear error instead of waiting for a daemon that may never come.
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.socket.setsockopt(zmq.RECONNECT_IVL, 200)
        self.socket.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.socket.setsockopt(zmq.ROUTING_ID, self.client_id.encode())
        # ZMQ heartbeats: a daemon that stops answering (frozen, cable pulled) is dropped
        # after three intervals, like one that died; the socket then reconnects by itself
        self.socket.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
        self.socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * heartbeat_ms)
        self.socket.setsockopt(zmq.HEARTBEAT_TTL, 6 * heartbeat_ms)
        self._monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _HANDSHAKE_FAILED)
        problem = shared.endpoint_problem(self.endpoint)
        if problem:
            raise ValueError(problem)
        try:
            self.socket.connect(self.endpoint)
        except zmq.ZMQError as exc:
            raise ValueError(f"'{self.endpoint}' is not a valid endpoint ({exc}); use e.g. "
                             f"{protocol.DEFAULT_ENDPOINT}") from None

    def _use_curve(self, server_key: str, client_key: str | os.PathLike | None) -> None:
        import zmq.auth

        if not client_key:
            raise DaemonError(ErrorCode.BAD_FIELD, "a server key needs a client key file too "
                                                   "(paintbridge keys client NAME)")
        if not os.path.isfile(client_key):
            raise DaemonError(ErrorCode.BAD_FIELD, f"client key {client_key}: no such file")
        try:
            public, secret = zmq.auth.load_certificate(os.fspath(client_key))
        except (OSError, ValueError) as exc:
            raise DaemonError(ErrorCode.BAD_FIELD, f"cannot read client key: {exc}") from None
        if secret is None:
            raise DaemonError(ErrorCode.BAD_FIELD, f"{client_key} holds no secret key")
        if os.path.isfile(server_key):
            try:
                server_key = zmq.auth.load_certificate(server_key)[0].decode()
            except (OSError, ValueError) as exc:
                raise DaemonError(ErrorCode.BAD_FIELD,
                                  f"cannot read server key: {exc}") from None
        elif len(server_key) != 40 and (os.sep in server_key or server_key.endswith(".key")):
            raise DaemonError(ErrorCode.BAD_FIELD, f"server key {server_key}: no such file")
        if len(server_key) != 40:
            raise DaemonError(ErrorCode.BAD_FIELD, "the server key must be 40 Z85 characters "
                                                   "(or the daemon's server.key file)")
        self.uses_keys = True
        try:
            self.socket.curve_serverkey = server_key.encode()
            self.socket.curve_publickey = public
            self.socket.curve_secretkey = secret
        except zmq.ZMQError as exc:
            raise DaemonError(ErrorCode.BAD_FIELD, f"the server key is not a valid Z85 key "
                                                   f"({exc})") from None

    @property
    def auth_refused(self) -> bool:
        return self.handshake_failure is not None

    def close(self) -> None:
        if self._monitor is not None:
            try:
                self.socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
        self.socket.close(0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def filenos(self) -> list[int]:
        """Every FD a host loop should watch: messages, and connection events (a dropped
        daemon). Edge-triggered: on any of them call ``pump`` until it returns nothing."""
        return [int(s.getsockopt(zmq.FD)) for s in (self.socket, self._monitor_socket())]

    def _monitor_socket(self) -> zmq.Socket:
        if self._monitor is None:
            raise DaemonError(ErrorCode.UNREACHABLE, "this client is closed")
        return self._monitor

    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def _send(self, header: Mapping[str, Any], frames: Sequence[Any] = (),
              timeout: float = 2.0) -> None:
        parts = [protocol.encode_header(header), *frames]
        if not self.socket.poll(int(timeout * 1000), zmq.POLLOUT):
            self.pump(0)  # notice a refused handshake
            if self.handshake_failure:
                raise DaemonError(ErrorCode.UNREACHABLE,
                                  shared.handshake_failed(self.endpoint, KEYS_WHERE,
                                                         self.handshake_failure,
                                                         self.uses_keys))
            raise DaemonError(ErrorCode.UNREACHABLE,
                              f"no paintbridge daemon answers at {self.endpoint}; "
                              "start one with `paintbridge serve`")
        self.socket.send_multipart(parts, copy=False, flags=zmq.NOBLOCK)

    def pump(self, timeout_ms: int = 0) -> list[Job]:
        """Read every waiting message and connection event (waiting up to ``timeout_ms``
        for the first); returns the jobs that changed."""
        changed: list[Job] = []
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        monitor = self._monitor_socket()
        poller.register(monitor, zmq.POLLIN)
        wait = timeout_ms
        while True:
            ready = dict(poller.poll(wait))
            if not ready:
                return changed
            wait = 0
            if monitor in ready:
                for job in self._connection_events():
                    if job not in changed:
                        changed.append(job)
            if self.socket in ready:
                while self.socket.poll(0, zmq.POLLIN):
                    updated = self._dispatch(self.socket.recv_multipart(copy=False))
                    if updated is not None and updated not in changed:
                        changed.append(updated)

    def _connection_events(self) -> list[Job]:
        """Fail jobs when the connection drops; ask about them again once it is back."""
        changed: list[Job] = []
        monitor = self._monitor_socket()
        while monitor.poll(0):
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = False
                for job in self.jobs.values():
                    if not job.finished:
                        job.fail(ErrorCode.DISCONNECTED,
                                 f"lost the connection to the daemon at {self.endpoint}; "
                                 "nothing was changed")
                        changed.append(job)
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected, self.handshake_failure = True, None
                for job in self.jobs.values():
                    if job.lost:
                        try:
                            self._send({"v": protocol.VERSION, "op": "fetch", "job": job.id})
                        except DaemonError:
                            break  # gone again; the next handshake asks once more
            elif event & _HANDSHAKE_FAILED:   # ZAP says 400 only when it refused the key
                self.handshake_failure = ("refused" if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                          else "mismatch")
        return changed

    def _dispatch(self, parts: list[zmq.Frame]) -> Job | None:
        try:
            header = protocol.decode_header(parts[0].bytes, self.limits)
        except ProtocolError:
            return None  # not for us / garbled: nothing sensible to attach it to
        buffers = [p.buffer for p in parts[1:]]
        name, job_id = header.get("event"), header.get("job")
        if isinstance(job_id, str) and job_id in self._waiting and (
                name in _REPLIES or name == "error"):
            self._replies[job_id] = (header, buffers)
            return None
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None or name not in protocol.EVENTS:
            return None
        try:
            if name == "result":
                specs = [FrameSpec("patch", p["width"], p["height"], p["format"])
                         for p in header["patches"]]
                protocol.check_frame_buffers(specs, buffers)
            job.apply(header, buffers)
        except (ProtocolError, KeyError, TypeError) as exc:
            job.fail(ErrorCode.BAD_MESSAGE, f"malformed {name} event from the daemon: {exc}")
        return job

    # ------------------------------------------------------------------ requests

    def send_request(self, op: str, payload: Sequence[Any] = (), send_timeout: float = 0.0,
                     **fields: Any) -> str:
        """Send a request without waiting for its reply; ``pump`` collects the reply and
        ``take_reply`` hands it over. Returns the request id."""
        rid = self.new_id()
        self._waiting.add(rid)
        try:
            self._send({"v": protocol.VERSION, "op": op, "job": rid, **fields}, payload,
                       timeout=send_timeout)
        except DaemonError:
            self._waiting.discard(rid)
            raise
        return rid

    def take_reply(self, rid: str) -> tuple[dict[str, Any], list[Any]] | None:
        """The reply to ``send_request``'s ``rid`` if it has arrived (an ``error`` event is
        returned as it is)."""
        reply = self._replies.pop(rid, None)
        if reply is not None:
            self._waiting.discard(rid)
        return reply

    def forget_request(self, rid: str) -> None:
        """Stop waiting for a reply (a late one is then dropped)."""
        self._waiting.discard(rid)
        self._replies.pop(rid, None)

    def request(self, op: str, timeout: float = 5.0, payload: Sequence[Any] = (),
                **fields: Any) -> tuple[dict[str, Any], list[Any]]:
        """Send one request and block until its reply (or raise DaemonError)."""
        rid = self.send_request(op, payload, send_timeout=min(timeout, 2.0), **fields)
        try:
            deadline = time.monotonic() + timeout
            while (reply := self.take_reply(rid)) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DaemonError(ErrorCode.TIMEOUT,
                                      f"the daemon at {self.endpoint} did not answer '{op}' "
                                      f"within {timeout:g} s")
                self.pump(int(left * 1000) + 1)
        finally:
            self.forget_request(rid)
        header, buffers = reply
        if header.get("event") == "error":
            raise DaemonError(header.get("code", ErrorCode.INTERNAL), header.get("message", ""))
        return header, buffers

    def hello(self, timeout: float = 5.0) -> dict[str, Any]:
        """The daemon's facts; from now on requests are checked against its limits, so that
        an image it would refuse (or whose frame its transport would drop) never leaves."""
        info = self.request("hello", timeout)[0]
        announced = info.get("limits")
        if isinstance(announced, dict):
            known = {f.name for f in fields(Limits)}
            self.limits = replace(self.limits, **{
                k: v for k, v in announced.items()
                if k in known and isinstance(v, int) and not isinstance(v, bool) and v > 0})
        return info

    def models(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        return self.request("models", timeout)[0]["models"]

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.request("status", timeout)[0]

    def echo(self, frames: Sequence[Frame], timeout: float = 30.0) -> list[Any]:
        """Send frames through the daemon and back (transfer checks and benchmarks)."""
        specs = [f.spec("echo").to_json() for f in frames]
        return self.request("echo", timeout, [f.data for f in frames], frames=specs)[1]

    def preprocess(self, frame: Frame, preprocess: str | None = None,
                   control_type: str | None = None, result_format: str = "rgba8",
                   timeout: float = 60.0) -> Frame:
        """The map a control would use: ``frame`` through the named preprocessor (or the
        type's usual one), as an image frame of the same size."""
        fields_: dict[str, Any] = {"frames": [frame.spec("control").to_json()],
                                   "result_format": result_format}
        if preprocess is not None:
            fields_["preprocess"] = preprocess
        if control_type is not None:
            fields_["type"] = control_type
        header, buffers = self.request("preprocess", timeout, [frame.data], **fields_)
        spec = header["frames"][0]
        return Frame(spec["width"], spec["height"], spec["format"], buffers[0])

    def submit(self, request: JobRequest, job_id: str | None = None,
               send_timeout: float = 2.0) -> Job:
        """Validate locally (same rules as the daemon), send, and track the job.
        ``send_timeout`` 0 never waits: no connected daemon raises at once."""
        jid = job_id or self.new_id()
        frames = request.frames()
        header = protocol.submit_header(jid, request.kind, request.params,
                                        [f.spec(role) for role, f in frames], request.offset,
                                        request.size, request.result_format, request.preview,
                                        request.live, request.scale)
        buffers = [f.data for _, f in frames]
        protocol.parse_submit(header, buffers, self.limits)  # raises ProtocolError
        job = Job(jid, request.kind)
        self._send(header, buffers, timeout=send_timeout)
        self.jobs[jid] = job
        return job

    def fetch(self, job_id: str) -> Job:
        """Ask again for a job this client id submitted earlier (e.g. before a crash); the
        daemon answers with its state or its kept result."""
        job = self.jobs.get(job_id) or Job(job_id, "?")
        if job.finished and not job.lost:
            job.state, job.error_code, job.error_message = JobState.SENT, None, None
        self.jobs[job_id] = job
        self._send({"v": protocol.VERSION, "op": "fetch", "job": job_id})
        return job

    def cancel(self, job: Job | str) -> None:
        jid = job.id if isinstance(job, Job) else job
        self._send({"v": protocol.VERSION, "op": "cancel", "job": jid})

    def wait(self, job: Job, timeout: float | None = None,
             on_update: Callable[[Job], None] | None = None) -> Job:
        """Block until the job finishes; ``timeout`` bounds the silence between events."""
        last = time.monotonic()
        while not job.finished:
            changed = self.pump(200)
            if job in changed:
                last = time.monotonic()
                if on_update is not None:
                    on_update(job)
            elif timeout is not None and time.monotonic() - last > timeout:
                job.fail(ErrorCode.TIMEOUT, f"no word from the daemon for {timeout:g} s")
        self.jobs.pop(job.id, None)
        return job

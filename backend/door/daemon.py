"""The daemon: one ROUTER socket facing clients, one worker thread owning the device (or,
with a cluster, one dispatcher thread per Ray Serve replica: backend/cluster/dispatch.py).

The main thread runs a single poll loop over two sockets: the ROUTER (client requests) and
an inproc PULL on which the workers hand back the events they produce. Only the main thread
touches the ROUTER; a worker never sees a client socket. Requests are validated here,
before anything is allocated or queued; the workers get only well-formed jobs, in the fair
queue's order, and run them with backend/jobs/job.py.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from paintbridge.plugin import __version__, controls, protocol
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError
from paintbridge.plugin.shared import is_loopback

from ..cluster.dispatch import Cluster
from ..jobs.job import ActiveJob, Emit, JobRunner
from ..models.controlnets import ControlNetLibrary
from ..models.device import DeviceChoice
from ..models.embeddings import EmbeddingLibrary
from ..models.loras import LoraLibrary
from ..models.registry import ModelRegistry
from ..models.upscalers import Upscalers
from ..settings import WHOLE_MAX_PIXELS
from .admission import Admission
from .fairqueue import FairQueue, QueueFull
from .keys import AuthorizedKeys, ServerKeys
from .retention import ResultStore

log = logging.getLogger(__name__)

_WORKER_ENDPOINT = "inproc://paintbridge-worker-events"
#: what this daemon adds to protocol v1, announced in hello (a client checks before using it)
FEATURES = ("live", "controls")
HEARTBEAT_MS = 1000  # ZMQ heartbeats; a silent peer is dropped after 3 intervals
#: preprocess requests running or waiting (one at a time, off the main thread); more are
#: refused busy, so a flood of 4096² maps cannot pile up
MAX_PREPROCESS = 4


class Worker(threading.Thread):
    """Takes jobs in fair order, runs them on the device, pushes events to the main loop."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(name="paintbridge-worker", daemon=True)
        self.d = daemon
        self.current: ActiveJob | None = None

    def run(self) -> None:
        push = self.d.context.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(_WORKER_ENDPOINT)
        try:
            while True:
                taken = self.d.queue.take()
                if taken is None:
                    return
                _, _, job = taken
                self.current = job

                def emit(header: dict[str, Any], frames: list[Any], end: bool,
                         job: ActiveJob = job) -> None:
                    self._emit(push, job, header, frames, end)

                try:
                    self._run_job(job, emit)
                except Exception as exc:   # whatever went wrong, the next job still runs
                    log.exception("job %s failed outside its stages", job.request.job)
                    JobRunner.fail(emit, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
                finally:
                    self.current = None
        finally:
            push.close(linger=1000)   # its last event ("cancelled" at shutdown) still goes

    def _emit(self, push: zmq.Socket, job: ActiveJob, header: dict[str, Any],
              frames: list[Any] | None = None, end: bool = False) -> None:
        """Worker -> main: [client, job id if this event ends the job else b"", header, ...]."""
        header = {"v": protocol.VERSION, "job": job.request.job, **header}
        ended = job.request.job.encode() if end else b""
        push.send_multipart([job.client, ended, protocol.encode_header(header),
                             *(frames or [])], copy=False)

    def _run_job(self, job: ActiveJob, emit: Emit) -> None:
        self.d.runner.run(job, emit)


class ClusterWorker(Worker):
    """One per replica: takes the next job in fair order only when its replica is free, and
    runs it there (backend/cluster/dispatch.py)."""

    def __init__(self, daemon: Daemon, cluster: Cluster, index: int) -> None:
        super().__init__(daemon)
        self.name = f"paintbridge-dispatch-{index}"
        self.cluster = cluster

    def _run_job(self, job: ActiveJob, emit: Emit) -> None:
        self.cluster.run(job, emit, self.d.runner.cancelled)


class Daemon:
    def __init__(self, bind: str, registry: ModelRegistry, device: DeviceChoice,
                 limits: Limits | None = None, whole_max_pixels: int = WHOLE_MAX_PIXELS,
                 dtype_forced: bool = False, auth: ServerKeys | None = None,
                 results: ResultStore | None = None, heartbeat_ms: int = HEARTBEAT_MS,
                 loras: LoraLibrary | None = None,
                 embeddings: EmbeddingLibrary | None = None,
                 upscalers: Upscalers | None = None, cluster: Cluster | None = None,
                 controlnets: ControlNetLibrary | None = None) -> None:
        if auth is None and not is_loopback(bind):
            raise ValueError(f"refusing to bind {bind}: a non-loopback address would let anyone "
                             "on the network drive this daemon. Create keys with `paintbridge "
                             "keys server` and `paintbridge keys client NAME` (CurveZMQ), or "
                             "bind tcp://127.0.0.1:PORT and tunnel (ssh -L).")
        self.bind = bind
        self.registry = registry
        self.loras = loras or LoraLibrary([])
        self.embeddings = embeddings or EmbeddingLibrary([])
        self.embeddings.scan()
        self.upscalers = upscalers or Upscalers([])
        self.controlnets = controlnets or ControlNetLibrary([])
        self.device = device
        self.limits = limits or Limits()
        self.queue: FairQueue[ActiveJob] = FairQueue(self.limits.max_queue,
                                                     self.limits.max_queue_per_client)
        self.active: dict[tuple[bytes, str], ActiveJob] = {}
        self.live: dict[bytes, str] = {}   # each client's live job, queued or running
        self.results = results or ResultStore()
        self.context = zmq.Context()
        self.authenticator: ThreadAuthenticator | None = None
        self.authorized: AuthorizedKeys | None = None   # read again as the folder changes
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        # a client that reconnects with its routing id takes its old identity over
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * heartbeat_ms)
        if auth is not None:
            # ZeroMQ's own ZAP handler admits only the public keys in the authorized folder
            self.authenticator = ThreadAuthenticator(self.context)
            self.authenticator.start()
            self.authorized = AuthorizedKeys(auth.authorized)
            self.authenticator.configure_curve_callback(domain="*",
                                                        credentials_provider=self.authorized)
            self.router.curve_server = True
            self.router.curve_publickey = auth.public
            self.router.curve_secretkey = auth.secret
        self.router.bind(bind)
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.events = self.context.socket(zmq.PULL)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(_WORKER_ENDPOINT)
        self._stop = threading.Event()
        self._preprocessor = ThreadPoolExecutor(1, thread_name_prefix="paintbridge-preprocess")
        self._preprocess_slots = threading.BoundedSemaphore(MAX_PREPROCESS)
        self.admission = Admission(registry, self.loras, self.embeddings, self.controlnets,
                                   self.upscalers, self.limits)
        self.runner = JobRunner(registry, device, self.upscalers, dtype_forced,
                                stopping=self._stop.is_set, whole_max_pixels=whole_max_pixels)
        self.cluster = cluster
        self.workers: list[Worker] = ([ClusterWorker(self, cluster, i)
                                       for i in range(cluster.replicas)]
                                      if cluster is not None else [Worker(self)])

    def running(self) -> list[ActiveJob]:
        """The jobs the workers run now (one per replica with a cluster)."""
        return [job for w in self.workers if (job := w.current) is not None]

    # ------------------------------------------------------------------ main loop

    def stop(self, *_: Any) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def serve(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        for worker in self.workers:
            worker.start()
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.events, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                self.results.expire()
                if self.events in ready:
                    self._forward_events()
                if self.router in ready:
                    self._read_requests()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for _, _, job in self.queue.close():
            self._send(job.client, {"event": "error", "job": job.request.job,
                                    "code": ErrorCode.INTERNAL,
                                    "message": "the daemon is shutting down"})
        for job in self.running():
            job.cancel.set()
        for worker in self.workers:
            worker.join(timeout=10)
        self._preprocessor.shutdown(wait=True, cancel_futures=True)
        while self.events.poll(200):   # the running job's "cancelled", so its client knows why
            self._forward_events()
        self.router.close(linger=2000)
        self.events.close(0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()
        if self.cluster is not None:
            self.cluster.stop()

    def _forward_events(self) -> None:
        while True:
            try:
                parts = self.events.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            client, ended = parts[0].bytes, parts[1].bytes
            done = None
            if ended:
                job = ended.decode()
                done = self._forget(client, job)
                self.results.put(client, job, [p.bytes for p in parts[2:]])
            self.router.send_multipart([parts[0], *parts[2:]], copy=False)
            if ended:   # everyone still waiting moved up one
                for key, waiting, position in self.queue.positions():
                    self._send(waiting.client, {"event": "accepted", "job": key,
                                                "position": self._ahead(position, done)})

    def _ahead(self, queued_before: int, done: ActiveJob | None = None) -> int:
        """Jobs that finish before a queued one starts: those queued before it, and the ones
        running now (not ``done``, whose end a worker has sent but may still hold)."""
        return queued_before + sum(job is not done for job in self.running())

    def _read_requests(self) -> None:
        while True:
            try:
                parts = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            client = parts[0].bytes
            job = None
            try:
                if len(parts) < 2:
                    raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message")
                if len(parts) - 2 > self.limits.max_frames:
                    raise ProtocolError(ErrorCode.TOO_LARGE,
                                        f"{len(parts) - 2} frames; limit "
                                        f"{self.limits.max_frames}")
                header = protocol.decode_header(parts[1].bytes, self.limits)
                job = header.get("job") if isinstance(header.get("job"), str) else None
                if self.authorized is not None and not self.authorized.admits(
                        str(parts[1].get("User-Id")).encode()):
                    raise ProtocolError(ErrorCode.UNAUTHORIZED,
                                        "this client's key is no longer authorized here "
                                        "(it was removed from the daemon's keys/authorized)")
                self._handle(client, header, [p.buffer for p in parts[2:]])
            except ProtocolError as exc:
                self._send(client, exc.to_event(job))

    def _send(self, client: bytes, header: dict[str, Any], frames: list[Any] | None = None
              ) -> None:
        header = {"v": protocol.VERSION, **header}
        self.router.send_multipart([client, protocol.encode_header(header), *(frames or [])],
                                   copy=False)

    # ------------------------------------------------------------------ requests

    def _handle(self, client: bytes, header: dict[str, Any], frames: list[Any]) -> None:
        op = header.get("op")
        if op not in protocol.REQUEST_OPS:
            raise ProtocolError(ErrorCode.UNKNOWN_OP,
                                f"unknown op {op!r}; expected one of "
                                f"{', '.join(protocol.REQUEST_OPS)}", "op")
        job = protocol.job_id(header, required=op in ("submit", "cancel", "fetch"))
        reply: dict[str, Any] = {"event": op}
        if job is not None:
            reply["job"] = job
        if op == "hello":
            self.registry.scan()
            reply.update(self.hello_info())
        elif op == "models":
            reply["models"] = [e.to_json() for e in self.registry.scan()]
            reply["default"] = self.registry.default
            reply["loras"] = [e.to_json() for e in self.loras.scan()]
            reply["upscalers"] = [{"name": e.name, "path": str(e.path)}
                                  for e in self.upscalers.library.scan()]
            reply["embeddings"] = [e.to_json() for e in self.embeddings.scan()]
            reply["controlnets"] = [e.to_json() for e in self.controlnets.scan()]
        elif op == "status":
            reply.update(self.status_info(client))
        elif op == "echo":
            specs = protocol.parse_frame_specs(header, self.limits)
            protocol.check_frame_buffers(specs, frames)
            reply["frames"] = [s.to_json() for s in specs]
            self._send(client, reply, frames)
            return
        elif op == "preprocess":
            self._preprocess(client, header, frames, reply)
            return
        elif op == "cancel":
            self._cancel(client, job)
            return
        elif op == "fetch":
            self._fetch(client, job)
            return
        else:
            assert job is not None
            self._submit(client, job, header, frames)
            return
        self._send(client, reply)

    def hello_info(self) -> dict[str, Any]:
        return {"protocol": protocol.VERSION, "paintbridge": __version__,
                "device": str(self.device.device), "dtype": self.device.dtype_name,
                "models": [e.name for e in self.registry.entries() if e.error is None],
                "default_model": self.registry.default,
                "loaded": (self.cluster or self.registry).loaded_names(),
                "samplers": list(protocol.SAMPLERS),
                "limits": self.limits.to_json(), "features": list(FEATURES),
                "loras": [{"name": e.name, "arch": e.arch, "triggers": e.triggers}
                          for e in self.loras.fresh() if e.error is None],
                "upscalers": self.upscalers.names(),
                "controlnets": [{"name": e.name, "type": e.type, "arch": e.arch}
                                for e in self.controlnets.fresh() if e.error is None],
                "control_types": list(controls.TYPES),
                "preprocessors": list(controls.PREPROCESSORS),
                **({"cluster": self.cluster.info} if self.cluster else {})}

    def status_info(self, client: bytes) -> dict[str, Any]:
        running = self.running()
        mine = [{"job": key[1], "state": "running" if any(
                    r.request.job == key[1] and r.client == client for r in running)
                 else "queued"}
                for key in self.active if key[0] == client]
        return {"queued": len(self.queue), "busy": bool(running), "jobs": mine,
                "finished": self.results.jobs(client)}

    def _submit(self, client: bytes, job: str, header: dict[str, Any], frames: list[Any]
                ) -> None:
        if (client, job) in self.active:
            raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job '{job}' is already active", "job")
        admitted = self.admission.admit(protocol.parse_submit(header, frames, self.limits))
        active = ActiveJob(client, admitted)
        try:
            position = (self._replace_live(client, job, active) if admitted.request.live
                        else self.queue.put(client, job, active))
        except QueueFull as exc:
            raise ProtocolError(ErrorCode.BUSY, f"{exc}; try again when a job finishes"
                                ) from None
        self.active[(client, job)] = active
        self._send(client, {"event": "accepted", "job": job, "position": self._ahead(position),
                            "model": admitted.model})

    def _replace_live(self, client: bytes, job: str, active: ActiveJob) -> int:
        """Queue a live job in place of the client's previous one: a queued one hands over
        its place in the queue (and ends 'cancelled' at once), a running one is cancelled
        at its next step. So a client never has more than one live job waiting, however
        fast it sends. Raises QueueFull (nothing changed then)."""
        prev_id = self.live.get(client)
        prev = self.active.get((client, prev_id)) if prev_id is not None else None
        position = None
        if prev is not None and prev_id is not None:
            position = self.queue.replace(client, prev_id, job, active)
        queued = position is not None
        if position is None:   # no predecessor, or it runs (or was just taken)
            position = self.queue.put(client, job, active)
        if prev is not None and prev_id is not None:   # a running one stops at its next step
            prev.replaced_by = job
            prev.cancel.set()
            if queued:
                self._forget(client, prev_id)
                self._send(client, {"event": "cancelled", "job": prev_id, "replaced_by": job})
        self.live[client] = job
        return position

    def _forget(self, client: bytes, job: str) -> ActiveJob | None:
        """A job that ended (or left the queue): no longer active, nor its client's live
        job."""
        if self.live.get(client) == job:
            del self.live[client]
        return self.active.pop((client, job), None)

    def _preprocess(self, client: bytes, header: dict[str, Any], frames: list[Any],
                    reply: dict[str, Any]) -> None:
        """A control frame through its preprocessor, sent back as an image frame (the
        map a control would use, for a host to show as a layer). Checked here; run on the
        preprocess thread (a 4096² canny takes seconds, which no other client should wait),
        its reply sent through the workers' event socket."""
        req = protocol.parse_preprocess(header, frames, self.limits)
        if not self._preprocess_slots.acquire(blocking=False):
            raise ProtocolError(ErrorCode.BUSY, f"{MAX_PREPROCESS} preprocess requests are "
                                "already running or waiting: try again shortly")
        future = self._preprocessor.submit(self._run_preprocess, client, req, reply)

        def cancelled(f: Any) -> None:   # shutdown dropped it before it ran
            if f.cancelled():
                self._preprocess_cancelled(client, reply)

        future.add_done_callback(cancelled)

    def _run_preprocess(self, client: bytes, req: protocol.PreprocessRequest,
                        reply: dict[str, Any]) -> None:
        frames: list[Any] = []
        try:
            import numpy as np

            from ..jobs import pixels, preprocess

            rgb = preprocess.run(req.preprocess, preprocess.decode(req.data, req.frame))
            out = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2)
            spec = protocol.FrameSpec("control", req.frame.width, req.frame.height,
                                      req.result_format)
            reply = {**reply, "preprocess": req.preprocess, "frames": [spec.to_json()]}
            frames = [pixels.encode_frame(out, req.result_format)]
        except Exception as exc:   # the daemon keeps serving whatever the frame held
            log.exception("preprocess %s failed", req.preprocess)
            reply = {**reply, "event": "error", "code": ErrorCode.INTERNAL,   # its request id
                     "message": f"preprocess {req.preprocess} failed: "
                                f"{type(exc).__name__}: {exc}"}
        finally:
            self._preprocess_slots.release()
        self._push_reply(client, reply, frames)

    def _preprocess_cancelled(self, client: bytes, reply: dict[str, Any]) -> None:
        """A preprocess still waiting at shutdown: its client is told why, as a queued
        job's is."""
        self._preprocess_slots.release()
        self._push_reply(client, {**reply, "event": "error", "code": ErrorCode.INTERNAL,
                                  "message": "the daemon is shutting down"})

    def _push_reply(self, client: bytes, reply: dict[str, Any],
                    frames: Sequence[Any] = ()) -> None:
        """A reply from another thread, sent on by the main loop (``_forward_events``)."""
        push = self.context.socket(zmq.PUSH)
        try:
            push.connect(_WORKER_ENDPOINT)
            push.send_multipart([client, b"", protocol.encode_header(
                {"v": protocol.VERSION, **reply}), *frames], copy=False)
        except zmq.ZMQError:
            log.exception("could not send a reply to %r", client)
        finally:
            push.close(linger=1000)

    def _fetch(self, client: bytes, job: str | None) -> None:
        """Where a job stands, for a client that lost its connection: a queued job answers
        'accepted', a running one 'progress', a finished one its kept last event."""
        assert job is not None
        active = self.active.get((client, job))
        if active is not None and any(active is r for r in self.running()):
            self._send(client, {**active.progress_event(), "job": job})
        elif active is not None:
            position = self.queue.position(client, job)
            self._send(client, {"event": "accepted", "job": job,
                                "position": self._ahead(position or 0)})
        else:
            kept = self.results.get(client, job)
            if kept is None:
                raise ProtocolError(ErrorCode.NOT_FOUND,
                                    f"no job '{job}': it never existed here, its result expired "
                                    f"({self.results.ttl:g} s), or the daemon restarted", "job")
            self.router.send_multipart([client, *kept])

    def _cancel(self, client: bytes, job: str | None) -> None:
        assert job is not None
        active = self.active.get((client, job))
        if active is None:
            raise ProtocolError(ErrorCode.NOT_FOUND, f"no active job '{job}'", "job")
        active.cancel.set()
        if self.queue.remove(client, job) is not None:
            self._forget(client, job)
            self._send(client, {"event": "cancelled", "job": job})
        # else it is running: the worker stops within one step and sends 'cancelled'

"""The daemon: one ROUTER socket facing clients, one worker thread owning the device.

The main thread runs a single poll loop over two sockets: the ROUTER (client requests) and
an inproc PULL on which the worker hands back the events it produces. Only the main thread
touches the ROUTER; the worker never sees a client socket. Requests are validated here,
before anything is allocated or queued; the worker gets only well-formed jobs.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from paintbridge.plugin import __version__, loraspec, protocol
from paintbridge.plugin.hosts import is_loopback
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError, Stage, SubmitRequest

from . import compose, runner
from .adapters import JobLora, LoraError
from .device import DTYPES, DeviceChoice, is_out_of_memory
from .embeddings import EmbeddingEntry, EmbeddingLibrary
from .fairqueue import FairQueue, QueueFull
from .keys import ServerKeys
from .loras import LoraLibrary
from .registry import LoadedModel, ModelEntry, ModelError, ModelRegistry, empty_device_cache
from .retention import ResultStore
from .upscalers import UpscalerError, Upscalers

log = logging.getLogger(__name__)

_WORKER_ENDPOINT = "inproc://paintbridge-worker-events"
#: what this daemon adds to protocol v1, announced in hello (a client checks before using it)
FEATURES = ("live",)
HEARTBEAT_MS = 1000  # ZMQ heartbeats; a silent peer is dropped after 3 intervals


@dataclass
class ActiveJob:
    client: bytes
    request: SubmitRequest
    cancel: threading.Event = field(default_factory=threading.Event)
    stage: Stage | None = None  # written by the worker, read by fetch
    step: int = 0
    total: int = 0
    loras: list[JobLora] = field(default_factory=list)   # resolved at submit
    embeddings: list[EmbeddingEntry] = field(default_factory=list)   # named in the prompts
    replaced_by: str | None = None   # the live job that took over from this one

    def progress_event(self) -> dict[str, Any]:
        """Where the running job stands: loading its model, or at a denoising step."""
        if self.stage == Stage.LOADING:
            return {"event": "progress", "stage": Stage.LOADING,
                    "model": self.request.params["model"]}
        return {"event": "progress", "stage": Stage.DENOISING, "step": self.step,
                "total": self.total}


OOM_ADVICE = ("out of memory: select a smaller region (or lower the count or the context "
              "padding), use a smaller model, or start the daemon with --dtype float16 on a GPU")
OOM_LOADING_ADVICE = ("out of memory loading model '{}': use a smaller model, keep fewer "
                      "models loaded (--cache-size 1), or --dtype float16 on a GPU")


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
                try:
                    self._run_job(job, push)
                except Exception as exc:   # whatever went wrong, the next job still runs
                    log.exception("job %s failed outside its stages", job.request.job)
                    self._fail(push, job, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
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

    def _run_job(self, job: ActiveJob, push: zmq.Socket) -> None:
        req = job.request
        if job.cancel.is_set():
            self._emit(push, job, self._cancelled(job), end=True)
            return
        started = time.monotonic()
        try:
            entry = self.d.registry.resolve(req.params["model"])
        except KeyError as exc:
            self._fail(push, job, ErrorCode.UNKNOWN_MODEL, exc.args[0])
            return
        loaded = self._load(entry, job, push)
        if loaded is None:
            return

        def progress(step: int, total: int, preview: Any) -> None:
            job.stage, job.step, job.total = Stage.DENOISING, step, total
            event = job.progress_event()
            frames = []
            if preview is not None:
                h, w = preview.shape[:2]
                event["preview"] = {"width": w, "height": h, "format": "rgba8"}
                frames.append(compose.encode_frame(preview, "rgba8"))
            self._emit(push, job, event, frames)

        try:
            job.stage = Stage.DENOISING
            results = runner.run(req, loaded, job.cancel, progress, job.loras, job.embeddings,
                                 self.d.upscalers)
        except runner.JobCancelled:
            self._emit(push, job, self._cancelled(job), end=True)
            return
        except runner.BadInput as exc:
            self._fail(push, job, ErrorCode.BAD_FRAME, str(exc))
            return
        except LoraError as exc:   # nothing of the LoRA stays loaded
            self._fail(push, job, ErrorCode.BAD_FIELD, str(exc), field="loras")
            return
        except runner.EmbeddingError as exc:
            self._fail(push, job, ErrorCode.BAD_FIELD, str(exc), field="prompt")
            return
        except UpscalerError as exc:   # a file that is not an upscaler, or not a safe one
            self._fail(push, job, ErrorCode.BAD_FIELD, str(exc), field="upscaler")
            return
        except runner.StageFailed as exc:  # the daemon keeps serving whatever a model does
            cause = exc.__cause__ or exc
            if is_out_of_memory(cause):
                log.warning("job %s ran out of memory: %s", req.job, cause)
                self._fail(push, job, ErrorCode.OUT_OF_MEMORY, OOM_ADVICE)
            else:
                log.error("job %s failed while %s", req.job, exc.stage, exc_info=cause)
                ours = exc.stage in runner.OUR_STAGES   # not the model's doing
                self._fail(push, job, ErrorCode.INTERNAL if ours else ErrorCode.MODEL_ERROR,
                           f"model '{entry.name}' failed while {exc.stage}: "
                           f"{type(cause).__name__}: {cause}")
            results = None
        if results is None:  # outside the except block, so its traceback's tensors are free
            gc.collect()
            empty_device_cache()
            return
        if job.cancel.is_set():
            self._emit(push, job, self._cancelled(job), end=True)
            return
        patches = [{"x": r.patch.x, "y": r.patch.y, "width": r.patch.width,
                    "height": r.patch.height, "format": r.patch.format, "seed": r.seed}
                   for r in results]
        self._emit(push, job, {"event": "result", "model": entry.name, "patches": patches,
                               "seconds": round(time.monotonic() - started, 3)},
                   [r.patch.data for r in results], end=True)

    def _load(self, entry: ModelEntry, job: ActiveJob, push: zmq.Socket) -> LoadedModel | None:
        """The job's model, loaded (cached); None after failing the job with a message that
        names the model, whatever loading raised."""
        failure: tuple[str, str] | None = None
        try:
            if not self.d.registry.is_loaded(entry.name):  # say so: loading takes a while
                job.stage = Stage.LOADING
                self._emit(push, job, job.progress_event())
            return self.d.registry.load(entry, self.d.device.device, self.d.model_dtype(entry))
        except ModelError as exc:
            failure = (ErrorCode.MODEL_ERROR, str(exc))
        except Exception as exc:   # e.g. a device the model's weights cannot move to
            if is_out_of_memory(exc):
                log.warning("loading %s ran out of memory: %s", entry.name, exc)
                failure = (ErrorCode.OUT_OF_MEMORY, OOM_LOADING_ADVICE.format(entry.name))
            else:
                log.exception("loading %s failed", entry.name)
                failure = (ErrorCode.MODEL_ERROR, f"model '{entry.name}' could not be loaded "
                                                  f"({entry.path}): {type(exc).__name__}: {exc}")
        self._fail(push, job, *failure)   # outside the except: its traceback's tensors go
        gc.collect()
        empty_device_cache()
        return None

    def _cancelled(self, job: ActiveJob) -> dict[str, Any]:
        """The end of a cancelled job; at shutdown it says why (the client did not ask), a
        replaced live job names its successor."""
        if self.d.stopping:
            return {"event": "cancelled", "message": "the daemon is shutting down"}
        if job.replaced_by is not None:
            return {"event": "cancelled", "replaced_by": job.replaced_by}
        return {"event": "cancelled"}

    def _fail(self, push: zmq.Socket, job: ActiveJob, code: str, message: str,
              field: str | None = None) -> None:
        self._emit(push, job, {"event": "error", "code": code, "message": message,
                               **({"field": field} if field else {})}, end=True)


class Daemon:
    def __init__(self, bind: str, registry: ModelRegistry, device: DeviceChoice,
                 limits: Limits | None = None, dtype_forced: bool = False,
                 auth: ServerKeys | None = None,
                 results: ResultStore | None = None, heartbeat_ms: int = HEARTBEAT_MS,
                 loras: LoraLibrary | None = None,
                 embeddings: EmbeddingLibrary | None = None,
                 upscalers: Upscalers | None = None) -> None:
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
        self.device = device
        self.dtype_forced = dtype_forced
        self.limits = limits or Limits()
        self.queue: FairQueue[ActiveJob] = FairQueue(self.limits.max_queue,
                                                     self.limits.max_queue_per_client)
        self.active: dict[tuple[bytes, str], ActiveJob] = {}
        self.live: dict[bytes, str] = {}   # each client's live job, queued or running
        self.results = results or ResultStore()
        self.context = zmq.Context()
        self.authenticator: ThreadAuthenticator | None = None
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
            self.authenticator.configure_curve(domain="*", location=str(auth.authorized))
            self.router.curve_server = True
            self.router.curve_publickey = auth.public
            self.router.curve_secretkey = auth.secret
        self.router.bind(bind)
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.events = self.context.socket(zmq.PULL)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.bind(_WORKER_ENDPOINT)
        self.worker = Worker(self)
        self._stop = threading.Event()

    def model_dtype(self, entry: Any) -> Any:
        """The device's dtype, unless the model asks for another on CPU (e.g. tiny models
        that gain nothing from bf16) and the user did not force one."""
        hint = entry.defaults.get("dtype")
        if self.dtype_forced or self.device.device.type != "cpu" or hint not in DTYPES:
            return self.device.dtype
        return DTYPES[hint]

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
        self.worker.start()
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
        current = self.worker.current
        if current is not None:
            current.cancel.set()
        self.worker.join(timeout=10)
        while self.events.poll(200):   # the running job's "cancelled", so its client knows why
            self._forward_events()
        self.router.close(linger=2000)
        self.events.close(0)
        if self.authenticator is not None:
            self.authenticator.stop()
        self.context.term()

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
        """Jobs that finish before a queued one starts: those queued before it, and the one
        running now (not ``done``, whose end the worker has sent but may still hold)."""
        current = self.worker.current
        return queued_before + (current is not None and current is not done)

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
        elif op == "status":
            reply.update(self.status_info(client))
        elif op == "echo":
            specs = protocol.parse_frame_specs(header, self.limits)
            protocol.check_frame_buffers(specs, frames)
            reply["frames"] = [s.to_json() for s in specs]
            self._send(client, reply, frames)
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
                "loaded": self.registry.loaded_names(), "samplers": list(protocol.SAMPLERS),
                "limits": self.limits.to_json(), "features": list(FEATURES),
                "loras": [{"name": e.name, "arch": e.arch, "triggers": e.triggers}
                          for e in self.loras.fresh() if e.error is None]}

    def status_info(self, client: bytes) -> dict[str, Any]:
        current = self.worker.current
        mine = [{"job": key[1], "state": "running" if current and current.request.job == key[1]
                 and current.client == client else "queued"}
                for key in self.active if key[0] == client]
        return {"queued": len(self.queue), "busy": current is not None, "jobs": mine,
                "finished": self.results.jobs(client)}

    def _submit(self, client: bytes, job: str, header: dict[str, Any], frames: list[Any]
                ) -> None:
        if (client, job) in self.active:
            raise ProtocolError(ErrorCode.DUPLICATE_JOB, f"job '{job}' is already active", "job")
        request = protocol.parse_submit(header, frames, self.limits)
        try:
            entry = self.registry.resolve(request.params["model"])
        except KeyError as exc:
            raise ProtocolError(ErrorCode.UNKNOWN_MODEL, exc.args[0], "model") from None
        if entry.error:
            raise ProtocolError(ErrorCode.MODEL_ERROR, f"model '{entry.name}': {entry.error}",
                                "model")
        request.params["model"] = entry.name
        if request.params.get("upscaler"):
            try:
                self.upscalers.entry(request.params["upscaler"])
            except UpscalerError as exc:
                raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), "upscaler") from None
        active = ActiveJob(client, request, loras=self._resolve_loras(request, entry),
                           embeddings=self._embeddings_named(request, entry))
        try:
            position = (self._replace_live(client, job, active) if request.live
                        else self.queue.put(client, job, active))
        except QueueFull as exc:
            raise ProtocolError(ErrorCode.BUSY, f"{exc}; try again when a job finishes"
                                ) from None
        self.active[(client, job)] = active
        self._send(client, {"event": "accepted", "job": job, "position": self._ahead(position),
                            "model": entry.name})

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

    def _resolve_loras(self, request: SubmitRequest, model: ModelEntry) -> list[JobLora]:
        """``params.loras`` and the prompt's ``<lora:NAME:W>`` tags (taken out of the text
        the encoder sees), each name looked up; ProtocolError naming the field."""
        try:
            prompt, tagged = loraspec.from_prompt(request.params["prompt"])
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"prompt: {exc}", "prompt") from None
        asked = list(request.params["loras"] or []) + tagged
        if not asked:
            return []
        try:
            asked = loraspec.check(asked, self.limits.max_loras)
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), "loras") from None
        request.params["prompt"] = prompt
        out = []
        for item in asked:
            try:
                entry = self.loras.resolve(item["name"])
            except KeyError as exc:
                raise ProtocolError(ErrorCode.BAD_FIELD, exc.args[0], "loras") from None
            if entry.error:
                raise ProtocolError(ErrorCode.BAD_FIELD,
                                    f"LoRA '{entry.name}' is not usable: {entry.error}", "loras")
            if entry.arch == "sdxl" and not model.xl or entry.arch in ("sd1", "sd2") \
                    and model.xl:
                raise ProtocolError(ErrorCode.BAD_FIELD,
                                    f"LoRA '{entry.name}' is for {entry.arch}; model "
                                    f"'{model.name}' is {model.arch}", "loras")
            out.append(JobLora(entry, item["weight"], item.get("text_encoder_weight")))
        request.params["loras"] = [{"name": lo.entry.name, "weight": lo.weight} for lo in out]
        return out

    def _embeddings_named(self, request: SubmitRequest, model: ModelEntry
                          ) -> list[EmbeddingEntry]:
        """The embeddings whose names the prompts use as words (A1111's rule)."""
        named = self.embeddings.named_in(request.params["prompt"],
                                         request.params["negative_prompt"])
        for e in named:
            if e.error:
                raise ProtocolError(ErrorCode.BAD_FIELD,
                                    f"embedding '{e.name}' is not usable: {e.error}", "prompt")
            if e.arch is not None and (e.arch == "sdxl") != model.xl:
                raise ProtocolError(ErrorCode.BAD_FIELD, f"embedding '{e.name}' is for "
                                    f"{e.arch}; model '{model.name}' is {model.arch}", "prompt")
        return named

    def _fetch(self, client: bytes, job: str | None) -> None:
        """Where a job stands, for a client that lost its connection: a queued job answers
        'accepted', a running one 'progress', a finished one its kept last event."""
        assert job is not None
        active = self.active.get((client, job))
        current = self.worker.current
        if active is not None and active is current:
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

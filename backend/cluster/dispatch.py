"""Many devices behind one daemon, on Ray Serve (an optional extra: ``paintbridge[cluster]``).

The daemon stays the front door: clients, keys, validation, the fair queue, ``fetch`` and
heartbeats are all its own. What changes is who runs a job: instead of its one worker
thread, one dispatcher thread per replica takes the next job from the fair queue (so a
job is handed on only when a replica is free, and fairness and ``accepted.position`` stay
the daemon's) and streams it through a Serve deployment whose replicas each own a device
and run the same job recipe (backend/jobs/job.py) on their own model cache.

A replica that dies mid-job: the job runs again on another one, at most :data:`RETRIES`
times; its client gets a ``retrying`` progress event, sees progress start over and then
exactly one result or one error. A cancel reaches the running replica within one denoising
step.

The daemon never talks to Ray itself: a Ray driver exits when its cluster goes away, so a
cluster agent process (backend/cluster/agent.py, driving :class:`RayCluster`) does, and
:class:`Cluster` starts it again with the next job after it died. Jobs running then end
with an error; the daemon keeps answering.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from paintbridge.plugin.protocol import ErrorCode, Stage

from ..jobs.job import ActiveJob, Emit, JobRunner
from ..settings import WHOLE_MAX_PIXELS

log = logging.getLogger(__name__)

RAY_VERSION = "2.60.0"
INSTALL = "pip install 'paintbridge[cluster]'"
APP = "paintbridge"
NAMESPACE = "paintbridge"
#: how often a job whose replica died is run again before its client gets an error
RETRIES = 2
#: the object store's size on a machine the daemon starts Ray on (Ray's default is 30 %
#: of RAM); frames of the largest allowed job fit several times over
OBJECT_STORE_BYTES = 2 * 2**30
#: environment the replicas need whatever machine they run on
REPLICA_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")


class ClusterError(Exception):
    """The cluster cannot be used: Ray is missing, unreachable, or unsafe to join."""


@dataclass(frozen=True)
class ReplicaSetup:
    """What a replica needs to build its own registry and device, sent to every replica."""

    roots: list[Path]
    explicit: list[Any]                 # registry.ModelEntry
    include_embedded: bool
    default: str | None
    device: str | None
    dtype: str | None
    threads: int | None = None
    upscaler_roots: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cache_size: int = 2    # models each replica keeps loaded (--cache-size)
    whole_max_pixels: int = WHOLE_MAX_PIXELS

    def runner(self) -> JobRunner:
        from ..models import device as dev
        from ..models.registry import ModelRegistry
        from ..models.upscalers import Upscalers

        dev.configure_threads(self.threads)
        registry = ModelRegistry(self.roots, self.explicit, self.include_embedded,
                                 self.default, self.cache_size)
        registry.scan()
        choice = dev.choose(self.device, self.dtype)
        return JobRunner(registry, choice, Upscalers(self.upscaler_roots, choice.device),
                         dtype_forced=bool(self.dtype), whole_max_pixels=self.whole_max_pixels)


def _is_local(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_token() -> bool:
    """Whether Ray's token authentication is on for this process: RAY_AUTH_MODE=token and
    a token (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token)."""
    return os.environ.get("RAY_AUTH_MODE") == "token" and bool(
        os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
        or (Path.home() / ".ray" / "auth_token").is_file())


def plan(resources: dict[str, float], replicas: int, gpus_per_replica: float | None,
         cpus_per_replica: float = 1.0) -> float:
    """GPUs each replica takes: one where the cluster has GPUs, none where it has not;
    refused when the cluster cannot hold ``replicas`` of that size (Serve would wait for
    them for ever). A ``gpus_per_replica`` given is trusted as it is: an autoscaling
    cluster (KubeRay) adds the GPU nodes it needs on demand."""
    if gpus_per_replica is not None:
        return gpus_per_replica
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    each = 1.0 if gpus >= 1 else 0.0
    if each > 0 and replicas * each > gpus:
        raise ClusterError(f"{replicas} replicas of {each:g} GPU need {replicas * each:g} "
                           f"GPUs; the Ray cluster has {gpus:g}: start fewer replicas, or "
                           "join more GPU servers with `ray start`")
    if replicas * cpus_per_replica > cpus:
        raise ClusterError(f"{replicas} replicas need {replicas * cpus_per_replica:g} CPUs; "
                           f"the Ray cluster has {cpus:g}: start fewer replicas")
    return each


class RayCluster:
    """Ray and the deployed replicas, in the process that talks to Ray: the cluster agent
    (backend/cluster/agent.py), never the daemon itself, since a Ray driver exits when it
    loses its cluster."""

    def __init__(self, handle: Any, info: dict[str, Any], own: bool = False) -> None:
        self.handle = handle
        self.info = info   # what hello says of the cluster
        self.own = own     # a Ray instance this daemon started (and stops)

    @classmethod
    def start(cls, address: str, replicas: int, setup: ReplicaSetup,
              gpus_per_replica: float | None = None,
              cpus_per_replica: float = 1.0) -> RayCluster:
        """``address`` "auto": a Ray instance of our own on this machine; else join the
        cluster there. ``gpus_per_replica`` None: as :func:`plan` decides."""
        import ray
        from ray import serve

        env = {k: os.environ[k] for k in REPLICA_ENV if k in os.environ}
        setup = dataclasses.replace(setup, env={**env, **setup.env})
        try:
            if address == "auto":   # Ray's ports on loopback only: nobody else joins
                ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
                         object_store_memory=OBJECT_STORE_BYTES, logging_level=logging.WARNING,
                         runtime_env={"env_vars": setup.env}, _node_ip_address="127.0.0.1")
            else:
                ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                         runtime_env={"env_vars": setup.env})
            resources = ray.cluster_resources()
            gpus = plan(resources, replicas, gpus_per_replica, cpus_per_replica)
            if not gpus and address != "auto" and gpus_per_replica is None:
                log.warning("the Ray cluster at %s has no GPUs now: the replicas run on CPUs "
                            "(where GPU nodes join on demand, give --replica-gpus 1)", address)
            if not gpus and resources.get("GPU") and setup.device in (None, "auto"):
                # CPU replicas asked for: Ray hides the GPUs only from replicas given some
                setup = dataclasses.replace(setup, device="cpu")
            serve.start(proxy_location="Disabled")
            from .replica import deployment

            app = deployment(setup.cache_size).options(
                num_replicas=replicas,
                ray_actor_options={"num_cpus": cpus_per_replica, "num_gpus": gpus}).bind(setup)
            handle = serve.run(app, name=APP, route_prefix=None)
        except ClusterError:
            raise
        except Exception as exc:
            raise ClusterError(f"cannot start the cluster at {address}: "
                               f"{type(exc).__name__}: {exc}") from exc
        log.info("cluster: %d replicas of %g GPU on Ray %s", replicas, gpus, ray.__version__)
        return cls(handle, {"replicas": replicas, "gpus_per_replica": gpus,
                            "models_per_replica": setup.cache_size}, own=address == "auto")

    def stop(self) -> None:
        """Our own Ray instance goes with its processes (Serve's graceful shutdown can wait
        on a replica being replaced for ever); on a joined cluster our application is
        deleted and the cluster keeps running."""
        try:
            import ray
            from ray import serve

            if not self.own:
                serve.delete(APP, _blocking=False)
            ray.shutdown()
        except Exception:   # noqa: BLE001 - shutting down: nothing left to tell
            log.exception("cluster shutdown")

    # ------------------------------------------------------------------ one job

    def run(self, job: ActiveJob, emit: Emit) -> None:
        """The job (its frames already arrays: :meth:`AdmittedJob.portable`) on a replica,
        its events handed to ``emit`` as the recipe made them; retried where its replica
        died. Ends
        with exactly one ``end`` event; a cancelled job's is a bare ``cancelled`` (the
        daemon says why)."""
        from ray.exceptions import ActorUnavailableError, RayActorError
        from ray.serve.exceptions import RequestCancelledError

        payload = {"admitted": job.admitted}
        model = job.admitted.model   # the daemon resolved it at submit
        replica = None   # the one running the job, as its events say
        for attempt in range(RETRIES + 1):
            if job.cancel.is_set():
                emit({"event": "cancelled"}, [], True)
                return
            stream = self.handle.options(stream=True, multiplexed_model_id=model).run.remote(
                payload)
            done = threading.Event()
            watcher = threading.Thread(target=_cancel_when, args=(job, done, stream),
                                       daemon=True)
            watcher.start()
            try:
                for header, frames, end in stream:
                    replica = header.get("_replica", replica)
                    emit(header, frames, end)
                    if end:
                        return
                raise RuntimeError("the replica ended the job without a last event")
            except RequestCancelledError:
                emit({"event": "cancelled"}, [], True)
                return
            except (RayActorError, ActorUnavailableError) as exc:
                lost, replica = ({"_lost": replica} if replica else {}), None
                if attempt < RETRIES:
                    log.warning("job %s: its replica died (%s); running it again",
                                job.request.job, type(exc).__name__)
                    emit({"event": "progress", "stage": Stage.RETRYING, "retry": attempt + 1,
                          "message": "the worker running the job stopped; it runs again "
                                     f"from the start (retry {attempt + 1} of {RETRIES})",
                          **lost}, [], False)
                    continue
                emit({"event": "error", "code": ErrorCode.INTERNAL,
                      "message": f"the job's replica died {RETRIES + 1} times: {exc}", **lost},
                     [], True)
                return
            except Exception as exc:   # Ray itself gone: the daemon keeps serving
                log.exception("job %s: the cluster failed", job.request.job)
                JobRunner.fail(emit, ErrorCode.INTERNAL,
                               f"the cluster failed to run the job: {type(exc).__name__}: "
                               f"{exc}")
                return
            finally:
                done.set()


def _cancel_when(job: ActiveJob, done: threading.Event, stream: Any) -> None:
    """Cancel ``stream`` as soon as the job is cancelled (until it is done)."""
    while not done.is_set():
        if job.cancel.wait(0.05):
            stream.cancel()
            return


# --------------------------------------------------------------------------- daemon side

#: how long a cluster agent may take to start Ray and deploy the replicas
READY_S = 300.0
#: where, beside its spec, an agent that could not start the cluster says why
ERROR_FILE = "error.txt"


class Cluster:
    """The daemon's side: a cluster agent process (backend/cluster/agent.py) that drives
    Ray, started again when it has died (its cluster went away, or was restarted), so the
    daemon itself never goes down with Ray. Jobs travel to it over a local ZeroMQ socket,
    one per dispatcher thread."""

    def __init__(self, address: str, replicas: int, setup: ReplicaSetup,
                 gpus_per_replica: float | None = None) -> None:
        self.address = address
        self.replicas = replicas
        self.info: dict[str, Any] = {"replicas": replicas}   # the agent's, once it is ready
        self._held: dict[str, list[str]] = {}   # models each replica said it holds
        self._held_lock = threading.Lock()   # not _lock: hello must not wait on a start
        self._dir = Path(tempfile.mkdtemp(prefix="paintbridge-cluster-"))
        self.endpoint = f"ipc://{self._dir / 'agent'}"
        spec = {"address": address, "replicas": replicas, "setup": setup,
                "gpus_per_replica": gpus_per_replica}
        self._spec_file = self._dir / "spec.pickle"
        self._spec_file.write_bytes(pickle.dumps(spec))
        self._context: zmq.Context[Any] = zmq.Context.instance()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._proc: subprocess.Popen | None = None
        self._stopping = False

    @classmethod
    def start(cls, address: str, replicas: int, setup: ReplicaSetup,
              gpus_per_replica: float | None = None) -> Cluster:
        """Checks what can be checked here, then starts the agent and waits until its
        replicas are deployed; ClusterError says why not."""
        if importlib.util.find_spec("ray") is None:
            raise ClusterError(f"--cluster needs Ray Serve, which is not installed: {INSTALL}")
        if address != "auto" and not _is_local(address) and not has_token():
            raise ClusterError(
                f"refusing to join the Ray cluster at {address} without Ray's token "
                "authentication: anyone who reaches Ray's ports can run code there. Set "
                "RAY_AUTH_MODE=token and the cluster's token (docs/cluster.md), and keep Ray "
                "on a private network.")
        cluster = cls(address, replicas, setup, gpus_per_replica)
        cluster._ensure()
        return cluster

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _ensure(self) -> None:
        """The agent, running and ready (started now if it is not)."""
        with self._lock:
            if self._alive():
                return
            if self._stopping:
                raise ClusterError("the daemon is shutting down")
            log.info("cluster: starting the agent for %s", self.address)
            (self._dir / ERROR_FILE).unlink(missing_ok=True)
            with self._held_lock:   # replicas of a cluster that went away
                self._held.clear()
            self._proc = subprocess.Popen([sys.executable, "-m",
                                           "paintbridge.backend.cluster.agent", self.endpoint,
                                           str(self._spec_file)])
            probe = self._context.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            probe.connect(self.endpoint)
            deadline = time.monotonic() + READY_S
            try:
                probe.send(b"ping")
                while time.monotonic() < deadline:
                    if probe.poll(200):
                        self.info = json.loads(probe.recv())
                        return
                    if self._proc.poll() is not None:
                        why = self._dir / ERROR_FILE
                        raise ClusterError(
                            f"the cluster at {self.address} could not be started: "
                            + (why.read_text() if why.is_file() else
                               f"agent exit code {self._proc.returncode}; its messages are "
                               "in the daemon's output"))
                self._proc.kill()
                raise ClusterError(f"the cluster at {self.address} was not ready within "
                                   f"{READY_S:g} s")
            finally:
                probe.close()

    def loaded_names(self) -> list[str]:
        """The models some replica holds, as each said at the end of its latest job."""
        with self._held_lock:
            return sorted({name for held in self._held.values() for name in held})

    def _note(self, job: ActiveJob, header: dict[str, Any], where: Any) -> Any:
        """Takes the daemon's keys (``_…``) off a replica's event: what it holds, a replica
        that died, and who runs the job (logged when it changes: the process to look at, or
        to stop). Returns who runs it now."""
        ours = {k: header.pop(k) for k in [k for k in header if k.startswith("_")]}
        replica, held, lost = (ours.get(k) for k in ("_replica", "_loaded", "_lost"))
        with self._held_lock:
            if lost is not None:
                self._held.pop(lost, None)
            if replica is not None and held is not None:
                self._held[replica] = held
        runs = (replica, ours.get("_pid"), ours.get("_host")) if replica is not None else where
        if runs != where:
            log.info("job %s runs on replica %s (pid %s on %s)", job.request.job, *runs)
        return runs

    def _socket(self) -> zmq.Socket:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            sock = self._context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)   # nothing queued for an agent that is gone
            sock.connect(self.endpoint)
            self._local.sock = sock
        return sock

    def _drop_socket(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close(0)
            self._local.sock = None

    def run(self, job: ActiveJob, emit: Emit,
            cancelled_event: Callable[[ActiveJob], dict[str, Any]]) -> None:
        """The job through the agent; ends with exactly one ``end`` event, an error if the
        cluster cannot be reached or stops meanwhile (the next job starts it again)."""
        try:
            self._ensure()
        except ClusterError as exc:
            JobRunner.fail(emit, ErrorCode.INTERNAL, f"the cluster is not running: {exc}")
            return
        sock = self._socket()
        payload = {"admitted": job.admitted.portable()}
        sock.send_multipart([b"run", pickle.dumps(payload, protocol=5)])
        cancel_sent = False
        where = None   # the replica running it, as its events say
        while True:
            if job.cancel.is_set() and not cancel_sent:
                sock.send(b"cancel")
                cancel_sent = True
            if sock.poll(50):
                parts = sock.recv_multipart(copy=False)
                header = json.loads(parts[0].bytes)
                where = self._note(job, header, where)
                end = parts[1].bytes == b"1"
                if header.get("event") == "progress":
                    job.stage = Stage(header["stage"])
                    if job.stage == Stage.RETRYING:
                        job.retries, job.step = header["retry"], 0
                    elif job.stage == Stage.DENOISING:
                        job.step, job.total = header.get("step", 0), header.get("total", 0)
                if header.get("event") == "cancelled":
                    emit(cancelled_event(job), [], True)   # the daemon's words for why
                    return
                emit(header, list(parts[2:]), end)
                if end:
                    return
            elif not self._alive():
                self._drop_socket()
                JobRunner.fail(emit, ErrorCode.INTERNAL,
                               f"the cluster at {self.address} stopped while running the job "
                               "(it is started again with the next job)")
                return

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

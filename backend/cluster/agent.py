"""The cluster agent: the one process that talks to Ray, started by the daemon
(backend/cluster/dispatch.py, ``Cluster``) as ``python -m paintbridge.backend.cluster.agent ENDPOINT
SPEC``. A Ray driver exits when its cluster goes away; in this process that costs the
running jobs an error, not the daemon its clients. The daemon starts it again.

Over a ROUTER socket at ENDPOINT (one DEALER per daemon dispatcher): ``ping`` -> what
hello says of the cluster (JSON) once the replicas are deployed; ``run`` + a pickled job ->
its events as [header JSON, b"1" if it ends the job else b"0", frames...]; ``cancel``
cancels that dispatcher's running job.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys
import threading
from typing import Any

import zmq

from ..jobs.job import ActiveJob
from .dispatch import ERROR_FILE, ClusterError, RayCluster

log = logging.getLogger("paintbridge.cluster_agent")
_EVENTS = "inproc://cluster-agent-events"


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    endpoint, spec_file = argv
    with open(spec_file, "rb") as f:
        spec = pickle.load(f)
    parent = os.getppid()
    try:
        ray = RayCluster.start(spec["address"], spec["replicas"], spec["setup"],
                               gpus_per_replica=spec["gpus_per_replica"])
    except Exception as exc:   # noqa: BLE001 - whatever Ray raised, the daemon says it
        log.error("cluster agent: cannot start the cluster at %s: %s: %s", spec["address"],
                  type(exc).__name__, exc)
        why = str(exc) if isinstance(exc, ClusterError) else f"{type(exc).__name__}: {exc}"
        with open(os.path.join(os.path.dirname(spec_file), ERROR_FILE), "w") as out:
            out.write(why)
        return 3
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    context: zmq.Context[Any] = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    events = context.socket(zmq.PULL)
    events.bind(_EVENTS)
    running: dict[bytes, ActiveJob] = {}

    def work(ident: bytes, job: ActiveJob) -> None:
        push = context.socket(zmq.PUSH)
        push.connect(_EVENTS)

        def emit(header: dict[str, Any], frames: list[Any], end: bool) -> None:
            push.send_multipart([ident, json.dumps(header).encode(), b"1" if end else b"0",
                                 *frames], copy=False)

        try:
            ray.run(job, emit)
        finally:
            push.close(linger=1000)

    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(events, zmq.POLLIN)
    try:
        while not stop.is_set() and os.getppid() == parent:   # never outlive the daemon
            ready = dict(poller.poll(200))
            if events in ready:
                while events.poll(0):
                    parts = events.recv_multipart(copy=False)
                    ident = parts[0].bytes
                    if parts[2].bytes == b"1":
                        running.pop(ident, None)
                    router.send_multipart([ident, *parts[1:]], copy=False)
            if router in ready:
                while router.poll(0):
                    ident, kind, *rest = router.recv_multipart()
                    if kind == b"ping":
                        router.send_multipart([ident, json.dumps(ray.info).encode()])
                    elif kind == b"run":
                        payload = pickle.loads(rest[0])
                        job = ActiveJob(ident, payload["admitted"])
                        running[ident] = job
                        threading.Thread(target=work, args=(ident, job), daemon=True).start()
                    elif kind == b"cancel" and ident in running:
                        running[ident].cancel.set()
    finally:
        for job in running.values():
            job.cancel.set()
        router.close(0)
        events.close(0)
        ray.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except ClusterError as exc:
        print(f"cluster agent: {exc}", file=sys.stderr)
        sys.exit(3)

"""A Ray Serve replica: one device, its own model cache, the daemon's job recipe.

Imported only where Ray is installed and a cluster is asked for (backend/cluster/dispatch.py). A
replica takes one job at a time (``max_ongoing_requests=1``: the daemon's fair queue, not
Serve's router, decides what runs next) and streams the recipe's events back as they come.
Serve's model multiplexing routes a job to a replica that already holds its model; the
recipe's registry does the loading, so the client still sees "loading model …".

Every event carries ``_replica`` (this replica's name), ``_pid`` and ``_host`` (the process
that runs the job, which the daemon logs) and a job's last one ``_loaded`` (the models it
holds now): keys starting with ``_`` are for the daemon, which takes them off
before the client sees the event.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from ray import serve

from ..jobs.job import ActiveJob, JobRunner

HOST = socket.gethostname()


class Replica:
    def __init__(self, setup: Any) -> None:   # cluster.ReplicaSetup
        for key, value in setup.env.items():
            os.environ.setdefault(key, value)
        self.runner: JobRunner = setup.runner()
        context = serve.get_replica_context()
        self.name = str(getattr(context.replica_id, "unique_id", context.replica_id))

    async def hold(self, model: str) -> str:   # multiplexed in :func:`deployment`
        """Tells Serve this replica holds ``model``; the recipe loads it on first use."""
        return model

    async def run(self, payload: dict[str, Any]) -> AsyncIterator[tuple[dict, list, bool]]:
        """(header, frames as arrays, end) for every event of the job, as they come; a
        cancelled call stops the job at its next step."""
        await self.hold(serve.get_multiplexed_model_id())
        job = ActiveJob(b"", payload["admitted"])
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[dict, list, bool]] = asyncio.Queue()

        def emit(header: dict[str, Any], frames: list[Any], end: bool) -> None:
            header = {**header, "_replica": self.name, "_pid": os.getpid(), "_host": HOST}
            if end:
                header["_loaded"] = self.runner.registry.loaded_names()
                if header.get("event") == "result":
                    header["replica"] = self.name
            arrays = [np.frombuffer(memoryview(f), np.uint8) for f in frames]
            loop.call_soon_threadsafe(events.put_nowait, (header, arrays, end))

        worker = threading.Thread(target=self.runner.run, args=(job, emit), daemon=True,
                                  name=f"job-{job.request.job}")
        worker.start()
        try:
            while True:
                event = await events.get()
                yield event
                if event[2]:
                    break
        except asyncio.CancelledError:
            job.cancel.set()
            await asyncio.to_thread(worker.join)
            raise


def deployment(models_per_replica: int) -> Any:
    """The Serve deployment, its multiplexing LRU as large as each replica's model cache
    (Serve takes the size at class definition, so the class is made here)."""

    class MultiplexedReplica(Replica):
        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def hold(self, model: str) -> str:
            return model

    return serve.deployment(name="Replica", max_ongoing_requests=1)(MultiplexedReplica)

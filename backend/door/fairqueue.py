"""A bounded job queue that serves clients in turn (round robin), so nobody waits behind
another client's whole batch. Shared by the daemon's main thread (put/remove) and the
worker (take)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    pass


class FairQueue(Generic[T]):
    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._queues: OrderedDict[Hashable, deque[tuple[str, T]]] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def put(self, client: Hashable, key: str, item: T) -> int:
        """Enqueue; returns how many jobs will run before it. Raises QueueFull."""
        with self._cond:
            total = sum(len(q) for q in self._queues.values())
            mine = self._queues.get(client)
            if total >= self.max_total:
                raise QueueFull(f"the queue is full ({self.max_total} jobs)")
            if mine is not None and len(mine) >= self.max_per_client:
                raise QueueFull(f"this client already has {self.max_per_client} queued jobs")
            if mine is None:
                mine = self._queues[client] = deque()
            mine.append((key, item))
            self._cond.notify()
            return self._position(client, len(mine) - 1)

    def _position(self, client: Hashable, index: int) -> int:
        """Jobs served before the ``index``-th job of ``client``: round k serves the k-th job
        of every client in rotation order."""
        ahead, before = index, True
        for other, q in self._queues.items():
            if other == client:
                before = False
            else:
                ahead += min(len(q), index + 1 if before else index)
        return ahead

    def position(self, client: Hashable, key: str) -> int | None:
        with self._cond:
            for index, (k, _) in enumerate(self._queues.get(client, ())):
                if k == key:
                    return self._position(client, index)
            return None

    def positions(self) -> list[tuple[str, T, int]]:
        """Every queued job as (key, item, jobs served before it)."""
        with self._cond:
            return [(key, item, self._position(client, index))
                    for client, q in self._queues.items()
                    for index, (key, item) in enumerate(q)]

    def take(self, timeout: float | None = None) -> tuple[Hashable, str, T] | None:
        """Next job of the next client in turn; None on timeout or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or any(self._queues.values()),
                                       timeout):
                return None
            if self._closed:
                return None
            client, q = next(iter(self._queues.items()))
            key, item = q.popleft()
            del self._queues[client]
            if q:  # back of the rotation
                self._queues[client] = q
            return client, key, item

    def remove(self, client: Hashable, key: str) -> T | None:
        with self._cond:
            q = self._queues.get(client)
            if not q:
                return None
            for i, (k, item) in enumerate(q):
                if k == key:
                    del q[i]
                    if not q:
                        del self._queues[client]
                    return item
            return None

    def replace(self, client: Hashable, key: str, new_key: str, item: T) -> int | None:
        """Put ``item`` in the place of queued job ``key`` (its client keeps its turn); the
        new job's position, or None when ``key`` is no longer queued (taken or gone)."""
        with self._cond:
            q = self._queues.get(client)
            for i, (k, _) in enumerate(q or ()):
                if k == key and q is not None:
                    q[i] = (new_key, item)
                    return self._position(client, i)
            return None

    def close(self) -> list[tuple[Hashable, str, T]]:
        """Stop serving; returns what was still queued."""
        with self._cond:
            self._closed = True
            left = [(c, k, item) for c, q in self._queues.items() for k, item in q]
            self._queues.clear()
            self._cond.notify_all()
            return left

"""Finished jobs' last event, kept so a client whose connection dropped can fetch it.

A client that vanishes mid-job does not cancel it: the daemon finishes the job and keeps its
terminal event (result, error or cancelled) for ``ttl`` seconds, within ``max_bytes`` (oldest
first out). A client that comes back with the same routing id asks with ``fetch``.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class ResultStore:
    def __init__(self, ttl: float = 600.0, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[bytes, str], tuple[float, list[bytes]]] = OrderedDict()
        self._bytes = 0

    def put(self, client: bytes, job: str, parts: list[bytes]) -> None:
        """``parts``: the header and frames exactly as they were sent."""
        key = (client, job)
        self._drop(key)
        size = sum(len(p) for p in parts)
        if size > self.max_bytes:
            return
        self._items[key] = (time.monotonic() + self.ttl, parts)
        self._bytes += size
        while self._bytes > self.max_bytes:
            self._drop(next(iter(self._items)))

    def get(self, client: bytes, job: str) -> list[bytes] | None:
        self.expire()
        item = self._items.get((client, job))
        return item[1] if item else None

    def jobs(self, client: bytes) -> list[str]:
        self.expire()
        return [job for (c, job) in self._items if c == client]

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self._items:
            key, (deadline, _) = next(iter(self._items.items()))
            if deadline > now:
                return
            self._drop(key)

    def _drop(self, key: tuple[bytes, str]) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= sum(len(p) for p in item[1])

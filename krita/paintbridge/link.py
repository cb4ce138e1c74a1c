"""Keep a Session's connection state fresh without ever waiting on the network.

``Session.check()`` blocks until the daemon answers (or a timeout), which is fine for a
dialog but not for a docker that lives on Krita's UI thread. This sends ``hello`` without
waiting and picks the reply up from the replies that ``Session.poll()`` has already
read. Qt-free, so it can be tested without Krita.

It uses the Client's request bookkeeping (``_waiting``/``_replies``/``_send``); see
docs/krita.md for the small public API proposed for ``plugin/client.py`` to replace that.
"""

from __future__ import annotations

from typing import Any

from .plugin import protocol
from .plugin.client import DaemonError
from .plugin.protocol import ErrorCode
from .plugin.session import Session


class Link:
    """Probes the daemon with ``hello`` every few seconds; call :meth:`update` often."""

    interval_connected = 3.0     # seconds between probes while connected
    interval_disconnected = 1.0  # ... and while not, so a started daemon is seen at once
    hello_timeout = 5.0

    def __init__(self, session: Session) -> None:
        self.session = session
        self._rid: str | None = None
        self._sent = 0.0
        self._next = 0.0

    def reset(self) -> None:
        """After ``session.reconnect()``: probe the new socket at once."""
        self._rid, self._next = None, 0.0

    def _set(self, info: dict[str, Any] | None, error: str | None) -> bool:
        changed = (info is None) != (self.session.info is None) or (
            info is not None and info != self.session.info) or error != self.session.last_error
        self.session.info, self.session.last_error = info, error
        return changed

    def update(self, now: float) -> bool:
        """Collect a reply, time a probe out or send the next one; True if the state
        (connected, the hello, the error) changed."""
        session, client = self.session, self.session.client
        changed = False
        if self._rid is not None:
            reply = client._replies.pop(self._rid, None)
            if reply is not None:
                client._waiting.discard(self._rid)
                self._rid = None
                header = reply[0]
                if header.get("event") == "error":
                    changed |= self._set(None, header.get("message", "the daemon refused"))
                else:   # without the request id, so an unchanged daemon reads unchanged
                    changed |= self._set({k: v for k, v in header.items() if k != "job"},
                                         None)
            elif now - self._sent > self.hello_timeout:
                client._waiting.discard(self._rid)
                self._rid = None
                job = session.job
                if job is None or job.finished:   # a busy daemon may answer late
                    changed |= self._set(None, f"the daemon at {client.endpoint} did not "
                                               f"answer within {self.hello_timeout:g} s")
        if self._rid is None and now >= self._next:
            self._next = now + (self.interval_connected if session.connected
                                else self.interval_disconnected)
            rid = client.new_id()
            client._waiting.add(rid)
            try:
                client._send({"v": protocol.VERSION, "op": "hello", "job": rid}, timeout=0)
            except DaemonError as exc:
                client._waiting.discard(rid)
                changed |= self._set(None, exc.message)
                job = session.job
                if job is not None and not job.finished:
                    job.fail(ErrorCode.UNREACHABLE, f"the connection to the daemon was lost: "
                                                    f"{exc.message}")
                    changed = True
            else:
                self._rid, self._sent = rid, now
        return changed

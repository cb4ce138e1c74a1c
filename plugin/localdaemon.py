"""A panel's "Start local daemon": start ``paintbridge serve`` and follow it until it
answers or exits, saying how it goes (the seconds so far and the log's last line).

Host- and Qt-free, like :mod:`.controller`, which owns one; the process itself is started
by :func:`.launcher.start_daemon` (or what the host passes instead).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import launcher


def log_tail(path: Path, size: int = 400) -> str:
    """The last line of a log file ("" when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


class LocalDaemon:
    """The daemon a panel started: the process and how its start goes."""

    def __init__(self, launch: Callable[[str], Any] = launcher.start_daemon,
                 log: Callable[[], Path] = launcher.log_path) -> None:
        """``launch(endpoint)`` starts a daemon process (something with ``poll()``,
        ``returncode`` and ``pid``); ``log()`` is where it writes."""
        self._launch, self._log = launch, log
        self.proc: Any = None        # the process the last start began
        self.started = 0.0           # when it was started; 0 once it answered or exited

    @property
    def starting(self) -> bool:
        return bool(self.started)

    def start(self, endpoint: str, now: float) -> tuple[str, bool]:
        """Start one on ``endpoint``: (what to tell the user, whether it is a problem)."""
        try:
            self.proc = self._launch(endpoint)
        except OSError as exc:   # FileNotFoundError: not installed with a daemon
            return f"Could not start the daemon: {exc}", True
        self.started = now
        return f"Starting the daemon on {endpoint} …", False

    def follow(self, now: float, connected: bool) -> tuple[str, bool]:
        """While starting: (what to tell the user, whether it is a problem); the start is
        over once the daemon answers (``connected``) or its process exited."""
        elapsed = now - self.started
        if connected:
            self.started = 0.0
            return f"Daemon started ({elapsed:.0f} s).", False
        log = self._log()
        tail = log_tail(log)
        if self.proc.poll() is not None:
            self.started = 0.0
            return f"The daemon exited (code {self.proc.returncode}): {tail}\nLog: {log}", True
        return f"Starting the daemon … {elapsed:.0f} s" + (f"\n{tail}" if tail else ""), False

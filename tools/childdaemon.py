"""A daemon as a child process on a free loopback port, and the wait until it answers.

One recipe for `make demo`, the tests and the benchmarks: offline, passive OpenMP threads,
one torch thread, output to a log file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from paintbridge.plugin.client import Client, DaemonError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: Sequence[str], log: Path | None, endpoint: str | None = None,
          env: Mapping[str, str] | None = None, cwd: Path | None = None
          ) -> tuple[subprocess.Popen, str]:
    """Start ``paintbridge serve --bind ENDPOINT --threads 1 ARGS`` (output to ``log``, or to
    this process's own when None); returns it and ENDPOINT."""
    endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE", **(env or {}))
    cmd = [sys.executable, "-m", "paintbridge.backend", "serve", "--bind", endpoint,
           "--threads", "1", *args]
    if log is None:
        return subprocess.Popen(cmd, env=full_env, cwd=cwd), endpoint
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    return proc, endpoint


def wait_ready(proc: subprocess.Popen, endpoint: str, log: Path | None, timeout: float = 90
               ) -> dict[str, Any]:
    """Its ``hello``; kills it and raises RuntimeError (with its log) if it never answers."""
    deadline = time.monotonic() + timeout
    output = log.read_text(errors="replace") if log else "(see its output above)"
    with Client(endpoint) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output = log.read_text(errors="replace") if log else output
                raise RuntimeError(f"the daemon exited early:\n{output}")
            try:
                return client.hello(timeout=1.0)
            except DaemonError:
                time.sleep(0.2)
    proc.kill()
    proc.wait()
    output = log.read_text(errors="replace") if log else output
    raise RuntimeError(f"the daemon did not answer within {timeout} s:\n{output}")

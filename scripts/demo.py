"""`make demo`: start a daemon, run one `paintbridge edit` round trip, stop the daemon.

Writes demo-out.png (and demo-out.patch.png) in the repository root.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugin.client import Client, DaemonError  # noqa: E402


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def main() -> int:
    endpoint = free_endpoint()
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    daemon = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--bind", endpoint],
                              cwd=ROOT, env=env)
    try:
        with Client(endpoint) as client:
            deadline = time.monotonic() + 120
            while True:
                if daemon.poll() is not None:
                    print("demo: the daemon exited early", file=sys.stderr)
                    return 1
                try:
                    hello = client.hello(timeout=1)
                    break
                except DaemonError:
                    if time.monotonic() > deadline:
                        print("demo: the daemon did not answer", file=sys.stderr)
                        return 1
        if not hello["models"]:
            print("demo: the daemon has no usable model (see its output above)", file=sys.stderr)
            return 1
        out = subprocess.run([sys.executable, "-m", "backend", "edit",
                              str(ROOT / "samples" / "sample.png"), "--mask",
                              str(ROOT / "samples" / "mask.png"), "--prompt", "a red circle",
                              "--seed", "1", "-o", str(ROOT / "demo-out.png"), "--endpoint",
                              endpoint], cwd=ROOT, env=env)
        if out.returncode == 0:
            print(f"demo: wrote {ROOT / 'demo-out.png'}")
        return out.returncode
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


if __name__ == "__main__":
    sys.exit(main())

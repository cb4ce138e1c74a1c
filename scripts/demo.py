"""`make demo`: start a daemon, run one `paintbridge edit` round trip, stop the daemon.

Writes demo-out.png (and demo-out.patch.png) in the repository root.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import childdaemon  # noqa: E402


def main() -> int:
    daemon, endpoint = childdaemon.spawn([], None, cwd=ROOT)
    try:
        try:
            hello = childdaemon.wait_ready(daemon, endpoint, None, timeout=120)
        except RuntimeError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
        if not hello["models"]:
            print("demo: the daemon has no usable model (see its output above)", file=sys.stderr)
            return 1
        out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "edit",
                              str(ROOT / "samples" / "sample.png"), "--mask",
                              str(ROOT / "samples" / "mask.png"), "--prompt", "a red circle",
                              "--seed", "1", "-o", str(ROOT / "demo-out.png"), "--endpoint",
                              endpoint], cwd=ROOT)
        if out.returncode == 0:
            print(f"demo: wrote {ROOT / 'demo-out.png'}")
        return out.returncode
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


if __name__ == "__main__":
    sys.exit(main())

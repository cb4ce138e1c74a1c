"""Run the real Krita from pytest: find it, install the plugin into isolated folders, run
``kritarunner`` (offscreen) or the full ``krita`` under ``xvfb-run``, always bounded by
``timeout -k`` so a hung Krita never hangs the suite.

Recipes and pitfalls: ../shared/notes/hosts.md. `make test` installs Krita with
scripts/ensure_krita.sh; without it these tests skip and say why.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"   # the Python Krita embeds on Debian/Ubuntu


def require_krita(full: bool = False) -> None:
    """Skip (with the reason and the fix) when Krita or its test tools are missing."""
    tools = ["kritarunner", "timeout"] + (["krita", "xvfb-run"] if full else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"Krita test tools missing: {', '.join(missing)} "
                    "(run scripts/ensure_krita.sh as root)")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import zmq"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Krita's Python cannot import zmq: apt-get install python3-zmq")


@dataclass
class KritaHome:
    """Isolated XDG folders for one Krita, with the plugin installed the user's way."""

    root: Path

    @property
    def resources(self) -> Path:
        return self.root / "data" / "krita"

    @property
    def pykrita(self) -> Path:
        return self.resources / "pykrita"

    @property
    def config(self) -> Path:
        return self.root / "config"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, XDG_CONFIG_HOME=str(self.config),
                   XDG_DATA_HOME=str(self.root / "data"), XDG_CACHE_HOME=str(self.root / "cache"),
                   XDG_STATE_HOME=str(self.root / "state"), HF_HUB_OFFLINE="1",
                   OMP_WAIT_POLICY="PASSIVE")
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PAINTBRIDGE_ENDPOINT",
                    "PAINTBRIDGE_SERVER_KEY", "PAINTBRIDGE_CLIENT_KEY"):
            env.pop(var, None)
        env.update(extra)
        return env

    def install(self) -> str:
        """``paintbridge install krita --resources …``, exactly as a user runs it."""
        done = subprocess.run([sys.executable, "-m", "paintbridge.backend", "install", "krita",
                               "--resources", str(self.resources)], env=self.env(),
                              capture_output=True, text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr


def run_bounded(cmd: list[str], env: dict[str, str], limit: int, log: Path,
                cwd: Path | None = None) -> int:
    """Run with ``timeout -k 10 limit``; output into ``log``; returns the exit code."""
    with open(log, "wb") as out:
        return subprocess.run(["timeout", "-k", "10", str(limit), *cmd], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=cwd).returncode


def kritarunner(home: KritaHome, module: str, args: list[str], limit: int = 240) -> int:
    env = home.env(QT_QPA_PLATFORM="offscreen",
                   PYTHONPATH=os.pathsep.join([str(home.pykrita), str(HERE)]))
    return run_bounded(["kritarunner", "-s", module, *args], env, limit,
                       home.root / f"kritarunner-{module}.log", cwd=home.root)


def run_krita_gui(home: KritaHome, env: dict[str, str], limit: int) -> tuple[int, str]:
    """Full ``krita --nosplash`` under ``xvfb-run`` (a test driver in ``env`` runs inside
    it); returns the exit code and the log."""
    env = dict(env)
    env.pop("QT_QPA_PLATFORM", None)
    # Krita is a single application by default: a second krita (another test's, or a
    # developer's) hands its arguments to the first through a local socket and exits 0, so
    # the driver never runs. Each test's Krita is its own instance.
    home.config.mkdir(parents=True, exist_ok=True)
    display_rc = home.config / "kritadisplayrc"
    if "EnableSingleApplication" not in (display_rc.read_text() if display_rc.is_file() else ""):
        with open(display_rc, "a") as rc_file:
            rc_file.write("[General]\nEnableSingleApplication=false\n")
    rc, log = 0, ""
    for _attempt in range(2):   # a display number taken by a parallel Xvfb: retry
        display = str(random.randint(100, 900))
        rc = run_bounded(["xvfb-run", "-a", "-n", display, "-s", "-screen 0 1600x1000x24",
                          "krita", "--nosplash"], env, limit, home.root / "krita.log",
                         cwd=home.root)
        log = (home.root / "krita.log").read_text(errors="replace")
        if "could not connect to display" not in log:
            break
    return rc, log

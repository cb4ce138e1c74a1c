"""Start a local daemon from inside a host: the "Start local daemon" button.

The installer records the command that runs ``paintbridge`` in ``paintbridge-install.json``
next to the installed ``plugin`` package; the daemon is started detached (its own session),
so it outlives the docker, the dialog and the host itself, and logs to a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RECORD_NAME = "paintbridge-install.json"


def install_record(search_from: Path | None = None) -> dict[str, Any] | None:
    """The installer's record: next to this package (as installed), or None."""
    here = search_from or Path(__file__).resolve().parent.parent
    path = here / RECORD_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def serve_command(endpoint: str, record: dict[str, Any] | None = None) -> list[str] | None:
    """The command line that starts a daemon on ``endpoint``, or None if none is known."""
    record = record if record is not None else install_record()
    command = (record or {}).get("command")
    if not isinstance(command, list) or not command or not Path(command[0]).exists():
        return None
    return [*command, "serve", "--bind", endpoint]


def log_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA", base)
    return Path(base) / "paintbridge" / "daemon.log"


def start_daemon(endpoint: str, record: dict[str, Any] | None = None) -> subprocess.Popen:
    """Start ``paintbridge serve`` in the background, detached from the host process.
    Raises FileNotFoundError with a user-facing message when no executable is recorded."""
    cmd = serve_command(endpoint, record)
    if cmd is None:
        raise FileNotFoundError("paintbridge is not installed for this plugin: run "
                                "`paintbridge install krita` (or gimp) from the paintbridge "
                                "folder, or start `paintbridge serve` yourself")
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    for var in ("PYTHONPATH", "PYTHONHOME"):  # the host's Python settings are not ours
        env.pop(var, None)
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, close_fds=True, **kwargs)

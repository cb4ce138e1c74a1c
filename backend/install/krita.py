"""``paintbridge install krita``: lay the plugin into Krita's pykrita folder and enable it.

What is copied: ``krita/paintbridge.desktop``, ``krita/paintbridge/`` and the ``plugin``
package inside it (``pykrita/paintbridge/plugin``, so no generic top-level name is added to
Krita's ``sys.path``), the record of how to start this installation's daemon, and
``actions/paintbridge.action`` (default shortcuts; Krita reads them only from there). Every
file goes into a manifest, and the kritarc line we add is recorded too, so ``--uninstall``
removes exactly that.

pyzmq for Krita's Python: Linux packages of Krita embed the system Python, so
``/usr/bin/python3 -c "import zmq"`` decides and the apt command is printed when it fails.
Krita for Windows and macOS bundles its own Python: the matching pyzmq wheel is downloaded
and unpacked into ``pykrita/paintbridge/vendor``, which the plugin puts on ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .common import Manifest, uninstall, vendor_pyzmq

KRITA_SOURCE = Path(__file__).resolve().parents[2] / "krita"
PLUGIN_ID = "paintbridge"          # X-KDE-Library in the .desktop file
MANIFEST_NAME = "paintbridge.manifest.json"
ENABLE_KEY = f"enable_{PLUGIN_ID}"
#: Python that Krita 5.2 bundles on Windows and macOS (override: PAINTBRIDGE_KRITA_PYTHON),
#: and the wheel platforms to try.
BUNDLED_PYTHON = "3.10"
WHEEL_PLATFORMS = {
    "win32": ["win_amd64"],
    "darwin": ["macosx_10_15_universal2", "macosx_10_9_universal2", "macosx_11_0_arm64",
               "macosx_10_9_x86_64"],
}
APT_ZMQ = "sudo apt-get install python3-zmq"


def default_resources(platform: str = sys.platform, env: dict[str, str] | None = None) -> Path:
    """Krita's resource folder (it holds ``pykrita``), per OS."""
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if platform == "win32":
        return Path(env.get("APPDATA") or home / "AppData" / "Roaming") / "krita"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "krita"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "krita"


def default_kritarc(platform: str = sys.platform, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    home = Path(env.get("HOME") or Path.home())
    if platform == "win32":
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "kritarc"
    if platform == "darwin":
        return home / "Library" / "Preferences" / "kritarc"
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kritarc"


# ------------------------------------------------------------------------ kritarc


def set_rc_key(text: str, section: str, key: str, value: str | None) -> tuple[str, str | None]:
    """Set (or with ``value=None`` remove) ``key`` in ``[section]`` of a KConfig file,
    leaving every other line as it was. Returns the new text and the old value."""
    lines = text.splitlines()
    header = f"[{section}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        if value is None:
            return text, None
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, f"{key}={value}"]
        return "\n".join(lines) + "\n", None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
               len(lines))
    old = None
    for i in range(start + 1, end):
        name, sep, current = lines[i].partition("=")
        if sep and name.strip() == key:
            old = current.strip()
            if value is None:
                del lines[i]
            else:
                lines[i] = f"{key}={value}"
            return "\n".join(lines) + "\n", old
    if value is not None:
        insert = end
        while insert > start + 1 and not lines[insert - 1].strip():
            insert -= 1
        lines.insert(insert, f"{key}={value}")
    return "\n".join(lines) + "\n", old


def enable_in_kritarc(kritarc: Path) -> str | None:
    """Turn the plugin on in Krita's Python Plugin Manager; returns the previous value."""
    text = kritarc.read_text() if kritarc.is_file() else ""
    new, old = set_rc_key(text, "python", ENABLE_KEY, "true")
    kritarc.parent.mkdir(parents=True, exist_ok=True)
    kritarc.write_text(new)
    return old


def restore_kritarc(kritarc: Path, old: str | None) -> None:
    if not kritarc.is_file():
        return
    new, _ = set_rc_key(kritarc.read_text(), "python", ENABLE_KEY, old)
    kritarc.write_text(new)


# ------------------------------------------------------------------------ pyzmq


def system_python_has_zmq(python: str = "/usr/bin/python3") -> bool | None:
    """True/False, or None when there is no system Python to ask."""
    if not Path(python).exists():
        return None
    try:
        done = subprocess.run([python, "-c", "import zmq"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# ------------------------------------------------------------------------ commands


def install(resources: Path, kritarc: Path, platform: str = sys.platform) -> int:
    pykrita = resources / "pykrita"
    manifest_path = pykrita / MANIFEST_NAME
    if manifest_path.is_file():          # reinstall: remove the previous copy first
        remove(resources, kritarc, quiet=True)
    manifest = Manifest(manifest_path)
    created = [d for d in (pykrita, *pykrita.parents) if not d.exists()]
    pykrita.mkdir(parents=True, exist_ok=True)
    manifest.dirs += [str(d) for d in reversed(created)]
    target = pykrita / PLUGIN_ID
    manifest.copy_file(KRITA_SOURCE / f"{PLUGIN_ID}.desktop", pykrita / f"{PLUGIN_ID}.desktop")
    for item in sorted((KRITA_SOURCE / PLUGIN_ID).rglob("*")):
        if item.is_file() and item.suffix not in (".pyc", ".action") and \
                "__pycache__" not in item.parts:
            manifest.copy_file(item, target / item.relative_to(KRITA_SOURCE / PLUGIN_ID))
    manifest.copy_client_package(target)
    manifest.copy_file(KRITA_SOURCE / PLUGIN_ID / f"{PLUGIN_ID}.action",   # default shortcuts
                       resources / "actions" / f"{PLUGIN_ID}.action")
    print(f"paintbridge: Krita plugin installed in {target}")
    status = 0
    if platform in WHEEL_PLATFORMS:
        version = os.environ.get("PAINTBRIDGE_KRITA_PYTHON", BUNDLED_PYTHON)
        try:
            wheel = vendor_pyzmq(manifest, target / "vendor", version, WHEEL_PLATFORMS[platform])
            print(f"  pyzmq for Krita's Python {version}: {wheel} -> {target / 'vendor'}")
        except OSError as exc:
            print(f"paintbridge: could not fetch pyzmq for Krita's Python ({exc}); the "
                  "plugin will say so when Krita starts", file=sys.stderr)
            status = 1
    else:
        has = system_python_has_zmq()
        if has is False:
            print("paintbridge: Krita's Python (the system python3) cannot import zmq. "
                  f"Install it with:\n    {APT_ZMQ}", file=sys.stderr)
        elif has is None:
            print("paintbridge: no /usr/bin/python3 found; Krita's Python needs pyzmq "
                  f"(Debian/Ubuntu: {APT_ZMQ})", file=sys.stderr)
    rc_created = not kritarc.exists()
    old = enable_in_kritarc(kritarc)
    print(f"paintbridge: enabled in {kritarc} (restart Krita; the docker is under "
          "Settings ▸ Dockers ▸ Paintbridge)")
    manifest.save({"kritarc": str(kritarc), "kritarc_previous": old,
                   "kritarc_created": rc_created})
    return status


def remove(resources: Path, kritarc: Path, quiet: bool = False) -> int:
    manifest_path = resources / "pykrita" / MANIFEST_NAME
    if not manifest_path.is_file():
        print(f"paintbridge: nothing to uninstall ({manifest_path} not found)", file=sys.stderr)
        return 1
    data = json.loads(manifest_path.read_text())
    removed = uninstall(manifest_path)
    for d in sorted(data.get("dirs", []), key=len, reverse=True):   # the manifest's own
        p = Path(d)                                                  # folder, now empty
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    rc = Path(data.get("kritarc") or kritarc)
    restore_kritarc(rc, data.get("kritarc_previous"))
    if data.get("kritarc_created") and rc.is_file() and rc.read_text().strip() in ("",
                                                                                 "[python]"):
        rc.unlink()
    if not quiet:
        print(f"paintbridge: removed {len(removed)} files and folders from "
              f"{resources / 'pykrita'}")
    return 0


def run(args: argparse.Namespace) -> int:
    resources = Path(args.resources).expanduser() if args.resources else default_resources()
    kritarc = default_kritarc()
    if args.uninstall:
        return remove(resources, kritarc)
    return install(resources, kritarc)

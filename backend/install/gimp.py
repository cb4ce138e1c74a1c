"""`paintbridge install gimp`: lay the GIMP 3 plug-in and the ``plugin`` package into GIMP's
plug-ins folder, and check that GIMP's Python can import pyzmq.

GIMP 3 runs each plug-in from its own folder ``plug-ins/<name>/<name>.py``, so everything
goes into ``plug-ins/paintbridge/``; the manifest that ``--uninstall`` reads sits beside it
as a hidden file, so uninstalling removes that folder too.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from .common import Manifest, uninstall, vendor_pyzmq

SOURCE = Path(__file__).resolve().parents[2] / "gimp" / "paintbridge"
NAME = "paintbridge"
MANIFEST = ".paintbridge-gimp-manifest.json"
VENDOR = "vendor"              # beside paintbridge.py, put first on sys.path by it
#: "3.12" or "3.12 manylinux_2_28_x86_64 ...": vendor pyzmq for that Python, found or not
PYTHON_ENV = "PAINTBRIDGE_GIMP_PYTHON"
FLATPAK_APP = "org.gimp.GIMP"


def default_plug_ins() -> Path:
    """GIMP 3.0's per-user plug-ins folder on this OS (the Flatpak one when only it exists)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", home / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        flatpak = home / ".var" / "app" / "org.gimp.GIMP" / "config"
        if not (base / "GIMP").exists() and (flatpak / "GIMP").exists():
            base = flatpak
    return base / "GIMP" / "3.0" / "plug-ins"


def _linux_tags(machine: str) -> list[str]:
    return [f"manylinux_2_28_{machine}", f"manylinux_2_17_{machine}",
            f"manylinux2014_{machine}"]


def bundled_python(plug_ins: Path) -> tuple[str, list[str]] | None:
    """(version, wheel platform tags) of a Python that GIMP bundles, when this GIMP has one:
    the Flatpak's and macOS GIMP.app's (their own CPython, so PyPI's wheels fit). None for
    the system Python of Linux packages. ``$PAINTBRIDGE_GIMP_PYTHON`` overrides."""
    forced = os.environ.get(PYTHON_ENV, "").split()
    if forced:
        return forced[0], forced[1:] or _linux_tags(platform.machine())
    if sys.platform == "darwin":
        libs = sorted(glob.glob("/Applications/GIMP*.app/Contents/Resources/lib/python3.*")
                      + glob.glob(str(Path.home() / "Applications" / "GIMP*.app" / "Contents"
                                      / "Resources" / "lib" / "python3.*")))
        if libs:
            version = Path(libs[-1]).name.removeprefix("python")
            return version, ["macosx_10_15_universal2", "macosx_11_0_arm64",
                             "macosx_10_15_x86_64", "macosx_10_9_x86_64"]
        return None
    if ".var/app/" + FLATPAK_APP in plug_ins.as_posix() and shutil.which("flatpak"):
        probe = subprocess.run(
            ["flatpak", "run", "--command=python3", FLATPAK_APP, "-c",
             "import sys, platform; print('%d.%d' % sys.version_info[:2], platform.machine())"],
            capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.split():
            version, machine = probe.stdout.split()[:2]
            return version, _linux_tags(machine)
    return None


def pyzmq_advice(plug_ins: Path) -> str | None:
    """None when GIMP's Python can import zmq; else what to install, by name."""
    if sys.platform == "win32":
        return ("GIMP for Windows bundles an MSYS2 build of Python, for which PyPI has no "
                "pyzmq wheel: paintbridge cannot vendor one. Copy pyzmq from MSYS2's "
                "mingw-w64-clang-x86_64-python-pyzmq package into GIMP's Python, or use GIMP "
                "on Linux.")
    if sys.platform == "darwin" or ".var/app/" + FLATPAK_APP in plug_ins.as_posix():
        return ("GIMP bundles its own Python here but paintbridge could not find out which: "
                f"set {PYTHON_ENV}=3.X (its version) and install again to vendor pyzmq.")
    # GIMP starts `#!/usr/bin/env python3` plug-ins with the desktop's PATH: the system one.
    python3 = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3")
    if python3 is None:
        return "no python3 on PATH: GIMP 3's Python plug-ins need the system's python3"
    found = subprocess.run([python3, "-c", "import zmq"], capture_output=True).returncode == 0
    if found:
        return None
    return (f"{python3} cannot import zmq, and GIMP runs Python plug-ins with it: install "
            "pyzmq for it (Debian/Ubuntu: `sudo apt install python3-zmq`; Fedora: "
            "`sudo dnf install python3-zmq`; Arch: `sudo pacman -S python-pyzmq`)")


def install(plug_ins: Path) -> tuple[Path, str | None]:
    """Copy the plug-in (and pyzmq, where GIMP bundles its own Python); a previous install is
    removed first. Returns the plug-in folder and the vendored wheel's name, if any."""
    manifest_path = plug_ins / MANIFEST
    if manifest_path.exists():
        uninstall(manifest_path)
    target = plug_ins / NAME
    if target.exists():
        raise FileExistsError(f"{target} exists and was not installed by paintbridge: "
                              "move it away first")
    manifest = Manifest(manifest_path)
    manifest._mkdir(plug_ins)
    manifest.copy_tree(SOURCE, target)
    manifest.copy_client_package(target)
    script = target / f"{NAME}.py"
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    wheel = None
    bundled = bundled_python(plug_ins)
    try:
        if bundled is not None:
            wheel = vendor_pyzmq(manifest, target / VENDOR, *bundled)
    finally:
        manifest.save({"host": "gimp", "plug_ins": str(plug_ins), "vendored": wheel})
    return target, wheel


def run(args: argparse.Namespace) -> int:
    plug_ins = Path(args.plug_ins).expanduser() if args.plug_ins else default_plug_ins()
    if args.uninstall:
        try:
            removed = uninstall(plug_ins / MANIFEST)
        except FileNotFoundError as exc:
            print(f"paintbridge: {exc}", file=sys.stderr)
            return 1
        print(f"paintbridge: removed {len(removed)} files and folders from {plug_ins}")
        return 0
    try:
        target, wheel = install(plug_ins)
    except OSError as exc:   # FileExistsError included
        print(f"paintbridge: {exc}", file=sys.stderr)
        return 1
    print(f"paintbridge: GIMP 3 plug-in installed in {target}")
    if wheel:
        print(f"  vendored {wheel} for GIMP's own Python into {target / VENDOR}")
    else:
        advice = pyzmq_advice(plug_ins)
        if advice:
            print(f"paintbridge: warning: {advice}", file=sys.stderr)
    print("paintbridge: restart GIMP, then use Filters ▸ Paintbridge")
    return 0

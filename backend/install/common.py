"""What both host installers share: copy files while recording them in a manifest, so
``--uninstall`` removes exactly what was installed and nothing else; and pyzmq for a host
that bundles its own Python."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from paintbridge.plugin import __version__
from paintbridge.plugin.launcher import RECORD_NAME

PLUGIN_PACKAGE = Path(__file__).resolve().parents[2] / "plugin"


def serve_command() -> list[str]:
    """How the host should start this installation's daemon (recorded for the launcher)."""
    scripts = Path(sys.executable).parent
    for name in ("paintbridge", "paintbridge.exe"):
        if (scripts / name).is_file():
            return [str(scripts / name)]
    return [sys.executable, "-m", "paintbridge.backend"]


class Manifest:
    """Files and folders an install created, written as JSON into the target folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: list[str] = []
        self.dirs: list[str] = []

    def _mkdir(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self.dirs.append(str(d))

    def copy_file(self, src: Path, dst: Path) -> None:
        self._mkdir(dst.parent)
        shutil.copy2(src, dst)
        self.files.append(str(dst))

    def copy_tree(self, src: Path, dst: Path) -> None:
        for item in sorted(src.rglob("*")):
            if "__pycache__" in item.parts or item.suffix == ".pyc" or not item.is_file():
                continue
            self.copy_file(item, dst / item.relative_to(src))

    def write_text(self, dst: Path, text: str) -> None:
        self._mkdir(dst.parent)
        dst.write_text(text)
        self.files.append(str(dst))

    def copy_client_package(self, dest_dir: Path) -> None:
        """The host-agnostic ``plugin`` package plus the record of how to start the daemon."""
        self.copy_tree(PLUGIN_PACKAGE, dest_dir / "plugin")
        record: dict[str, Any] = {"version": __version__, "command": serve_command()}
        self.write_text(dest_dir / RECORD_NAME, json.dumps(record, indent=2))

    def save(self, extra: dict[str, Any] | None = None) -> None:
        data = {"version": __version__, "files": self.files, "dirs": self.dirs, **(extra or {})}
        self.path.write_text(json.dumps(data, indent=2))


def uninstall(manifest_path: Path) -> list[str]:
    """Remove what the manifest lists (files, then the folders it created, if empty)."""
    if not manifest_path.is_file():
        raise FileNotFoundError(f"nothing to uninstall: {manifest_path} not found")
    data = json.loads(manifest_path.read_text())
    removed = []
    for f in data.get("files", []):
        p = Path(f)
        if p.is_file() or p.is_symlink():
            p.unlink()
            removed.append(f)
        cache = p.parent / "__pycache__"   # Python's own byproduct of running what we copied
        if cache.is_dir():
            shutil.rmtree(cache, ignore_errors=True)
    for d in sorted(data.get("dirs", []), key=len, reverse=True):
        p = Path(d)
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
            removed.append(d)
    manifest_path.unlink()
    return removed


def pip_download_command(python_version: str, platforms: list[str], dest: Path,
                         python: str = sys.executable) -> list[str]:
    """pip's command for a pyzmq wheel that a host's bundled Python can import: binary only
    (the host has no compiler), the newest release with a wheel for that Python. pip's own
    settings (index, proxy, find-links) apply."""
    cmd = [python, "-m", "pip", "download", "--only-binary", ":all:", "--no-deps",
           "--implementation", "cp", "--python-version", python_version]
    for tag in platforms:
        cmd += ["--platform", tag]
    return [*cmd, "--dest", str(dest), "pyzmq"]


def vendor_pyzmq(manifest: Manifest, dest: Path, python_version: str,
                 platforms: list[str]) -> str:
    """Download the pyzmq wheel (libzmq inside) for a host's bundled Python and unpack it
    into ``dest``, recorded in ``manifest``; returns the wheel's name. OSError when pip
    finds none, with pip's last words."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = pip_download_command(python_version, platforms, Path(tmp))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"could not download pyzmq for Python {python_version}: pip took "
                          f"longer than {exc.timeout:g} s") from exc
        wheels = sorted(Path(tmp).glob("pyzmq-*.whl"))
        if done.returncode != 0 or not wheels:
            raise OSError(f"could not download pyzmq for Python {python_version} "
                          f"({', '.join(platforms)}): {done.stderr.strip()[-500:]}")
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(unpacked)
        manifest.copy_tree(unpacked, dest)
        return wheels[0].name

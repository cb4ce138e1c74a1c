"""The host's side of the GIMP tests: the trixie chroot with GIMP 3 (built once by
scripts/ensure_gimp_chroot.sh), a fresh GIMP profile holding the plug-in as
`paintbridge install gimp` lays it, and GIMP run in batch mode on a script of this folder.
Unlike cases.py and ui_cases.py beside it, this runs on the host, not inside GIMP; so do
the helpers at the end, which read what those scripts recorded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ENSURE = ROOT / "scripts" / "ensure_gimp_chroot.sh"
#: the scripts that run inside GIMP, copied into each profile's work folder
SCRIPTS = [HERE / "cases.py", HERE / "ui_cases.py", HERE / "images.py"]
EMBEDDED = ROOT / "backend" / "default_model" / "model_index.json"
GIMP_TIMEOUT_S = 300


def ensure_chroot() -> Path:
    out = subprocess.run(["sh", str(ENSURE)], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, f"ensure_gimp_chroot.sh failed:\n{out.stdout}\n{out.stderr}"
    chroot = Path(out.stdout.strip().splitlines()[-1])
    assert (chroot / "usr" / "bin" / "gimp-console-3.0").exists(), out.stdout
    return chroot


def daemon_args(request: pytest.FixtureRequest) -> list[str]:
    """The embedded default model when it is there (PAINTBRIDGE_GIMP_MODEL=tiny overrides);
    else the tiny inpainting model."""
    if EMBEDDED.is_file() and os.environ.get("PAINTBRIDGE_GIMP_MODEL") != "tiny":
        return []
    tiny = request.getfixturevalue("tiny_models")
    return ["--models", str(tiny.models_dir), "--default-model", "tiny-inpainting",
            "--no-embedded"]


def paintbridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", *args], capture_output=True,
                          text=True, timeout=60)


def gimp_command(chroot: Path, inside: str, script: str, env: dict[str, str]) -> list[str]:
    """gimp-console-3.0 in the chroot with a clean environment, running ``script`` (a path
    inside the chroot) in GIMP's Python batch interpreter."""
    base = {"HOME": f"{inside}/home", "PB_OUT": inside,
            "PB_PLUG_IN_DIR": f"{inside}/home/.config/GIMP/3.0/plug-ins",
            "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return ["chroot", str(chroot), "env", "-i",
            *(f"{k}={v}" for k, v in {**base, **env}.items()),
            "gimp-console-3.0", "-i", "--batch-interpreter", "python-fu-eval", "-b",
            f"exec(open('{script}').read())", "--quit"]


def run_gimp(chroot: Path, inside: str, script: str, env: dict[str, str]
             ) -> subprocess.CompletedProcess:
    return subprocess.run(gimp_command(chroot, inside, script, env), capture_output=True,
                          text=True, timeout=GIMP_TIMEOUT_S)


def popen_gimp(chroot: Path, inside: str, script: str, env: dict[str, str], log: IO[bytes]
               ) -> subprocess.Popen:
    """Like run_gimp, but returns at once (for tests that act while GIMP runs)."""
    return subprocess.Popen(gimp_command(chroot, inside, script, env), stdout=log,
                            stderr=subprocess.STDOUT)


def fresh_profile(chroot: Path, prefix: str) -> tuple[Path, str, Path]:
    """A work folder inside the chroot with a GIMP profile holding the plug-in (installed by
    the CLI) and the batch scripts: (work, the same folder seen from inside, plug-ins)."""
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=chroot / "tmp"))
    inside = "/" + str(work.relative_to(chroot))           # the same folder seen from inside
    plug_ins = work / "home" / ".config" / "GIMP" / "3.0" / "plug-ins"
    installed = paintbridge("install", "gimp", "--plug-ins", str(plug_ins))
    if installed.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
    assert installed.returncode == 0, installed.stderr
    for script in SCRIPTS:
        shutil.copy(script, work / script.name)
    return work, inside, plug_ins


# ------------------------------------------------- reading what the cases recorded

def result(cases: dict[str, Any], name: str) -> dict[str, Any]:
    res = cases["results"][name]
    assert "exception" not in res, res["exception"]
    return res


def assert_untouched(res: dict[str, Any]) -> None:
    """The user's layers, layer mask, selection, size and precision are as before."""
    assert res["after"] == res["before"]


def assert_one_result_above(res: dict[str, Any], below: str) -> str:
    names = [n["name"] for n in res["tree"]]
    assert len(names) == 3 and names[names.index(below) - 1] not in ("top", "bottom"), names
    return names[names.index(below) - 1]


def assert_changed_inside_only(res: dict[str, Any]) -> None:
    c = res["changes"]
    assert c["outside"] == 0, c
    assert c["inside"] >= 0.9 * c["inside_total"], c

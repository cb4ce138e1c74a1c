"""The built wheel, as a user installs it: one import name, a working daemon and client.

The wheel goes into a fresh venv whose only other entry is the dependencies of the test
venv (a .pth line, so torch and diffusers are not installed twice); nothing of the source
tree is on its path, and everything runs from a folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools import childdaemon

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the tree (setuptools' build/ folder would otherwise carry files
    of earlier builds into it)."""
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("src") / "tree"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".typecheck", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(src)], check=True,
                   capture_output=True, timeout=300)
    (found,) = out.glob("paintbridge-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; returns its bin folder."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    deps = subprocess.run([sys.executable, "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    Path(site, "zz-test-deps.pth").write_text(deps + "\n")
    return root / "bin"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE", XDG_CONFIG_HOME=str(tmp / "xdg"),
               HOME=str(tmp))
    return env


def test_the_wheel_holds_one_import_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"paintbridge"}
    shipped = {n for n in names if n.endswith(".py")}
    assert "paintbridge/plugin/protocol.py" in shipped
    assert "paintbridge/backend/door/daemon.py" in shipped
    assert "paintbridge/krita/paintbridge/__init__.py" in shipped          # for install krita
    assert "paintbridge/gimp/paintbridge/paintbridge.py" in shipped        # for install gimp
    assert not any(n.startswith(("tools/", "paintbridge/tools/", "tests/")) for n in names)
    assert not any("training" in n or "tiny_models" in n or "ldm_convert" in n
                   or "childdaemon" in n or "__pycache__" in n for n in names)
    assert any(n.startswith("paintbridge/backend/default_model/unet/") for n in names)
    sample = "paintbridge/backend/default_controlnets/shapes-scribble/"   # its ControlNet
    assert {sample + "config.json", sample + "diffusion_pytorch_model.safetensors"} <= set(names)
    assert "paintbridge/backend/configs/controlnet_v1/config.json" in names


def test_installed_wheel_serves_and_edits(fresh: Path, tmp_path: Path) -> None:
    env, python = _env(tmp_path), str(fresh / "python")
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u, paintbridge.backend, paintbridge.plugin;"
         "print([m for m in ('backend', 'plugin', 'tools') if u.find_spec(m)]);"
         "print(paintbridge.backend.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    found, location = probe.stdout.splitlines()
    assert found == "[]"                     # `import backend` / `import plugin` fail here
    assert str(fresh.parent) in location and str(REPO) not in location
    version = subprocess.run([fresh / "paintbridge", "--version"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("paintbridge ")

    endpoint = f"tcp://127.0.0.1:{childdaemon.free_port()}"
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([fresh / "paintbridge", "serve", "--bind", endpoint,
                                   "--threads", "1"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        childdaemon.wait_ready(daemon, endpoint, log)
        result = tmp_path / "out.png"
        edit = subprocess.run([fresh / "paintbridge", "edit", str(SAMPLES / "sample.png"),
                               "--mask", str(SAMPLES / "mask.png"), "--prompt", "a red circle",
                               "--seed", "1", "--endpoint", endpoint, "-o", str(result)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert edit.returncode == 0, edit.stdout + edit.stderr
    finally:
        daemon.terminate()
        daemon.wait(30)
    before = np.asarray(Image.open(SAMPLES / "sample.png").convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(result).convert("RGB"), dtype=np.int16)
    mask = np.asarray(Image.open(SAMPLES / "mask.png").convert("L")) > 127
    assert after.shape == before.shape
    assert np.abs(after - before)[mask].mean() > 10           # the selection was repainted
    ys, xs = np.nonzero(mask)                 # the selection, grown and feathered a little
    far = np.ones_like(mask)
    far[max(ys.min() - 16, 0):ys.max() + 17, max(xs.min() - 16, 0):xs.max() + 17] = False
    assert np.abs(after - before)[far].max() == 0              # nothing else changed


def test_installed_wheel_lays_in_the_host_plugins(fresh: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    done = subprocess.run([fresh / "paintbridge", "install", "krita", "--resources",
                           str(tmp_path / "krita")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    pykrita = tmp_path / "krita" / "pykrita"
    assert (pykrita / "paintbridge.desktop").is_file()
    assert (pykrita / "paintbridge" / "plugin" / "protocol.py").is_file()

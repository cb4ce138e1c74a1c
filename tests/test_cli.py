"""`paintbridge edit` and `paintbridge models` as a user or a script runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintbridge.backend.cli import ExitCode
from paintbridge.backend.edit import progress_line
from paintbridge.plugin.client import Job

from .conftest import DaemonProc, free_port


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    img = np.zeros((120, 160, 4), np.uint8)
    img[..., 0] = 200
    img[..., 1] = np.linspace(0, 255, 160)[None, :]
    img[..., 3] = 255
    mask = np.zeros((120, 160), np.uint8)
    mask[40:80, 50:110] = 255
    paths = {"image": tmp_path / "in.png", "mask": tmp_path / "mask.png",
             "small": tmp_path / "small.png", "out": tmp_path / "out.png"}
    Image.fromarray(img).save(paths["image"])
    Image.fromarray(mask).save(paths["mask"])
    Image.fromarray(mask[:10, :10]).save(paths["small"])
    return paths


def test_edit_inpaint_writes_composite_and_patch(daemon: DaemonProc, files) -> None:
    out = cli("edit", str(files["image"]), "--mask", str(files["mask"]), "--prompt",
              "a red circle", "--seed", "7", "--steps", "3", "--grow", "0", "--feather", "0",
              "-o", str(files["out"]), "--endpoint", daemon.endpoint)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    (res,) = summary["results"]
    assert res["seed"] == 7 and (res["x"], res["y"], res["width"], res["height"]) == \
        (50, 40, 60, 40)
    before = np.asarray(Image.open(files["image"]))
    after = np.asarray(Image.open(files["out"]))
    mask = np.asarray(Image.open(files["mask"])) > 0
    assert (after[~mask] == before[~mask]).all()          # nothing outside the selection
    assert (after[mask] != before[mask]).any()
    patch = np.asarray(Image.open(res["patch"]))
    assert patch.shape == (40, 60, 4) and (patch[..., 3] == 255).all()


def test_edit_img2img_and_count(daemon: DaemonProc, files) -> None:
    out = cli("edit", str(files["image"]), "--prompt", "blue", "--strength", "0.5",
              "--steps", "4", "--count", "2", "--seed", "1", "-o", str(files["out"]),
              "--endpoint", daemon.endpoint)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    assert [r["seed"] for r in results] == [1, 2]
    assert Path(results[1]["output"]).name == "out-1.png"
    assert all(Path(r["patch"]).is_file() for r in results)


def test_models_lists_json(daemon: DaemonProc) -> None:
    out = cli("models", "--json", "--endpoint", daemon.endpoint)
    assert out.returncode == 0, out.stderr
    assert {"tiny-v1", "single-xl_base"} <= {m["name"] for m in json.loads(out.stdout)}


def test_exit_codes(daemon: DaemonProc, files) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    out = cli("edit", str(files["image"]), "--prompt", "x", "-o", str(files["out"]),
              "--endpoint", dead, "--timeout", "1")
    assert out.returncode == 3 and "no paintbridge daemon" in out.stderr
    out = cli("edit", str(files["image"]), "--mask", str(files["small"]), "--prompt", "x",
              "-o", str(files["out"]), "--endpoint", daemon.endpoint)
    assert out.returncode == 2 and "mask is 10x10" in out.stderr
    out = cli("edit", str(files["image"]), "--prompt", "x", "--model", "nope", "-o",
              str(files["out"]), "--endpoint", daemon.endpoint)
    assert out.returncode == 1 and "unknown model 'nope'" in out.stderr
    out = cli("edit", str(files["image"]), "--prompt", "x", "--strength", "2", "-o",
              str(files["out"]), "--endpoint", daemon.endpoint)
    assert out.returncode == 2 and "strength" in out.stderr
    out = cli("models", "--endpoint", dead, "--timeout", "1")
    assert out.returncode == 3


def test_exit_codes_keep_their_numbers() -> None:
    """Scripts test these numbers; the names are for the code."""
    assert {c.name: int(c) for c in ExitCode} == {"OK": 0, "FAILED": 1, "USAGE": 2,
                                                  "UNREACHABLE": 3, "INTERRUPTED": 130}


def test_progress_line_shows_the_loading_stage() -> None:
    job = Job("j-1", "inpaint")
    job.apply({"event": "accepted", "job": "j-1", "position": 2, "model": "tiny-v1"}, [])
    assert progress_line(job) == "queued (2 ahead)"
    job.apply({"event": "progress", "job": "j-1", "stage": "loading", "model": "tiny-v1"}, [])
    assert progress_line(job) == "loading model tiny-v1…"
    job.apply({"event": "progress", "job": "j-1", "stage": "denoising", "step": 3,
               "total": 6}, [])
    assert progress_line(job) == f"[{'#' * 15}{'.' * 15}] 3/6 steps"

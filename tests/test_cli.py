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
from paintbridge.backend.cli.edit import progress_line
from paintbridge.plugin.client import Job

from .conftest import DaemonProc, TinyModels, free_port, start_daemon


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


def test_edit_upscale_writes_the_enlarged_selection(daemon: DaemonProc, files) -> None:
    """--kind upscale: the mask's bounding box ×3 is the whole output, a new image."""
    out = cli("edit", str(files["image"]), "--mask", str(files["mask"]), "--kind", "upscale",
              "--scale", "3", "--prompt", "", "--steps", "3", "--seed", "2",
              "-o", str(files["out"]), "--endpoint", daemon.endpoint)
    assert out.returncode == 0, out.stderr
    (res,) = json.loads(out.stdout)["results"]
    assert (res["x"], res["y"], res["width"], res["height"]) == (0, 0, 180, 120)
    after = np.asarray(Image.open(files["out"]))
    assert after.shape == (120, 180, 4) and (after[..., 3] == 255).all()
    source = np.asarray(Image.open(files["image"]))[40:80, 50:110, :3].astype(float)
    small = np.asarray(Image.fromarray(after[..., :3]).reduce(3)).astype(float)
    assert np.abs(small - source).mean() < 12     # the same picture, enlarged
    bad = cli("edit", str(files["image"]), "--kind", "upscale", "--scale", "5", "--prompt",
              "", "-o", str(files["out"]), "--endpoint", daemon.endpoint)
    assert bad.returncode == ExitCode.USAGE and "--scale" in bad.stderr


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


def _inpaint(daemon: DaemonProc, image: Path, mask: Path, out: Path, *extra: str
             ) -> subprocess.CompletedProcess:
    return cli("edit", str(image), "--mask", str(mask), "--prompt", "a red circle", "--seed",
               "7", "--steps", "2", "--grow", "0", "--feather", "0", "-o", str(out),
               "--endpoint", daemon.endpoint, *extra)


def test_sixteen_bit_grayscale_keeps_its_range(daemon: DaemonProc, files, tmp_path: Path
                                               ) -> None:
    """A 16-bit mask selects what its 8-bit twin selects (not the whole image); a 16-bit
    image is sent as its grays, not white."""
    mask8 = np.asarray(Image.open(files["mask"]))
    mask16 = tmp_path / "mask16.png"
    Image.fromarray(mask8.astype(np.uint16) * 257).save(mask16)
    gray = np.linspace(0, 65535, 160, dtype=np.float64)[None, :].repeat(120, 0)
    image16 = tmp_path / "gray16.png"
    Image.fromarray(gray.astype(np.uint16)).save(image16)
    assert Image.open(mask16).mode == Image.open(image16).mode == "I;16"
    out = _inpaint(daemon, image16, mask16, tmp_path / "out.png")
    assert out.returncode == 0, out.stderr
    (res,) = json.loads(out.stdout)["results"]
    assert (res["x"], res["y"], res["width"], res["height"]) == (50, 40, 60, 40)
    after = np.asarray(Image.open(tmp_path / "out.png"))
    outside = mask8 == 0
    expected = np.rint(gray / 257.0)
    assert np.abs(after[..., 0][outside] - expected[outside]).max() <= 1   # the grays kept
    assert (after[outside][:, 0] == after[outside][:, 2]).all() and (after[..., 3] == 255).all()


@pytest.mark.parametrize("name, mode", [("out.jpg", "RGB"), ("out.webp", "RGB"),
                                        ("out.tif", "RGBA")])   # WebP stores no opaque alpha
def test_jpeg_webp_and_tiff_outputs(daemon: DaemonProc, files, tmp_path: Path, name: str,
                                    mode: str) -> None:
    out = _inpaint(daemon, files["image"], files["mask"], tmp_path / name)
    assert out.returncode == 0, out.stderr
    written = Image.open(tmp_path / name)
    assert written.mode == mode and written.size == (160, 120)
    assert (tmp_path / f"{Path(name).stem}.patch.png").is_file()   # patches keep alpha
    if name.endswith(".webp"):   # lossless: untouched pixels stay exact
        before = np.asarray(Image.open(files["image"]))
        outside = np.asarray(Image.open(files["mask"])) == 0
        assert (np.asarray(written)[outside] == before[outside][:, :3]).all()


def test_transparent_areas_flattened_into_jpeg_are_announced(daemon: DaemonProc, files,
                                                             tmp_path: Path) -> None:
    img = np.asarray(Image.open(files["image"])).copy()
    img[:10, :10, 3] = 0
    Image.fromarray(img).save(tmp_path / "holes.png")
    out = _inpaint(daemon, tmp_path / "holes.png", files["mask"], tmp_path / "out.jpg")
    assert out.returncode == 0 and "flattened onto white" in out.stderr
    assert (np.asarray(Image.open(tmp_path / "out.jpg"))[:8, :8] > 240).all()


@pytest.mark.parametrize("output, words", [
    ("x", "give a file name ending in .png"), ("x.gif", "give a file name ending in"),
    ("missing/x.png", "no such folder"), (".", "give a file name ending in"),
])
def test_output_path_is_checked_before_the_job_is_sent(files, tmp_path: Path, output: str,
                                                       words: str) -> None:
    """No daemon listens at the endpoint: a usage error (2), not "unreachable" (3), shows
    that the path was checked before anything was sent (or even read)."""
    target = tmp_path / output if output != "." else tmp_path
    out = cli("edit", str(files["image"]), "--prompt", "x", "-o", str(target), "--endpoint",
              f"tcp://127.0.0.1:{free_port()}", "--timeout", "1")
    assert out.returncode == ExitCode.USAGE and words in out.stderr, out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr


def test_frame_beyond_the_daemons_limit_is_too_large_not_a_lost_connection(
        tiny_models: TinyModels, tmp_path: Path) -> None:
    """Its frame (200x200 rgba8, 160 kB) is above what the daemon's transport takes with
    --max-pixels 4096 (128 kB): sent, the daemon would drop the connection."""
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded",
                     "--max-pixels", "4096")
    try:
        Image.fromarray(np.full((200, 200, 4), 99, np.uint8)).save(tmp_path / "big.png")
        out = cli("edit", str(tmp_path / "big.png"), "--prompt", "x", "-o",
                  str(tmp_path / "out.png"), "--endpoint", d.endpoint)
    finally:
        d.stop()
    assert out.returncode == ExitCode.USAGE, out.stderr
    assert "200x200 = 40000 pixels; limit 4096" in out.stderr
    assert "lost the connection" not in out.stderr

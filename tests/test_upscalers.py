"""Upscaler models (backend/models/upscalers.py): found where A1111 and ComfyUI keep them, loaded
by spandrel from .safetensors and from .pth only as plain weights, and proven on the sample
trained here (tools/training/upscaler.py): it restores a 2x downscale far better than
Lanczos. Through a real daemon: a full-resolution job with it, and clear errors."""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paintbridge.backend.models import upscalers
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState
from tools import quality

from .conftest import DaemonProc, start_daemon

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "upscalers" / "pb-compact-x2.safetensors"


def _held_out(side: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A picture not trained on, and its 2x downscale (what an upscaler is given)."""
    pic = quality.test_picture(side, seed=4242)[..., :3]
    hr = torch.from_numpy(np.ascontiguousarray(pic)).permute(2, 0, 1)[None].float() / 255
    lr = F.interpolate(hr, size=(side // 2, side // 2), mode="bicubic", antialias=True,
                       align_corners=False).clamp(0, 1)
    return pic, np.rint(lr[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


@pytest.mark.fast
def test_folders_beside_checkpoints_are_found(tmp_path: Path) -> None:
    a1111 = tmp_path / "webui" / "models"
    (a1111 / "Stable-diffusion").mkdir(parents=True)
    (a1111 / "ESRGAN" / "x4").mkdir(parents=True)
    comfy = tmp_path / "comfy" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "upscale_models").mkdir(parents=True)
    dirs = upscalers.default_dirs([a1111 / "Stable-diffusion", comfy / "checkpoints"])
    assert dirs == [a1111 / "ESRGAN", comfy / "upscale_models"]
    shutil.copy(SAMPLE, a1111 / "ESRGAN" / "x4" / "mine.safetensors")
    (a1111 / "ESRGAN" / "notes.txt").write_text("not a model")
    shutil.copy(SAMPLE, comfy / "upscale_models" / "other.pth")
    lib = upscalers.Upscalers(dirs)
    assert lib.names() == ["x4/mine", "other"]
    with pytest.raises(upscalers.UpscalerError, match="unknown upscaler 'nope'; known: "):
        lib.get("nope")


@pytest.mark.fast
def test_the_sample_beats_lanczos_and_pth_loads_only_as_weights(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = upscalers.load(SAMPLE)
    assert model.scale == 2
    pic, small = _held_out()
    up = upscalers.upscale(model, small)
    from PIL import Image

    lanczos = np.asarray(Image.fromarray(small).resize((128, 128), Image.Resampling.LANCZOS))
    truth = pic / 255.0
    assert quality.psnr(up / 255.0, truth) > quality.psnr(lanczos / 255.0, truth) + 4
    # tiles: a picture larger than a tile comes out as it does in one piece
    big = np.ascontiguousarray(np.tile(small, (4, 4, 1)))
    pieces = upscalers.upscale(model, big)
    monkeypatch.setattr(upscalers, "TILE", 1024)
    whole = upscalers.upscale(model, big)
    assert pieces.shape == whole.shape == (512, 512, 3)
    assert np.abs(pieces.astype(int) - whole).max() <= 1
    # .pth: plain weights load; a pickle that runs code is refused, and nothing runs
    state = {k: v for k, v in model.model.state_dict().items()}
    torch.save(state, tmp_path / "plain.pth")
    assert upscalers.load(tmp_path / "plain.pth").scale == 2
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"params": Evil()}, f)
    with pytest.raises(upscalers.UpscalerError, match="cannot load upscaler evil.pth"):
        upscalers.load(tmp_path / "evil.pth")
    assert not marker.exists()
    (tmp_path / "lora.safetensors").write_bytes(
        (REPO / "samples" / "loras" / "gray.safetensors").read_bytes())
    with pytest.raises(upscalers.UpscalerError, match="cannot load upscaler lora"):
        upscalers.load(tmp_path / "lora.safetensors")


@pytest.fixture(scope="module")
def with_upscalers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("upscalers"), "--upscalers",
                     str(SAMPLE.parent))
    yield d
    d.stop()


def test_a_full_resolution_job_uses_the_upscaler(with_upscalers: DaemonProc) -> None:
    side = 192   # 3x the embedded model's side: a composition pass, upscaled, then tiles
    picture = quality.test_picture(side)
    with Client(with_upscalers.endpoint) as c:
        header = c.request("models")[0]
        assert [u["name"] for u in header["upscalers"]] == ["pb-compact-x2"]
        outs = {}
        for name in ("", "pb-compact-x2"):
            job = c.wait(c.submit(JobRequest("img2img", {"prompt": "", "seed": 2, "strength": 0.7,
                                              "steps": 4, "upscaler": name},
                                             image=Frame(side, side, "rgba8",
                                                         picture.tobytes()))), 600)
            assert job.state is JobState.DONE, job.error_message
            outs[name] = job.patches[0].data
        assert outs[""] != outs["pb-compact-x2"]
        bad = c.wait(c.submit(JobRequest("img2img", {"upscaler": "nope"},
                                         image=Frame(side, side, "rgba8", picture.tobytes()))), 60)
        assert bad.state is JobState.FAILED and bad.error_code == "bad_field"
        assert bad.error_message == "unknown upscaler 'nope'; known: pb-compact-x2"

"""Whatever a model or a device does, the job ends with a clear error and the next job runs.

Each failure is real: a model folder with truncated weights, a paintbridge.json with values
that would fail every job, a device this machine does not have.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from paintbridge.plugin.client import Client, Frame, JobState
from paintbridge.plugin.protocol import ErrorCode

from .conftest import DaemonProc, TinyModels, start_daemon


@pytest.fixture(scope="module")
def broken(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProc]:
    """A daemon whose models folder holds a good model, one with truncated UNet weights
    and one with a paintbridge.json full of mistakes."""
    root = tmp_path_factory.mktemp("broken")
    models = root / "models"
    models.mkdir()
    good = tiny_models.models_dir / "tiny-v1"
    shutil.copytree(good, models / "good")
    shutil.copytree(good, models / "truncated")
    (weights,) = (models / "truncated" / "unet").glob("*.safetensors")
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.copytree(good, models / "odd-defaults")
    (models / "odd-defaults" / "paintbridge.json").write_text(json.dumps(
        {"steps": "many", "guidance": -3, "sampler": "nope", "native_size": 7,
         "dtype": "float8", "stepz": 4}))
    d = start_daemon(root, "--models", str(models), "--no-embedded")
    yield d
    d.stop()


def _image(size: int = 32) -> Frame:
    pixels = np.full((size, size, 4), 128, np.uint8)
    return Frame(size, size, "rgba8", pixels.tobytes())


def _run(client: Client, model: str, steps: int | None = 2) -> object:
    params = {"model": model, "seed": 1} | ({"steps": steps} if steps else {})
    job = client.submit("img2img", params, image=_image())
    client.wait(job, timeout=180)
    return job


def test_a_model_that_fails_to_load_fails_its_job_only(broken: DaemonProc) -> None:
    with Client(broken.endpoint) as client:
        bad = _run(client, "truncated")
        assert bad.state is JobState.FAILED and bad.error_code == ErrorCode.MODEL_ERROR
        assert "truncated" in bad.error_message
        good = _run(client, "good")                  # the same worker takes the next job
        assert good.state is JobState.DONE and good.patches
        again = _run(client, "truncated")            # and the broken one fails the same way
        assert again.error_code == ErrorCode.MODEL_ERROR
    assert broken.proc.poll() is None


def test_a_bad_paintbridge_json_is_named_at_start_and_ignored(broken: DaemonProc) -> None:
    log = broken.output()
    for key in ("steps", "guidance", "sampler", "native_size", "dtype", "stepz"):
        assert f"paintbridge.json: ignoring '{key}'" in log, key
    assert "odd-defaults" in log
    with Client(broken.endpoint) as client:
        job = _run(client, "odd-defaults", steps=None)   # the fallbacks, not the mistakes
        assert job.state is JobState.DONE, job.error_message


@pytest.mark.parametrize("device, words", [("cuda", "no CUDA"), ("cuda:7", "CUDA"),
                                           ("foo", "is not a device"), ("vulkan", "cpu, cuda")])
def test_a_device_that_cannot_work_is_refused_at_start(device: str, words: str) -> None:
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    done = subprocess.run([sys.executable, "-m", "paintbridge.backend", "serve", "--device",
                           device, "--no-embedded", "--bind", "tcp://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent)
    assert done.returncode == 2
    assert words in done.stderr and "Traceback" not in done.stderr + done.stdout

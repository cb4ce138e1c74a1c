"""Whatever a model or a device does, the job ends with a clear error and the next job runs.

The failures are real where real input can cause them: a model folder with truncated
weights, one whose text encoder does not fit its UNet (fails while denoising), one whose
VAE does not fit (fails while decoding the latents), a paintbridge.json with values that
would fail every job, a device this machine does not have. Reading the frames and encoding
the result cannot fail on validated input, so there the daemon's failpoints raise.
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
import torch
from safetensors.torch import load_file, save_file

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState
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
    shutil.copytree(good, models / "pickled")      # UNet weights only as a pickle (.bin)
    (unet,) = (models / "pickled" / "unet").glob("*.safetensors")
    torch.save(load_file(unet), unet.with_suffix(".bin"))
    unet.unlink()
    single = load_file(tiny_models.single("v1"))  # a checkpoint without its VAE
    save_file({k: v for k, v in single.items() if not k.startswith("first_stage_model.")},
              models / "no-vae.safetensors")
    (models / "old.ckpt").write_bytes(b"not opened")
    _mismatched(good, models / "wrong-encoder", "text_encoder")
    _mismatched(good, models / "wrong-vae", "vae")
    shutil.copytree(good, models / "odd-defaults")
    (models / "odd-defaults" / "paintbridge.json").write_text(json.dumps(
        {"steps": "many", "guidance": -3, "sampler": "nope", "native_size": 7,
         "dtype": "float8", "stepz": 4}))
    d = start_daemon(root, "--models", str(models), "--no-embedded",
                     env={"PAINTBRIDGE_FAILPOINTS": "1"})
    yield d
    d.stop()


def _mismatched(good: Path, folder: Path, part: str) -> None:
    """A copy of ``good`` whose ``part`` is a freshly built one that loads fine but does not
    fit the UNet: a text encoder 48 wide (the UNet attends to 32), a VAE with 8 latent
    channels (the UNet makes 4)."""
    shutil.copytree(good, folder)
    config = json.loads((folder / part / "config.json").read_text())
    shutil.rmtree(folder / part)
    if part == "text_encoder":
        from transformers import CLIPTextConfig, CLIPTextModel

        config.update(hidden_size=48, intermediate_size=96)
        keep = set(CLIPTextConfig().to_dict())
        CLIPTextModel(CLIPTextConfig(**{k: v for k, v in config.items() if k in keep})
                      ).save_pretrained(folder / part)
    else:
        from diffusers import AutoencoderKL

        config["latent_channels"] = 8
        AutoencoderKL.from_config(config).save_pretrained(folder / part)


def _image(size: int = 32) -> Frame:
    pixels = np.full((size, size, 4), 128, np.uint8)
    return Frame(size, size, "rgba8", pixels.tobytes())


def _run(client: Client, model: str, steps: int | None = 2, kind: str = "img2img",
         prompt: str = "") -> Job:
    params = {"model": model, "seed": 1, "prompt": prompt} | ({"steps": steps} if steps else {})
    image = None if kind == "txt2img" else _image()
    job = client.submit(JobRequest(kind, params, image=image, size=(32, 32)))
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


@pytest.mark.parametrize("model, words", [
    ("pickled", "no file named diffusion_pytorch_model.safetensors"),   # never the .bin
    ("no-vae.safetensors", "expected shape"),
])
def test_a_checkpoint_that_cannot_load_gets_our_message(broken: DaemonProc, model: str,
                                                        words: str) -> None:
    with Client(broken.endpoint) as client:
        job = _run(client, model)
        assert job.error_code == ErrorCode.MODEL_ERROR
        assert job.error_message.startswith(f"cannot load '{model}' (")
        assert words in job.error_message
        for hint in ("low_cpu_mem_usage", "huggingface", "If you", "github"):
            assert hint not in job.error_message
        listed = {m["name"]: m for m in client.models()}
    assert listed["old.ckpt"]["usable"] is False
    assert "pickle files (.ckpt) are unsafe" in listed["old.ckpt"]["error"]


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


@pytest.mark.parametrize("model, kind, code, words", [
    ("wrong-encoder", "img2img", ErrorCode.MODEL_ERROR, "while denoising: RuntimeError"),
    ("wrong-vae", "txt2img", ErrorCode.MODEL_ERROR, "while decoding the latents: "),
    # its 8-channel latents of the image reach the UNet, which takes 4
    ("wrong-vae", "img2img", ErrorCode.MODEL_ERROR, "while denoising: RuntimeError"),
])
def test_a_model_that_fails_while_running_fails_its_job_only(
        broken: DaemonProc, model: str, kind: str, code: str, words: str) -> None:
    with Client(broken.endpoint) as client:
        bad = _run(client, model, kind=kind)
        assert bad.state is JobState.FAILED and bad.error_code == code
        assert f"model '{model}' failed {words}" in bad.error_message, bad.error_message
        good = _run(client, "good", kind=kind)
        assert good.state is JobState.DONE and good.patches, good.error_message
    assert broken.proc.poll() is None


@pytest.mark.parametrize("stage, code, words", [
    ("decode", ErrorCode.INTERNAL, "while reading the frames"),
    ("denoise", ErrorCode.MODEL_ERROR, "while denoising"),
    ("latents", ErrorCode.MODEL_ERROR, "while decoding the latents"),
    ("encode", ErrorCode.INTERNAL, "while encoding the result"),
])
def test_a_failure_at_any_stage_fails_that_job_only(broken: DaemonProc, stage: str,
                                                    code: str, words: str) -> None:
    with Client(broken.endpoint) as client:
        bad = _run(client, "good", prompt=f"a cat failpoint:{stage}")
        assert bad.state is JobState.FAILED and bad.error_code == code
        assert words in bad.error_message and "InjectedFailure" in bad.error_message
        good = _run(client, "good", prompt="a cat")
        assert good.state is JobState.DONE and good.patches, good.error_message
    assert broken.proc.poll() is None
    assert "Traceback" in broken.output()   # the log keeps what the user's message leaves out

"""Soft selections (backend/jobs/differential.py): a partly selected pixel changes partly.

In-process on the embedded model's own pipeline: each latent pixel takes part in exactly the
last m of the schedule and the unselected ones end as the source; through a real daemon on
the embedded model: across a selection that rises from 0 to 1 the change rises gradually,
where the all-or-nothing mask jumps at one half."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from paintbridge.backend.jobs import differential
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState
from tools import quality

from .conftest import DaemonProc, start_daemon

SIDE = 64
MODEL = Path(__file__).resolve().parent.parent / "backend" / "default_model"


@pytest.mark.fast
def test_only_partly_selected_masks_are_soft() -> None:
    assert not differential.is_soft(np.array([[0.0, 1.0]], np.float32))
    assert not differential.is_soft(None)
    assert differential.is_soft(np.array([[0.0, 0.5]], np.float32))
    hard = np.zeros((64, 64), np.float32)
    hard[10:37, 5:50] = 1      # edges off the latent grid: still hard at latent size
    hard[9, 5:50] = 0.5        # ... and with a soft pixel, as scaling leaves one
    assert not differential.is_soft(differential.latent_map(hard, 8))
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :], (64, 1))
    assert differential.is_soft(differential.latent_map(ramp, 8))


def test_each_pixel_takes_part_in_the_last_m_of_the_schedule() -> None:
    from diffusers import StableDiffusionInpaintPipeline

    torch.manual_seed(0)
    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(MODEL), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    picture = quality.smooth_picture(SIDE)[..., :3] / 255.0
    soft = np.repeat(np.array([0.0, 1 / 3, 2 / 3, 1.0], np.float32), SIDE // 4)[None, :]
    soft = np.repeat(soft, SIDE, axis=0)
    image = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
    freeze = differential.Freeze(pipe.vae, image,
                                 differential.latent_map(soft, pipe.vae_scale_factor), seed=3)
    free_steps = torch.zeros_like(freeze.m)
    steps = 12

    def on_step(p, i, t, kw):
        before = kw["latents"].clone()
        kw["latents"] = freeze(p, i, kw["latents"])
        free_steps.add_((kw["latents"] == before).all(dim=1, keepdim=True).float())
        return kw

    with torch.inference_mode():
        out = pipe(prompt="a red circle", image=image, mask_image=torch.ones(1, 1, SIDE, SIDE),
                   height=SIDE, width=SIDE, num_inference_steps=steps, guidance_scale=3.0,
                   generator=torch.Generator().manual_seed(1), output_type="latent",
                   callback_on_step_end=on_step).images
    columns = free_steps[0, 0].mean(dim=0)          # per latent column
    quarter = columns.shape[0] // 4
    counts = [float(columns[k * quarter:(k + 1) * quarter].mean()) for k in range(4)]
    assert counts == [0.0, 4.0, 8.0, 12.0]          # the last m·12 steps, exactly
    unselected = freeze.m == 0
    assert torch.equal(out[unselected.expand_as(out)], freeze.x0[unselected.expand_as(out)])


def change_by_selection(c: Client, soft: str, seed: int) -> list[float]:
    """Mean change of the result against the source in column bands of a selection that
    rises from 0 (left) to 1 (right)."""
    picture = quality.smooth_picture(SIDE)
    ramp = quality.ramp_selection(SIDE)
    job = c.wait(c.submit(JobRequest("inpaint", {"prompt": "a red circle", "seed": seed, "grow": 0,
                                      "feather": 0, "soft_edges": soft,
                                      "colour_match": "off"},
                                     image=Frame(SIDE, SIDE, "rgba8", picture.tobytes()),
                                     mask=Frame(SIDE, SIDE, "gray8", ramp.tobytes()))), 300)
    assert job.state is JobState.DONE, job.error_message
    out = quality.placed(job.patches[0], SIDE, SIDE)
    return quality.change_by_band(out, picture / 255.0)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory):
    d = start_daemon(tmp_path_factory.mktemp("soft"))
    yield d
    d.stop()


def test_a_soft_selection_changes_gradually(embedded: DaemonProc) -> None:
    """The result's change against the source, in eight bands across a 0→1 selection,
    averaged over three seeds. All or nothing (off), the change jumps where the mask is
    cut at one half; soft (on), it rises in smaller steps, and the barely selected band
    changes no more than it does with the hard cut."""
    with Client(embedded.endpoint) as c:
        bands = {soft: np.mean([change_by_selection(c, soft, seed) for seed in (1, 2, 3)],
                               axis=0) for soft in ("off", "on")}
    jumps = {k: float(np.diff(v).max()) for k, v in bands.items()}
    print({k: [round(float(x), 3) for x in v] for k, v in bands.items()}, jumps)
    assert jumps["on"] < 0.6 * jumps["off"], jumps
    assert bands["on"][0] <= bands["off"][0] + 0.02
    assert bands["on"][-1] > bands["on"][0] + 0.05      # the selected side does change

"""Do no harm: image to image through the daemon is not worse than the bare diffusers call
of the same model at full resolution, on the same picture (issue: low strength through the
daemon blurred edges, drew a tile grid on flat areas and shifted colours).

The reference is the model's own pipeline (the embedded 9-channel model's inpainting
pipeline with a full mask: image to image), called once on the whole picture, same seed,
steps, guidance and dtype; the measures are tools/quality's (PSNR, edges kept on the
source's edges, texture on its flat areas) on pictures of flat shapes and a photo no one
here took (scikit-learn's sample image).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from paintbridge.backend.jobs import seams
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState
from tools import bare, quality

from .conftest import DaemonProc, start_daemon

SIDE, SEED, STEPS, GUIDANCE = 512, 7, 20, 3.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("fidelity"), "--threads", "1")
    yield d
    d.stop()


@pytest.fixture(scope="module")
def pipe() -> Iterator[Any]:
    """The model's own pipeline, as diffusers loads it, on one thread as the daemon runs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield bare.load()
    torch.set_num_threads(threads)


def bare_call(pipe: Any, picture: np.ndarray, strength: float) -> np.ndarray:
    return bare.call(pipe, picture, strength, seed=SEED, steps=STEPS, guidance=GUIDANCE)


def daemon_call(d: DaemonProc, picture: np.ndarray, strength: float,
                mask: np.ndarray | None = None, **extra: object) -> np.ndarray:
    """The daemon's result over the source, (h, w, 3) in 0..1."""
    side = picture.shape[0]
    with Client(d.endpoint) as c:
        job = c.wait(c.submit(JobRequest(
            "inpaint" if mask is not None else "img2img",
            {"prompt": "", "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
             "strength": strength, **extra},
            image=Frame(side, side, "rgba8", picture.tobytes()),
            mask=Frame(side, side, "gray8", mask.tobytes()) if mask is not None else None)),
            600)
    assert job.state is JobState.DONE, job.error_message
    patch = quality.placed(job.patches[0], side, side)
    return seams.composite(picture[..., :3].astype(np.float32) / 255, patch[..., :3],
                           patch[..., 3])


@pytest.mark.parametrize(("picture", "strength"), [("shapes", 0.3), ("photo", 0.1)])
def test_low_strength_is_not_worse_than_the_bare_call(daemon, pipe, picture: str,
                                                      strength: float) -> None:
    """A region 8 × the model's side, polished at low strength: within 1 dB of the bare
    call's PSNR to the source, its edges at least 0.9 × as steep, no more texture on the
    flat areas than 1.5 × its own (a tile grid or blotches would show there). One thread
    on both sides: there torch's channels-last VAE once decoded this 6 dB worse."""
    source8 = (quality.flat_shapes if picture == "shapes" else quality.sample_photo)(SIDE)
    source = source8[..., :3].astype(np.float32) / 255
    ours, ref = daemon_call(daemon, source8, strength), bare_call(pipe, source8, strength)
    assert not bare.failures(bare.measures(ours, source), bare.measures(ref, source))


def test_inpainting_at_low_strength_is_not_worse_than_the_bare_call(daemon, pipe) -> None:
    """Polishing a selection (inpainting at 0.3) on a region 8 × the model's side: one
    inpainting call, as the model's own; inside the selection not worse than the bare call
    pasted inside its mask (composed at the model's size and tiled, it lost 3 dB and
    three quarters of the edges' steepness)."""
    source8 = quality.sample_photo(SIDE)
    source = source8[..., :3].astype(np.float32) / 255
    lo, hi = SIDE // 4, 3 * SIDE // 4
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[lo:hi, lo:hi] = 255
    ours = daemon_call(daemon, source8, 0.3, mask)
    ref = bare.call(pipe, source8, 0.3, seed=SEED, steps=STEPS, guidance=GUIDANCE, mask=mask)
    ref = seams.composite(source, ref, mask.astype(np.float32) / 255)
    box = (slice(lo, hi), slice(lo, hi))
    assert not bare.failures(bare.measures(ours[box], source[box]),
                             bare.measures(ref[box], source[box]))


def test_tiles_at_low_strength_draw_no_grid(daemon, pipe) -> None:
    """The path of regions too large for one call (here forced by a tile size): tiles over
    the source, no composition pass. No more texture on the flat areas than the bare call
    (a grid at the tile period would show there), edges as steep, PSNR within 1 dB."""
    source8 = quality.flat_shapes(SIDE)
    source = source8[..., :3].astype(np.float32) / 255
    ours = daemon_call(daemon, source8, 0.1, tile_size=128)
    ref = bare_call(pipe, source8, 0.1)
    assert not bare.failures(bare.measures(ours, source), bare.measures(ref, source))


def test_beyond_one_call_the_change_is_carried_up_not_worse(tmp_path, pipe) -> None:
    """A region past the daemon's ``whole_max_pixels`` (here 256², as 2048² is at the
    default) is painted reduced: one call at the largest size that fits, its change
    carried up over the source. Not worse than the bare call at full resolution, which
    still fits here; at 0.6 on the photo, where tiles composed at the model's size once
    kept 0.08 of the edges' steepness, and carrying up every change 0.6 of it."""
    d = start_daemon(tmp_path, "--threads", "1", "--whole-max-pixels", str(256 * 256))
    try:
        source8 = quality.sample_photo(SIDE)
        source = source8[..., :3].astype(np.float32) / 255
        ours = daemon_call(d, source8, 0.6)
        ref = bare_call(pipe, source8, 0.6)
    finally:
        assert d.stop() == 0
    assert not bare.failures(bare.measures(ours, source), bare.measures(ref, source))


def test_the_measures_see_blur_and_a_grid() -> None:
    """The measures the tests trust see what an artist sees: a blurred copy loses edge
    steepness, a faint grid over flat areas raises their texture, a colour cast drifts."""
    from PIL import Image, ImageFilter

    source8 = quality.flat_shapes(SIDE)
    source = source8[..., :3].astype(np.float32) / 255
    blurred = np.asarray(Image.fromarray(source8[..., :3]).filter(
        ImageFilter.GaussianBlur(2)), np.float32) / 255
    grid = source.copy()
    grid[::32] += 4 / 255
    grid[:, ::32] += 4 / 255
    cast = np.clip(source + np.array([0.0, -0.08, -0.1], np.float32), 0, 1)
    assert quality.edge_steepness(source, source) == pytest.approx(1.0)
    assert quality.edge_steepness(blurred, source) < 0.6
    assert quality.flat_texture(source, source) == 0.0
    assert quality.flat_texture(np.clip(grid, 0, 1), source) > 0.2
    assert quality.colour_drift(cast, source) > 20 > quality.colour_drift(blurred, source)

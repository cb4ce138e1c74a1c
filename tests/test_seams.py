"""Seamless edges: the membrane fill, colour matching, the seam metric, and the improvement
through a real daemon on the embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from paintbridge.backend.jobs import seams
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState

from .conftest import DaemonProc, start_daemon

S = 128


def gradient() -> np.ndarray:
    """A soft blue-grey gradient: any shade offset of a patch shows on it."""
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    img = np.zeros((S, S, 3), np.float32)
    img[..., 0] = (90 + 40 * xx / S) / 255
    img[..., 1] = (120 + 20 * yy / S) / 255
    img[..., 2] = 170 / 255
    return img


def square(lo: int = 40, hi: int = 88) -> np.ndarray:
    m = np.zeros((S, S), np.float32)
    m[lo:hi, lo:hi] = 1
    return m


@pytest.mark.fast
def test_membrane_keeps_what_is_known_and_fills_smoothly() -> None:
    known = np.zeros((S, S), bool)
    known[:, :10] = known[:, -10:] = True
    values = np.zeros((S, S, 1), np.float32)
    values[:, -10:] = 1.0
    filled = seams.membrane(values, known)[..., 0]
    assert np.array_equal(filled[known], values[known][:, 0])
    row = filled[S // 2, 10:-10]
    assert np.all(np.diff(row) >= -1e-6) and 0.3 < row[len(row) // 2] < 0.7   # a ramp
    assert np.allclose(seams.membrane(np.full((S, S, 3), 0.25, np.float32), known), 0.25)


@pytest.mark.fast
def test_a_uniform_shade_offset_is_removed_exactly() -> None:
    src, alpha = gradient(), square()
    shifted = np.clip(src + np.array([0.08, -0.05, 0.03], np.float32), 0, 1)
    fixed = seams.match_edges(shifted, src, alpha)
    inside = alpha > 0
    assert np.abs(fixed[inside] - src[inside]).max() < 1e-5
    assert np.array_equal(fixed[~inside], shifted[~inside])   # the patch only
    # nothing to measure against: a patch over the whole region, or no ring at all
    assert np.array_equal(seams.match_edges(shifted, src, np.ones((S, S))), shifted)


@pytest.mark.fast
def test_seam_ratio_sees_a_shade_step_and_not_a_smooth_picture() -> None:
    src, sel = gradient(), square()
    assert seams.seam_ratio(src, sel) == pytest.approx(1.0, abs=0.2)
    patched = seams.composite(src, np.clip(src + 0.04, 0, 1), sel)
    assert seams.seam_ratio(patched, sel) > 3


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("seams"))
    yield d
    d.stop()


def test_colour_matching_hides_the_patch_edge(embedded: DaemonProc) -> None:
    """Image to image at low strength in a selection on a gradient: the model's result
    sits a shade off; matched to its surroundings (the default), the step across the
    selection's edge drops to a fraction, and nothing outside the patch changes."""
    src = gradient()
    sel = square()
    img = np.concatenate([src, np.ones((S, S, 1), np.float32)], -1)
    frame = Frame(S, S, "rgba8", np.rint(img * 255).astype(np.uint8).tobytes())
    mask = Frame(S, S, "gray8", (sel * 255).astype(np.uint8).tobytes())
    source8 = np.rint(src * 255) / 255
    ratios: dict[str, list[float]] = {"off": [], "on": []}
    with Client(embedded.endpoint) as c:
        for cm in ("off", "on"):
            for seed in (1, 2):
                params = {"prompt": "", "strength": 0.3, "seed": seed, "grow": 4,
                          "feather": 4, **({"colour_match": cm} if cm == "off" else {})}
                job = c.wait(c.submit(JobRequest("img2img", params, image=frame, mask=mask)), 300)
                assert job.state is JobState.DONE, job.error_message
                p = job.patches[0]
                px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4) / 255.0
                full = np.zeros((S, S, 4))
                full[p.y:p.y + p.height, p.x:p.x + p.width] = px
                assert not full[..., 3][square(36, 92) == 0].any()   # the grown selection
                comp = seams.composite(source8, full[..., :3], full[..., 3])
                ratios[cm].append(seams.seam_ratio(comp, sel))
    off, on = np.mean(ratios["off"]), np.mean(ratios["on"])
    assert on < 0.5 * off, ratios

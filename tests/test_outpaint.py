"""Outpainting: see-through pixels of the image are areas to fill. The model starts from the
colours around them, and the result is opaque there, on both the scaled and the
full-resolution path, through a real daemon on the embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from paintbridge.backend.jobs import seams, tiling
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState
from tools import quality

from .conftest import DaemonProc, start_daemon
from .test_tiling import _request


@pytest.mark.fast
def test_fill_keeps_what_is_there_and_extends_its_edge_colours() -> None:
    rgb = np.zeros((64, 96, 3), np.float32)
    rgb[:, :48] = [0.8, 0.2, 0.1]          # the picture: red on the left
    rgb[:, 48:] = [0.0, 0.0, 0.0]          # see-through pixels hold black (as hosts send)
    opacity = np.zeros((64, 96), np.float32)
    opacity[:, :48] = 1
    filled = seams.fill(rgb, opacity)
    assert np.array_equal(filled[:, :48], rgb[:, :48])
    assert np.allclose(filled[:, 48:], [0.8, 0.2, 0.1], atol=1e-5)   # no black bleeds in
    assert np.allclose(seams.fill(rgb, np.zeros((64, 96), np.float32)), 0.5)


@pytest.mark.fast
def test_the_full_resolution_fill_matches_the_whole_region_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiling, "BAND", 16)
    monkeypatch.setattr(tiling, "MATCH_SIDE", 40)   # reduce 3x: the band-wise path
    side = 120
    yy, xx = np.mgrid[0:side, 0:side]
    picture = np.stack([60 + xx, 200 - yy, 90 + yy // 2, np.full_like(xx, 255)],
                       -1).astype(np.uint8)   # smooth: the reduction changes little
    picture[:, 80:] = 0
    req = _request(side, side, None, 0, 0, kind="img2img")
    req.image_data = picture.tobytes()
    got = tiling.Region(req).rgb8() / 255.0
    want = seams.fill(picture[..., :3] / 255.0, picture[..., 3] / 255.0)
    assert np.array_equal(got[:, :80], picture[:, :80, :3] / 255.0)
    assert np.abs(got[:, 80:88] - want[:, 80:88]).mean() < 0.02   # continues the edge
    assert got[:, 80:].min() > 0.05   # never the black (far off, the pyramids differ)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("outpaint"))
    yield d
    d.stop()


@pytest.mark.parametrize("side", [64, 192])   # the scaled path; full resolution (3x native)
def test_a_transparent_strip_is_filled_opaquely(embedded: DaemonProc, side: int) -> None:
    """What Expand sends: the canvas grown by a strip the layer has no pixels in (read as
    transparent black), and that strip selected."""
    new = side // 4
    picture = quality.test_picture(side).copy()
    picture[:, side - new:] = 0
    mask = np.zeros((side, side), np.uint8)
    mask[:, side - new:] = 255
    with Client(embedded.endpoint) as c:
        job = c.wait(c.submit(JobRequest("inpaint",
                                         {"prompt": "", "seed": 1, "grow": 4, "feather": 4},
                                         image=Frame(side, side, "rgba8", picture.tobytes()),
                                         mask=Frame(side, side, "gray8", mask.tobytes()))), 600)
    assert job.state is JobState.DONE, job.error_message
    p = job.patches[0]
    px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4)
    full = np.zeros((side, side, 4), np.uint8)
    full[p.y:p.y + p.height, p.x:p.x + p.width] = px
    strip = full[:, side - new:]
    assert (strip[..., 3] == 255).all()          # opaque over every see-through pixel
    assert (full[:, :side - new - 8, 3] == 0).all()   # the picture itself: untouched
    # filled from the picture's colours, not from the black the strip held
    assert strip[..., :3].mean() > 0.5 * picture[:, :side - new, :3].mean()

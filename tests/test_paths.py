"""Which way a job is painted (backend/jobs/paths.py), and that the daemon's
``whole_max_pixels`` setting reaches that choice in a real daemon."""

from __future__ import annotations

import pytest

from paintbridge.backend.jobs import paths
from paintbridge.plugin import protocol
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState
from paintbridge.plugin.protocol import Limits

from .conftest import start_daemon

NATIVE, STEPS = 64, 20


def parsed(kind: str, side: int, live: bool = False, **params: object) -> protocol.SubmitRequest:
    if kind == "txt2img":
        header = protocol.submit_header("j1", kind, params, [], size=(side, side), live=live)
        return protocol.parse_submit(header, [], Limits())
    frames = [("image", Frame(side, side, "rgba8", bytes(side * side * 4)))]
    if kind == "inpaint":
        frames.append(("mask", Frame(side, side, "gray8", bytes([255]) * side * side)))
    header = protocol.submit_header("j1", kind, params, [f.spec(role) for role, f in frames],
                                    live=live)
    return protocol.parse_submit(header, [f.data for _, f in frames], Limits())


@pytest.mark.fast
@pytest.mark.parametrize(("kind", "side", "params", "live", "path"), [
    ("img2img", 512, {"strength": 0.3}, False, "whole"),        # polishing: one call
    ("img2img", 512, {"strength": 0.6}, False, "whole"),
    ("img2img", 512, {"strength": 0.7}, False, "tiled"),        # the layout changes
    ("img2img", 512, {"strength": 0.3, "tile_size": 128}, False, "tiled"),  # asked for
    ("img2img", 2048, {"strength": 0.3}, False, "reduced"),     # past whole_max_pixels
    ("img2img", 2048, {"strength": 0.6, "tile_size": 64}, False, "tiled"),
    ("img2img", 512, {"strength": 0.3, "refine": "off"}, False, "scaled"),
    ("img2img", 512, {"strength": 0.3}, True, "scaled"),        # live drafts
    ("img2img", 64, {"strength": 0.3}, False, "scaled"),        # the model's own size
    ("txt2img", 512, {}, False, "tiled"),
    ("inpaint", 512, {}, False, "tiled"),                       # fills: strength 1
    ("inpaint", 512, {"strength": 0.4}, False, "whole"),        # polishes the selection
    ("inpaint", 2048, {"strength": 0.4}, False, "reduced"),
    ("img2img", 100, {"strength": 0.3}, False, "whole"),        # above native, below 2x
    ("img2img", 100, {"strength": 0.7}, False, "scaled"),
])
def test_the_path_follows_kind_strength_and_size(kind: str, side: int, params: dict,
                                                 live: bool, path: str) -> None:
    assert paths.plan(parsed(kind, side, live, **params), NATIVE, STEPS).path == path


@pytest.mark.fast
def test_whole_max_pixels_moves_the_line_between_one_call_and_tiles() -> None:
    req = parsed("img2img", 512, strength=0.3)
    assert paths.plan(req, NATIVE, STEPS, whole_max_pixels=512 * 512).path == "whole"
    beyond = paths.plan(req, NATIVE, STEPS, whole_max_pixels=256 * 256)
    assert beyond.path == "reduced" and beyond.compose == (256, 256)
    assert beyond.steps_per_variation == 6   # still one call: 0.3 of 20 steps
    big = parsed("img2img", 2048, strength=0.3)
    assert paths.plan(big, NATIVE, STEPS, whole_max_pixels=2048 * 2048).path == "whole"


def test_the_serve_setting_reaches_the_plan(tmp_path) -> None:
    """A daemon told ``--whole-max-pixels 16384`` paints a 256² polish reduced (one call at
    128², its change carried up) and says so; asked for tiles, it tiles."""
    side = 256
    image = Frame(side, side, "rgba8", bytes([90, 120, 170, 255]) * side * side)
    d = start_daemon(tmp_path, "--whole-max-pixels", "16384")
    try:
        with Client(d.endpoint) as c:
            jobs = [c.submit(JobRequest("img2img", {"strength": 0.3, "steps": STEPS,
                                                    "seed": 1, **extra}, image=image))
                    for extra in ({}, {"tile_size": 128})]
            for job in jobs:
                c.wait(job, 300)
                assert job.state is JobState.DONE, job.error_message
        assert [job.info["path"] for job in jobs] == ["reduced", "tiled"]
        assert jobs[0].total == 6 < jobs[1].total   # one call of 6 steps; every tile's
        assert len(jobs[0].patches) == 1 and jobs[0].patches[0].width == side
    finally:
        assert d.stop() == 0


@pytest.mark.fast
def test_the_composition_pass_keeps_the_layout_where_one_call_fits() -> None:
    """Tiles asked for at low strength refine the source (no composition); up to 0.6 they
    compose at the largest size one call fits; stronger, and text to image, at the
    model's size."""
    def compose(kind: str, **params: object) -> tuple[int, int] | None:
        return paths.plan(parsed(kind, 2048, **params), NATIVE, STEPS,
                          whole_max_pixels=1024 * 1024).compose

    assert compose("img2img", strength=0.3, tile_size=64) is None
    assert compose("img2img", strength=0.6, tile_size=64) == (1024, 1024)
    assert compose("img2img", strength=0.8) == (64, 64)
    assert compose("txt2img") == (64, 64)
    assert paths.fitting(3000, 1000, 1024 * 1024) == (1768, 584)
    assert paths.fitting(500, 300, 1024 * 1024) == (496, 296)   # never larger

"""Upscale jobs: the header's ``scale`` checked before anything is allocated, and through a
real daemon on the embedded model (native size 64): the result is the region enlarged, its
shapes and colours the source's, with detail the tiles add and no tile seam; the source's
transparency comes back enlarged; an upscaler model (the sample trained here) does the
first enlargement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paintbridge.backend.jobs import grid
from paintbridge.plugin import protocol
from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState, Patch
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings, Session
from tools import quality

from .conftest import DaemonProc, start_daemon
from .test_session import ArrayDocument, finish

NATIVE = 64
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "upscalers"


def _parse(header_extra: dict, side: int = 100, mask: bool = False,
           limits: Limits | None = None, kind: str = "upscale") -> protocol.SubmitRequest:
    frames = [protocol.FrameSpec("image", side, side, "rgba8")]
    buffers = [bytes(side * side * 4)]
    if mask:
        frames.append(protocol.FrameSpec("mask", side, side, "gray8"))
        buffers.append(bytes(side * side))
    header = protocol.submit_header("j", kind, {}, frames)
    header.update(header_extra)
    return protocol.parse_submit(header, buffers, limits or Limits())


@pytest.mark.fast
def test_scale_is_checked_with_the_result_against_the_limits() -> None:
    assert _parse({}).scale == 2 and _parse({}).result_size == (200, 200)
    assert _parse({"scale": 4}).result_size == (400, 400)
    for bad in (1, 5, 2.0, True, "2"):
        with pytest.raises(ProtocolError) as exc:
            _parse({"scale": bad})
        assert exc.value.field == "scale" and exc.value.code == ErrorCode.BAD_FIELD
    with pytest.raises(ProtocolError) as exc:   # 100 px ×4 is over a 300-px side
        _parse({"scale": 4}, limits=Limits(max_side=300))
    assert exc.value.code == ErrorCode.TOO_LARGE and "400x400" in exc.value.message
    with pytest.raises(ProtocolError) as exc:
        _parse({"scale": 3}, limits=Limits(max_pixels=250 * 250))
    assert exc.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as exc:
        _parse({}, mask=True)
    assert exc.value.code == ErrorCode.BAD_FRAME
    with pytest.raises(ProtocolError) as exc:
        _parse({"live": True})
    assert exc.value.field == "live"
    with pytest.raises(ProtocolError) as exc:
        _parse({"scale": 2}, kind="img2img")
    assert exc.value.field == "scale"
    with pytest.raises(ProtocolError) as exc:   # nothing to enlarge
        protocol.parse_submit(protocol.submit_header("j", "upscale", {}, [], size=(8, 8)), [],
                              Limits())
    assert exc.value.code == ErrorCode.BAD_FRAME


# --------------------------------------------------------------------------- through a daemon


@pytest.fixture(scope="module")
def with_upscalers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("upscale"), "--upscalers", str(SAMPLE))
    yield d
    d.stop()


def _upscale(c: Client, picture: np.ndarray, params: dict, scale: int = 2
             ) -> tuple[np.ndarray, Job]:
    h, w = picture.shape[:2]
    job = c.wait(c.submit(JobRequest("upscale", {"prompt": "", "seed": 3, **params},
                                     image=Frame(w, h, "rgba8", picture.tobytes()),
                                     scale=scale)), 600)
    assert job.state is JobState.DONE, job.error_message
    p = job.patches[0]
    assert (p.x, p.y, p.width, p.height) == (0, 0, w * scale, h * scale)
    return np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4) / 255.0, job


def _lanczos(picture: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(picture).resize((w, h), Image.Resampling.LANCZOS)) / 255.0


def _blur(rgb: np.ndarray, factor: int = 8) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = Image.fromarray(np.rint(rgb[..., :3] * 255).astype(np.uint8)).reduce(factor)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR)) / 255.0


def test_an_upscale_keeps_the_picture_and_adds_detail_without_seams(
        with_upscalers: DaemonProc) -> None:
    """128² ×2 on a 64-px model: 25 tiles refine the Lanczos enlargement. The coarse
    picture (shapes, colours) stays the source's; the fine structure is the tiles' own,
    and their boundaries step no more than the picture does elsewhere."""
    truth = quality.test_picture(256, seed=4)
    source = np.asarray(Image.fromarray(truth).reduce(2))
    with Client(with_upscalers.endpoint) as c:
        plain, plain_job = _upscale(c, source, {"refine": "off"})
        refined, job = _upscale(c, source, {"steps": 8})
    assert plain_job.total == 1 and job.step == job.total == 25 * 2   # 8 steps × 0.35
    lanczos = _lanczos(source, 256, 256)
    assert np.abs(plain[..., :3] - lanczos[..., :3]).max() <= 1 / 255 + 1e-6
    assert (refined[..., 3] == 1).all()
    coarse = np.abs(_blur(refined) - _blur(lanczos)).mean()
    fine = np.abs((refined[..., :3] - _blur(refined)) - (lanczos[..., :3] - _blur(lanczos)))
    print("coarse", coarse, "fine", fine.mean(), "psnr", quality.psnr(refined, truth / 255.0),
          quality.psnr(lanczos, truth / 255.0))
    tiles = grid.grid(256, 256, NATIVE, 16)
    xs = sorted({t.x + t.left // 2 for t in tiles if t.left})
    ys = sorted({t.y + t.top // 2 for t in tiles if t.top})
    print("seam", quality.tile_seam_ratio(refined, xs, ys),
          quality.tile_seam_ratio(lanczos, xs, ys))
    assert coarse < 0.01 and fine.mean() > 0.01
    assert quality.tile_seam_ratio(refined, xs, ys) < 1.3


def test_transparency_comes_back_enlarged(with_upscalers: DaemonProc) -> None:
    picture = quality.test_picture(96, seed=1).copy()
    picture[:, :40, 3] = 0          # a see-through left part, soft at its edge
    picture[:, 40:48, 3] = np.linspace(0, 255, 8, dtype=np.uint8)[None, :]
    with Client(with_upscalers.endpoint) as c:
        out, _ = _upscale(c, picture, {"steps": 4}, scale=3)
    assert out.shape[:2] == (288, 288)
    assert (out[:, :110, 3] == 0).all() and (out[:, :110, :3] == 0).all()
    assert (out[:, 150:, 3] == 1).all()
    assert 0 < out[:, 132, 3].mean() < 1


def test_an_upscaler_model_does_the_first_enlargement(with_upscalers: DaemonProc) -> None:
    """The sample ×2 model (trained here) restores a picture halved as it learnt (bicubic,
    antialiased) better than Lanczos can."""
    truth = quality.test_picture(192, seed=1006)
    source = np.asarray(Image.fromarray(truth).resize((96, 96), Image.Resampling.BICUBIC))
    with Client(with_upscalers.endpoint) as c:
        model, _ = _upscale(c, source, {"refine": "off", "upscaler": "pb-compact-x2"})
        plain, _ = _upscale(c, source, {"refine": "off"})
        bad = c.wait(c.submit(JobRequest("upscale", {"upscaler": "nope"},
                                         image=Frame(96, 96, "rgba8", source.tobytes()))), 60)
    print("psnr", quality.psnr(model, truth / 255.0), quality.psnr(plain, truth / 255.0))
    assert quality.psnr(model, truth / 255.0) > quality.psnr(plain, truth / 255.0) + 5
    assert bad.state is JobState.FAILED and bad.error_code == "bad_field"


# --------------------------------------------------------------------------- host side


class ImageOpeningDocument(ArrayDocument):
    """ArrayDocument that records the new images it is asked to open."""

    def __init__(self, width: int, height: int, selection: Rect | None = None) -> None:
        super().__init__(width, height, selection)
        self.opened: list[tuple[int, int, list[Patch], list[str], str | None, str]] = []

    def open_image(self, width: int, height: int, patches: list[Patch], names: list[str],
                   group: str | None, title: str) -> None:
        self.opened.append((width, height, patches, names, group, title))


def test_the_session_upscales_the_selection_into_a_new_image(
        with_upscalers: DaemonProc) -> None:
    doc = ImageOpeningDocument(200, 150, Rect(30, 20, 60, 40))
    before = doc.pixels.copy()
    session = Session(with_upscalers.endpoint)
    with pytest.raises(ValueError, match="Upscale by 2, 3, 4 only"):
        session.submit(doc, GenerationSettings(), upscale=5)
    session.submit(doc, GenerationSettings(prompt="", seed=5, steps=4, count=2), upscale=2)
    assert doc.reads == [Rect(30, 20, 60, 40)]      # the selection's box, nothing else
    finish(session, 300)
    assert session.job.state is JobState.DONE, session.job.error_message
    names = session.deliver(doc)
    assert names == ["Upscaled ×2 [seed 5]", "Upscaled ×2 [seed 6]"]
    ((w, h, patches, layer_names, group, title),) = doc.opened
    assert (w, h, title, group) == (120, 80, "Upscaled ×2", "Upscaled ×2 [2 variations]")
    assert [(p.x, p.y, p.width, p.height, p.format) for p in patches] == \
        [(0, 0, 120, 80, "bgra8")] * 2 and layer_names == names
    assert doc.layers == [] and (doc.pixels == before).all()   # this document: untouched
    session.close()

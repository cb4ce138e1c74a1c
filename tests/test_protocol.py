"""The wire protocol's validation, with no daemon: every rule a malformed message can break."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from paintbridge.plugin import protocol
from paintbridge.plugin.params import BY_NAME
from paintbridge.plugin.protocol import ErrorCode, FrameSpec, Limits, ProtocolError
from paintbridge.plugin.region import Rect, auto_padding, job_region

pytestmark = pytest.mark.fast

LIMITS = Limits()


def header(**over: object) -> dict:
    h = {"v": 1, "op": "submit", "job": "j1", "kind": "inpaint", "params": {"prompt": "x"},
         "frames": [{"role": "image", "width": 4, "height": 2, "format": "rgba8"},
                    {"role": "mask", "width": 4, "height": 2, "format": "gray8"}]}
    h.update(over)
    return h


GOOD_FRAMES = [bytes(32), bytes(8)]


def code_of(fn, *args) -> str:
    with pytest.raises(ProtocolError) as info:
        fn(*args)
    return info.value.code


def test_frame_sizes() -> None:
    assert protocol.frame_nbytes(3, 2, "rgba8") == 24
    assert protocol.frame_nbytes(3, 2, "bgra16") == 48
    assert protocol.frame_nbytes(3, 2, "rgbaf32") == 96
    assert protocol.frame_nbytes(3, 2, "gray8") == 6
    assert protocol.frame_nbytes(3, 2, "grayf32") == 24


def test_valid_submit_fills_defaults() -> None:
    req = protocol.parse_submit(header(), GOOD_FRAMES, LIMITS)
    assert req.kind == "inpaint" and req.size == (4, 2) and req.offset == (0, 0)
    assert req.params["strength"] == 1.0 and req.params["count"] == 1
    assert req.params["seed"] is None and req.result_format == "rgba8"
    img2img = protocol.parse_submit(header(kind="img2img"), GOOD_FRAMES, LIMITS)
    assert img2img.params["strength"] == BY_NAME["strength"].default_for("img2img") == 0.6


@pytest.mark.parametrize("raw, code", [
    (b"\xff\xfe", ErrorCode.BAD_MESSAGE),
    (b"{not json", ErrorCode.BAD_MESSAGE),
    (b"[1, 2]", ErrorCode.BAD_MESSAGE),
    (b'{"op": "hello"}', ErrorCode.BAD_VERSION),
    (b'{"v": 2, "op": "hello"}', ErrorCode.BAD_VERSION),
    (b'{"v": true, "op": "hello"}', ErrorCode.BAD_VERSION),
    (b'{"v": 1, "params": {"strength": NaN}}', ErrorCode.BAD_MESSAGE),
    (b'{"v": 1, "x": Infinity}', ErrorCode.BAD_MESSAGE),
    (b'{"v": 1, "pad": "' + b"x" * 70000 + b'"}', ErrorCode.TOO_LARGE),
])
def test_bad_headers(raw: bytes, code: str) -> None:
    assert code_of(protocol.decode_header, raw, LIMITS) == code


@pytest.mark.parametrize("over, frames, code", [
    ({"job": ""}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"job": "a/b"}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"job": 7}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"kind": "outpaint"}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"kind": "upscale"}, GOOD_FRAMES, ErrorCode.BAD_FRAME),           # upscale with a mask
    ({}, GOOD_FRAMES[:1], ErrorCode.BAD_FRAME),                       # frame missing
    ({}, [*GOOD_FRAMES, b""], ErrorCode.BAD_FRAME),                   # frame extra
    ({}, [bytes(31), bytes(8)], ErrorCode.BAD_FRAME),                 # wrong length
    ({"frames": [{"role": "image", "width": 100000, "height": 100000, "format": "rgba8"}]},
     [b""], ErrorCode.TOO_LARGE),                                     # huge declared size
    ({"frames": [{"role": "image", "width": 9000, "height": 9000, "format": "rgba8"}]},
     [b""], ErrorCode.TOO_LARGE),                                     # over max_pixels
    ({"frames": [{"role": "image", "width": 0, "height": 2, "format": "rgba8"}]},
     [b""], ErrorCode.BAD_FIELD),
    ({"frames": [{"role": "image", "width": -4, "height": 2, "format": "rgba8"}]},
     [b""], ErrorCode.BAD_FIELD),
    ({"frames": [{"role": "image", "width": 4.0, "height": 2, "format": "rgba8"}]},
     [b""], ErrorCode.BAD_FIELD),
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "png"}]},
     [b""], ErrorCode.BAD_FIELD),
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "rgba8"}] * 7},
     [bytes(32)] * 7, ErrorCode.TOO_LARGE),
    ({"frames": "lots"}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"frames": [{"role": "mask", "width": 4, "height": 2, "format": "rgba8"}]},
     [bytes(32)], ErrorCode.BAD_FIELD),                               # mask must be gray
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "gray8"}]},
     [bytes(8)], ErrorCode.BAD_FIELD),                                # image must be RGBA
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "rgba8"}]},
     [bytes(32)], ErrorCode.BAD_FRAME),                               # inpaint without mask
    ({"kind": "txt2img"}, GOOD_FRAMES, ErrorCode.BAD_FRAME),          # txt2img with image
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "rgba8"},
                 {"role": "mask", "width": 2, "height": 2, "format": "gray8"}]},
     [bytes(32), bytes(4)], ErrorCode.BAD_FRAME),                     # sizes differ
    ({"frames": [{"role": "image", "width": 4, "height": 2, "format": "rgba8"},
                 {"role": "image", "width": 4, "height": 2, "format": "rgba8"}]},
     [bytes(32), bytes(32)], ErrorCode.BAD_FIELD),                    # two images
    ({"params": {"strength": -0.5}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"strength": 0}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"strength": 1.5}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"strength": float("nan")}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"guidance": float("inf")}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"steps": 0}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"steps": 2.5}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"steps": True}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"steps": 10**6}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"seed": -1}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"seed": 2**40}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"count": 0}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"count": 99}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"sampler": "magic"}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"prompt": 5}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"prompt": "x" * 5000}}, GOOD_FRAMES, ErrorCode.TOO_LARGE),
    ({"params": {"grow": -1}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"colour": "red"}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": {"count": None}}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"params": []}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"offset": [1]}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"offset": [1, "2"]}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"result_format": "gray8"}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
    ({"preview": "yes"}, GOOD_FRAMES, ErrorCode.BAD_FIELD),
])
def test_bad_submits(over: dict, frames: list, code: str) -> None:
    assert code_of(protocol.parse_submit, header(**over), frames, LIMITS) == code


def test_txt2img_needs_a_size_or_mask() -> None:
    h = header(kind="txt2img", frames=[])
    assert code_of(protocol.parse_submit, h, [], LIMITS) == ErrorCode.BAD_FIELD
    req = protocol.parse_submit(header(kind="txt2img", frames=[], size=[64, 32]), [], LIMITS)
    assert req.size == (64, 32) and req.image is None and req.mask is None
    h = header(kind="txt2img", frames=[], size=[20000, 20000])
    assert code_of(protocol.parse_submit, h, [], LIMITS) == ErrorCode.BAD_FIELD


def test_submit_header_round_trip() -> None:
    specs = [FrameSpec("image", 4, 2, "bgra8"), FrameSpec("mask", 4, 2, "grayf32")]
    h = protocol.submit_header("a.b:c-1", "img2img", {"prompt": "p", "seed": 3}, specs,
                               offset=(10, -5))
    raw = protocol.encode_header(h)
    req = protocol.parse_submit(protocol.decode_header(raw), [bytes(32), bytes(32)], LIMITS)
    assert req.offset == (10, -5) and req.params["seed"] == 3 and req.result_format == "bgra8"


def test_error_event_shape() -> None:
    event = ProtocolError(ErrorCode.BAD_FIELD, "no", "steps").to_event("j")
    assert event == {"v": 1, "event": "error", "code": "bad_field", "message": "no",
                     "job": "j", "field": "steps"}
    json.dumps(event, allow_nan=False)


# --------------------------------------------------------------------------- region maths


CANVAS = Rect(0, 0, 1000, 800)


def test_region_pads_and_clamps() -> None:
    sel = Rect(100, 100, 50, 40)
    assert job_region("inpaint", CANVAS, sel, padding=10, grow=5) == Rect(85, 85, 80, 70)
    assert job_region("inpaint", CANVAS, sel, padding=None) == sel.expanded(auto_padding(sel))
    assert job_region("img2img", CANVAS, Rect(0, 790, 30, 10), padding=20) == Rect(0, 770, 50, 30)
    assert job_region("txt2img", CANVAS, sel, padding=500, grow=2) == sel.expanded(2)


def test_region_without_selection() -> None:
    assert job_region("img2img", CANVAS, None) == CANVAS
    assert job_region("txt2img", CANVAS, None) == CANVAS
    with pytest.raises(ValueError):
        job_region("inpaint", CANVAS, None)
    with pytest.raises(ValueError):
        job_region("img2img", CANVAS, Rect(2000, 2000, 5, 5), padding=0)


def test_region_is_independent_of_canvas_size() -> None:
    sel = Rect(200, 200, 256, 256)
    small = job_region("inpaint", Rect(0, 0, 1024, 1024), sel, padding=64)
    huge = job_region("inpaint", Rect(0, 0, 65536, 65536), sel, padding=64)
    assert small == huge == Rect(136, 136, 384, 384)


def test_plugin_is_pure_python() -> None:
    """The hosts' Pythons have no numpy/torch/PIL: plugin/ must not pull them in."""
    code = ("import sys, plugin.protocol, plugin.client, plugin.region; "
            "bad = {'numpy', 'torch', 'PIL', 'diffusers'} & set(sys.modules); "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

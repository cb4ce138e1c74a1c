"""Control layers without a daemon: the wire form, the command-line form, the protocol's
frame rules, the preprocessors (OpenCV's Canny among them) and ControlNet discovery from
headers (original single files, diffusers folders and single files, pickles refused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paintbridge.backend.jobs import preprocess
from paintbridge.backend.models import controlnets
from paintbridge.plugin import controls
from paintbridge.plugin.protocol import (
    ErrorCode,
    FrameSpec,
    Limits,
    ProtocolError,
    parse_preprocess,
    parse_submit,
    submit_header,
)

pytestmark = pytest.mark.fast


# --------------------------------------------------------------------------- wire form


def test_an_item_gets_its_defaults_and_its_type_decides_the_preprocessor() -> None:
    item = controls.check_item({"type": "scribble"})
    assert item == {"type": "scribble", "model": None, "strength": 1.0, "start": 0.0,
                    "end": 1.0, "preprocess": None}
    assert controls.preprocessor(item) == "scribble"
    assert controls.preprocessor(controls.check_item({"type": "depth"})) == "none"
    assert controls.preprocessor(controls.check_item({"type": "canny",
                                                      "preprocess": "none"})) == "none"


@pytest.mark.parametrize("raw, words", [
    ({}, "type is required"),
    ({"type": "sketchy"}, "'sketchy' is unknown"),
    ({"type": "scribble", "strength": 2.5}, "strength = 2.5 is outside 0..2"),
    ({"type": "scribble", "strength": True}, "strength must be a number"),
    ({"type": "scribble", "start": 0.6, "end": 0.4}, "start (0.6) must be before end"),
    ({"type": "scribble", "preprocess": "blur"}, "preprocess must be one of"),
    ({"type": "depth", "preprocess": "depth_midas"}, "needs annotator weights"),
    ({"type": "scribble", "weight": 1}, "unknown key(s) weight"),
    ({"type": "scribble", "model": ""}, "model must be a non-empty string"),
])
def test_a_wrong_item_is_refused_with_its_key_named(raw: dict, words: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        controls.check_item(raw, "controls[1]")
    assert words in str(err.value) and "controls[1]" in str(err.value)


def test_the_command_line_spec() -> None:
    item, path = controls.parse_spec("scribble:lines.png")
    assert path == "lines.png" and item["type"] == "scribble" and item["model"] is None
    item, path = controls.parse_spec("canny/none:edges.png:control_v11p_sd15_canny:0.7")
    assert (item["preprocess"], item["model"], item["strength"]) == \
        ("none", "control_v11p_sd15_canny", 0.7)
    for bad in ("scribble", "scribble:", "scribble:a.png:m:x", "a:b:c:d:e"):
        with pytest.raises(ValueError):
            controls.parse_spec(bad)


# --------------------------------------------------------------------------- protocol


def _frame(width: int, height: int, fmt: str = "rgba8", role: str = "control"
           ) -> tuple[FrameSpec, bytes]:
    spec = FrameSpec(role, width, height, fmt)
    return spec, bytes(spec.nbytes)


def _submit(kind: str, frames: list[tuple[FrameSpec, bytes]], params: dict,
            size: tuple[int, int] | None = None, **extra: object):
    header = submit_header("j1", kind, params, [f[0] for f in frames], size=size)
    header.update(extra)
    return parse_submit(header, [f[1] for f in frames], Limits())


def test_one_control_frame_per_item_in_any_pixel_format() -> None:
    image, mask = _frame(96, 64, role="image"), _frame(96, 64, "gray8", role="mask")
    req = _submit("inpaint", [image, mask, _frame(96, 64, "gray16"), _frame(96, 64)],
                  {"controls": [{"type": "depth"}, {"type": "scribble", "strength": 0.5}]})
    assert [c.format for c in req.controls] == ["gray16", "rgba8"]
    assert len(req.control_data) == 2 and req.params["controls"][1]["strength"] == 0.5
    txt = _submit("txt2img", [_frame(80, 48)], {"controls": [{"type": "scribble"}]},
                  size=(80, 48))
    assert txt.size == (80, 48) and len(txt.controls) == 1


@pytest.mark.parametrize("frames, params, size, code, words", [
    ([_frame(64, 64)], {}, (64, 64), ErrorCode.BAD_FRAME, "0 control(s)"),
    ([], {"controls": [{"type": "scribble"}]}, (64, 64), ErrorCode.BAD_FRAME,
     "but 0 'control' frame"),
    ([_frame(64, 32)], {"controls": [{"type": "scribble"}]}, (64, 64), ErrorCode.BAD_FRAME,
     "control frame 1 is 64x32; the region is 64x64"),
    ([_frame(64, 64)] * 7, {"controls": [{"type": "scribble"}] * 4}, (64, 64),
     ErrorCode.TOO_LARGE, "7 frames declared"),
    ([], {"controls": [{"type": "scribble"}] * 5}, (64, 64), ErrorCode.BAD_FIELD,
     "at most 4"),
    ([], {"controls": {"type": "scribble"}}, (64, 64), ErrorCode.BAD_FIELD, "must be a list"),
])
def test_control_frames_that_disagree_are_refused(frames, params, size, code, words) -> None:
    with pytest.raises(ProtocolError) as err:
        _submit("txt2img", frames, params, size=size)
    assert err.value.code == code and words in err.value.message
    assert err.value.field in ("controls", "frames", None)


def test_an_upscale_takes_no_controls() -> None:
    with pytest.raises(ProtocolError, match="not upscales"):
        _submit("upscale", [_frame(64, 64, role="image"), _frame(64, 64)],
                {"controls": [{"type": "tile"}]})


def test_the_preprocess_request() -> None:
    spec, data = _frame(32, 16)
    header = {"v": 1, "op": "preprocess", "type": "canny", "frames": [spec.to_json()]}
    req = parse_preprocess(header, [data], Limits())
    assert req.preprocess == "canny" and req.frame.width == 32
    with pytest.raises(ProtocolError, match="annotator weights"):
        parse_preprocess({**header, "preprocess": "openpose"}, [data], Limits())
    with pytest.raises(ProtocolError, match="exactly one 'control' frame"):
        parse_preprocess({**header, "frames": [spec.to_json()] * 2}, [data] * 2, Limits())


# --------------------------------------------------------------------------- preprocessors


def _layer(side: int = 64) -> np.ndarray:
    return np.zeros((side, side, 4), np.float32)


def test_scribble_takes_the_strokes_however_they_were_drawn() -> None:
    lines = np.zeros((64, 64), bool)
    lines[20, 10:50] = lines[10:50, 30] = True
    transparent = _layer()
    transparent[lines] = (0.1, 0.1, 0.1, 1.0)      # dark ink on a transparent layer
    paper = np.ones((64, 64, 4), np.float32)
    paper[lines, :3] = 0.0                          # dark ink on opaque white paper
    chalk = np.zeros((64, 64, 4), np.float32)
    chalk[..., 3] = 1.0
    chalk[lines, :3] = 0.9                          # light strokes on a dark opaque layer
    for layer in (transparent, paper, chalk):
        out = preprocess.run("scribble", layer)
        assert out.shape == (64, 64, 3)
        np.testing.assert_array_equal(out[..., 0] > 0.5, lines)


def test_invert_and_threshold_and_none() -> None:
    paper = np.ones((8, 8, 4), np.float32)
    paper[2, :, :3] = 0.0
    inverted = preprocess.run("invert", paper)
    assert inverted[2].min() == 1.0 and inverted[5].max() == 0.0
    see_through = _layer(8)
    assert preprocess.run("invert", see_through).max() == 0.0   # nothing drawn: black
    assert preprocess.run("none", see_through).max() == 0.0
    grey = np.full((8, 8, 4), 0.6, np.float32)
    grey[..., 3] = 1.0
    assert preprocess.run("threshold", grey).min() == 1.0


def test_canny_finds_a_squares_outline() -> None:
    layer = np.zeros((64, 64, 4), np.float32)
    layer[..., 3] = 1.0
    layer[16:48, 16:48, :3] = 1.0
    edges = preprocess.run("canny", layer)[..., 0] > 0.5
    ys, xs = np.nonzero(edges)
    assert edges.sum() > 100 and ys.min() >= 14 and ys.max() <= 49
    assert not edges[24:40, 24:40].any() and not edges[:10].any()


def test_a_thin_line_survives_scaling_down_to_the_models_size() -> None:
    big = np.zeros((1024, 1024, 3), np.float32)
    big[500:502, 100:900] = 1.0   # a 2 px stroke
    kept = preprocess.fit(big, 64, 64, lines=True)
    averaged = preprocess.fit(big, 64, 64, lines=False)
    assert kept.max() > 0.9 and averaged.max() < 0.2


# --------------------------------------------------------------------------- discovery


def _safetensors(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """A real safetensors file with these tensors (zeros): headers are all discovery reads."""
    import torch
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(s) for k, s in shapes.items()}, str(path))
    return path


def test_discovery_reads_layout_architecture_and_type_from_headers(tmp_path: Path) -> None:
    root = tmp_path / "ControlNet"
    _safetensors(root / "control_v11p_sd15_scribble.safetensors", {
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "control_model.input_hint_block.0.weight": (16, 3, 3, 3)})
    _safetensors(root / "sdxl" / "controlnet-canny-sdxl-1.0.safetensors", {
        "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
        "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k.weight": (640, 640),
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048)})
    _safetensors(root / "sdxl" / "controlnet-depth-sdxl-1.0-small.safetensors", {
        "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight": (1280, 2048)})
    _safetensors(root / "control_v11f1p_sd15_depth.safetensors", {"unrelated": (2,)})
    (root / "control_v11p_sd15_openpose.pth").write_bytes(b"\x80\x04not really")
    folder = root / "lineart-folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel",
                                                    "cross_attention_dim": 1024}))
    _safetensors(folder / "diffusion_pytorch_model.safetensors", {"x": (1,)})
    odd = _safetensors(root / "odd-width-tile.safetensors", {
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (32, 99)})
    found = {e.name: controlnets.inspect(e) for e in controlnets.discover(root)}
    sd15 = found["control_v11p_sd15_scribble"]
    assert (sd15.layout, sd15.arch, sd15.cross_dim, sd15.type, sd15.config, sd15.error) == \
        ("original", "sd1", 768, "scribble", "controlnet_v1", None)
    xl = found["sdxl/controlnet-canny-sdxl-1.0"]
    assert (xl.layout, xl.arch, xl.type, xl.config, xl.error) == \
        ("diffusers", "sdxl", "canny", "controlnet_xl", None)
    assert found["sdxl/controlnet-depth-sdxl-1.0-small"].config == "controlnet_xl_small"
    assert "not a ControlNet" in (found["control_v11f1p_sd15_depth"].error or "")
    pose = found["control_v11p_sd15_openpose"]
    assert pose.type == "pose" and "pickle" in (pose.error or "")
    lineart = found["lineart-folder"]
    assert (lineart.layout, lineart.arch, lineart.type, lineart.error) == \
        ("folder", "sd2", "lineart", None)
    assert "odd-width-tile.config.json" in (found["odd-width-tile"].error or "")
    odd.with_name("odd-width-tile.config.json").write_text("{}")
    again = controlnets.inspect(controlnets.ControlNetEntry("odd-width-tile", odd))
    assert again.error is None and again.cross_dim == 99 and again.arch is None


def test_the_folders_users_already_have(tmp_path: Path) -> None:
    a1111 = tmp_path / "webui"
    for d in ("models/Stable-diffusion", "models/ControlNet",
              "extensions/sd-webui-controlnet/models"):
        (a1111 / d).mkdir(parents=True)
    comfy = tmp_path / "ComfyUI"
    for d in ("models/checkpoints", "models/controlnet"):
        (comfy / d).mkdir(parents=True)
    found = controlnets.default_dirs([a1111 / "models/Stable-diffusion",
                                      comfy / "models/checkpoints"])
    assert set(found) == {a1111 / "models/ControlNet", comfy / "models/controlnet",
                          a1111 / "extensions/sd-webui-controlnet/models"}


def test_types_from_the_names_people_download() -> None:
    names = {"control_v11p_sd15_scribble": "scribble", "control_v11p_sd15s2_lineart_anime":
             "lineart", "control_v11f1p_sd15_depth": "depth", "controlnet-canny-sdxl-1.0":
             "canny", "control_v11p_sd15_normalbae": "normal", "t2i-openposexl": "pose",
             "control_v11p_sd15_seg": "segmentation", "control_v11f1e_sd15_tile": "tile",
             "control_v11p_sd15_softedge": "softedge", "mystery": None}
    assert {n: controlnets.type_from_name(n) for n in names} == names


def test_the_shipped_sample_is_listed_for_the_embedded_model() -> None:
    library = controlnets.ControlNetLibrary([])
    entry = library.pick("scribble", 64)
    assert entry is not None and entry.layout == "folder" and entry.error is None
    assert library.pick("scribble", 768) is None and library.pick("depth", 64) is None

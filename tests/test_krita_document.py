"""The Krita document adapter on real Krita documents (kritarunner, offscreen), through a
real daemon: 8-bit, 16-bit integer and 32-bit float; soft selections; result layers and
batch groups; CMYK refused; the source layer byte-identical."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import DaemonProc
from tests.krita.harness import KritaHome, kritarunner, require_krita

DEPTHS = {"U8": "bgra8", "U16": "bgra16", "F32": "rgbaf32"}


@pytest.fixture(scope="module")
def findings(daemon: DaemonProc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_krita()
    home = KritaHome(tmp_path_factory.mktemp("krita-doc"))
    home.install()
    out = home.root / "findings.json"
    rc = kritarunner(home, "kritadoc_check", [str(out), daemon.endpoint])
    log = (home.root / "kritarunner-kritadoc_check.log").read_text(errors="replace")
    assert out.is_file(), f"kritarunner rc={rc}, no findings:\n{log[-3000:]}"
    data = json.loads(out.read_text())
    assert "exception" not in data, data["exception"]
    return data


@pytest.mark.parametrize("depth", DEPTHS)
def test_reads_region_and_soft_selection(findings: dict[str, Any], depth: str) -> None:
    f = findings[depth]
    assert f["format"] == f["image_format"] == DEPTHS[depth]
    assert f["bounds"] == [17, 11, 26, 22]          # 20×16 core + 3 px soft ring
    assert f["kind"] == "inpaint"
    assert f["region"] == [5, 0, 50, 45]            # grown by 4 + padding 8, clamped
    assert f["image_ok"], "the crop differs from the layer's pixels"
    assert f["mask_format"] == "gray8" and f["mask_ok"]
    assert f["mask_values"] == [0, 63, 127, 191, 255], "soft edges lost"


@pytest.mark.parametrize("depth", DEPTHS)
def test_patch_layer_round_trip(findings: dict[str, Any], depth: str) -> None:
    f = findings[depth]
    assert f["patch_roundtrip"] and f["patch_outside_zero"]


@pytest.mark.parametrize("depth", DEPTHS)
def test_generated_layer_above_source(findings: dict[str, Any], depth: str) -> None:
    f = findings[depth]
    assert f["connected"] and f["job"] == ["done", None]
    assert f["names"] == ["a red square [seed 11]"]
    assert f["stack"] == [["Background", "paintlayer", True],
                          ["a red square [seed 11]", "paintlayer", True]]
    assert f["result_colorspace"] == ["RGBA", depth]
    a = f["alpha"]
    assert a["centre"] == pytest.approx(1.0)
    assert a["outside_max"] == 0.0 and a["outside_zero"], "pixels outside the selection"
    assert f["source_identical"]


def test_batch_goes_into_group_with_one_visible(findings: dict[str, Any]) -> None:
    f = findings["U8"]
    assert f["batch_job"] == ["done", None]
    assert f["batch_names"] == ["batch [seed 3]", "batch [seed 4]"]
    assert f["batch_stack"] == [
        ["Background", "paintlayer", True],
        ["batch [2 variations]", "grouplayer", True,
         [["batch [seed 4]", "paintlayer", False], ["batch [seed 3]", "paintlayer", True]]],
        ["a red square [seed 11]", "paintlayer", True]]
    assert f["batch_source_identical"]
    assert f["group_key_stable"] and f["toggled"] == [False, True]


def test_cmyk_refused_with_message(findings: dict[str, Any]) -> None:
    c = findings["cmyk"]
    assert c["refused"] and "CMYK" in c["message"] and "Nothing was sent" in c["message"]
    assert not c["sent"] and c["unchanged"]


def test_float_layers_are_rgba_order(findings: dict[str, Any]) -> None:
    # (1, 0, 0, 1) written as float R,G,B,A reads back as 8-bit B,G,R,A = pure red
    assert findings["float_to_u8"] == [0, 0, 255, 255, 255, 0, 0, 255]


@pytest.mark.parametrize("depth", DEPTHS)
def test_upscale_opens_a_new_document(findings: dict[str, Any], depth: str) -> None:
    """The selection's box (26×22) ×2 in a new document of the layer's colour space, with
    the result as its only layer; the source document keeps its layers and pixels."""
    f = findings[depth]
    assert f["upscale_job"] == ["done", None]
    assert f["upscale_names"] == ["Upscaled ×2 [seed 5]"]
    d = f["upscale_doc"]
    assert d["size"] == [52, 44] and d["documents"] == 1
    assert d["stack"] == [["Upscaled ×2 [seed 5]", "paintlayer", True]]
    assert d["colorspace"] == ["RGBA", depth]
    assert d["min_alpha"] == pytest.approx(1.0)
    assert f["upscale_source_identical"]

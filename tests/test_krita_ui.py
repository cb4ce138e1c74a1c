"""The docker in the real Krita (xvfb-run krita), plugin installed by `paintbridge install
krita`, a real daemon: generate into a selection, cancel mid-job, daemon stopped → clear
error, "Start local daemon" → reconnects and works. Saves a screenshot of the docker."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paintbridge.plugin import controls
from paintbridge.plugin.editors import CHOICE, CONTROL_EDITORS, TEXT, control_values
from paintbridge.plugin.params import INT32_MAX, PARAMS
from paintbridge.plugin.protocol import Limits
from tests.conftest import TinyModels, start_daemon
from tests.krita.harness import HERE, REPO, KritaHome, require_krita, run_krita_gui

EMBEDDED = REPO / "backend" / "default_model" / "model_index.json"
SAMPLE_LORAS = REPO / "samples" / "loras"
UI_LIMIT = 400
W, H = 128, 96
CONTROL_BOX = (40, 20, 88, 68)    # a 48 px triangle's outline on the "lines" layer


def _control_mask() -> tuple[np.ndarray, np.ndarray]:
    """(the filled triangle, its 4 px outline) on the test's 128x96 canvas."""
    from tools.training.control import outline
    from tools.training.data import shape_mask

    return (shape_mask("triangle", CONTROL_BOX, W)[:H],
            outline("triangle", CONTROL_BOX, 4, W)[:H])


def _control_case() -> dict[str, Any]:
    outline = _control_mask()[1]
    return {"box": CONTROL_BOX, "outline": "".join("1" if v else "0" for v in outline.ravel())}


def _model_setup(tiny_models: TinyModels) -> tuple[list[str], dict[str, Any]]:
    """Daemon arguments and the daemon config file (read by the daemon that the docker's
    "Start local daemon" starts): the embedded default model once it is trained, else the
    tiny inpainting model."""
    if EMBEDDED.is_file():   # and the sample LoRA trained for it
        return [], {"threads": 1, "lora_dirs": [str(SAMPLE_LORAS)]}
    return (["--models", str(tiny_models.models_dir), "--no-embedded", "--default-model",
             "tiny-inpainting"],
            {"model_dirs": [str(tiny_models.models_dir)], "default_model": "tiny-inpainting",
             "threads": 1})


@pytest.fixture(scope="module")
def ui(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_krita(full=True)
    home = KritaHome(tmp_path_factory.mktemp("krita-ui"))
    home.install()
    args, config = _model_setup(tiny_models)
    cfg_file = home.config / "paintbridge" / "config.json"
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text(json.dumps(config))
    if not args:
        args = ["--config", str(cfg_file)]
    daemon = start_daemon(home.root, *args, wait=False)   # starts while Krita starts
    out = home.root / "out"
    out.mkdir()
    test_cfg = home.root / "test.json"
    test_cfg.write_text(json.dumps({"out": str(out), "daemon_pid": daemon.proc.pid,
                                    "limit": UI_LIMIT - 20,
                                    **({"control": _control_case()} if EMBEDDED.is_file()
                                       else {})}))
    env = home.env(PAINTBRIDGE_ENDPOINT=daemon.endpoint,
                   PAINTBRIDGE_KRITA_TEST_DRIVER=str(HERE / "ui_driver.py"),
                   PAINTBRIDGE_KRITA_TEST_CONFIG=str(test_cfg))
    result: dict[str, Any] = {}
    try:
        rc, log = run_krita_gui(home, env, UI_LIMIT)
        path = out / "result.json"
        assert path.is_file(), f"krita rc={rc}, no result:\n{log[-4000:]}"
        result = json.loads(path.read_text())
        result["_rc"], result["_out"], result["_log"] = rc, str(out), log[-4000:]
        rc_file = home.config / "kritarc"
        result["_kritarc"] = rc_file.read_text(errors="replace") if rc_file.is_file() else ""
    finally:
        if result.get("daemon2_pid"):
            try:
                os.kill(result["daemon2_pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        daemon.stop()
    artifacts = os.environ.get("PAINTBRIDGE_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        for name in ("docker.png", "docker-batch.png", "docker-control.png", "window.png",
                     "result.json"):
            if (out / name).is_file():
                shutil.copy(out / name, Path(artifacts) / f"krita-{name}")
    return result


def test_ui_script_completed(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error", "") + "\n" + ui["_log"]
    assert ui["_rc"] == 0 and ui["docker_found"]


def test_generate_into_selection(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error")
    assert ui["running_after_click"]
    assert ui["layers_1"] == [["Background", "paintlayer", True],
                              ["a red apple [seed 42]", "paintlayer", True]]
    c = ui["compare_1"]
    assert c["inside_changed"] > 0.9 * c["inside_total"], c
    assert c["outside_changed"] == 0, c
    assert ui["source_identical_1"]
    assert ui["size_1"] == [128, 96] and ui["selection_1"] == [40, 30, 32, 24]
    assert "Added 1 layer" in ui["message_1"] and "seed 42" in ui["message_1"]
    assert Path(ui["_out"], "docker.png").is_file()


def test_cancel_leaves_document_unchanged(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error")
    assert ui["preview_seen"]
    assert ui["cancel_state"] == "cancelled" and "Cancelled" in ui["message_cancel"]
    assert ui["layers_cancel"] == ui["layers_1"]
    assert ui["unchanged_after_cancel"] and ui["source_identical_cancel"]


def test_daemon_killed_mid_job_changes_nothing(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error")
    assert ui["progress_lost"] == "connection lost: waiting for the daemon…" or \
        "lost" in ui["message_crash"], (ui["progress_lost"], ui["message_crash"])
    assert ui["idle_after_crash"]
    assert ui["layers_crash"] == ui["layers_1"] and ui["unchanged_after_crash"]


def test_daemon_down_is_reported(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error")
    assert "Not connected" in ui["status_down"]
    assert ui["start_button_visible"]
    assert "No paintbridge daemon answers" in ui["message_down"]
    assert ui["layers_down"] == ui["layers_1"]


def test_restarted_daemon_reconnects_and_works(ui: dict[str, Any]) -> None:
    assert ui.get("ok"), ui.get("error")
    assert ui["daemon2_pid"]
    assert ui["layers_2"] == [
        ["Background", "paintlayer", True],
        ["a red apple [2 variations]", "grouplayer", True,
         [["a red apple [seed 43]", "paintlayer", False],
          ["a red apple [seed 42]", "paintlayer", True]]],
        ["a red apple [seed 42]", "paintlayer", True]]
    assert ui["source_identical_2"]
    assert ui["settings_saved"]["prompt"] == "a red apple"
    assert ui["settings_saved"]["count"] == 2
    assert ui["thumbnail_toggles"] and ui["action_toggles"]


def test_settings_persist_in_kritarc(ui: dict[str, Any]) -> None:
    """Krita quit normally and saved the docker's settings for the next session."""
    assert ui.get("ok"), ui.get("error")
    assert ui["_rc"] == 0, ui["_log"]
    section = ui["_kritarc"].split("[paintbridge]", 1)[-1]
    line = next(x for x in section.splitlines() if x.startswith("settings="))
    assert "a red apple" in line and '"count": 2' in line
    assert ui["actions"] == {"paintbridge_generate": "Ctrl+Shift+Return",
                             "paintbridge_cancel": "Ctrl+Shift+K",
                             "paintbridge_toggle_result": "Ctrl+Shift+H"}
    assert ui["random_seed"] == ["Random", None] and ui["reused_seed"] == ["42", 42]


def test_docker_is_built_from_the_param_table(ui: dict[str, Any]) -> None:
    """One widget per row of plugin/params.py, unset values shown as words, ranges from the
    daemon's limits, advanced rows folded away."""
    assert ui.get("ok"), ui.get("error")
    kinds = {p.name: "QPlainTextEdit" if p.multiline else "LoraList" if p.wire == "loras"
             else "QComboBox" if p.type is str and (p.choices or p.from_daemon)
             else "QLineEdit" if p.type is str
             else "QSpinBox" if p.type is int and p.widget_range()[1] <= INT32_MAX
             else "QDoubleSpinBox" for p in PARAMS}
    assert ui["param_widgets"] == kinds
    assert ui["param_widgets"]["seed"] == "QDoubleSpinBox"     # seeds reach 2**32 - 1
    assert [ui["param_widgets"][n] for n in ("prompt", "model", "steps", "guidance")] == [
        "QPlainTextEdit", "QComboBox", "QSpinBox", "QDoubleSpinBox"]
    assert ui["special_texts"] == {p.name: p.unset_text if p.unset is not None else ""
                                   for p in PARAMS if p.type is not str}
    assert ui["steps_range"] == [0, Limits().max_steps] and ui["advanced_folded"]
    assert ui["models"][0].startswith("Daemon default (") and len(ui["models"]) > 1
    assert ui["upscalers"][0] == "Lanczos (no upscaler model)"


def test_control_row_is_built_from_the_control_fields(ui: dict[str, Any]) -> None:
    """A control row has one widget per key of plugin/controls.py's FIELDS, of the kind
    plugin/editors.py says, with the key's help; a fresh row is the fields' defaults."""
    assert ui.get("ok"), ui.get("error")
    kinds = {CHOICE: "QComboBox", TEXT: "QLineEdit"}
    assert ui["control_widgets"] == {
        e.name: kinds.get(e.kind, "QSpinBox" if e.integer else "QDoubleSpinBox")
        for e in CONTROL_EDITORS}
    assert list(ui["control_widgets"]) == [f.name for f in controls.FIELDS]
    assert ui["control_tips"] == {e.name: e.help for e in CONTROL_EDITORS}
    assert ui["control_layer_picked"] and ui["control_rows_left"] == 0
    fresh = ui["control_fresh"]
    assert fresh["name"] == "Background"
    assert fresh["values"] == control_values({})
    assert fresh["item"] == controls.check_item({"type": "scribble"})


def test_loras_from_the_daemon_steer_the_result(ui: dict[str, Any]) -> None:
    """The docker lists the daemon's LoRAs; one picked from the list, weighted, saved with
    the settings and its trigger words put into the prompt, paints the colour word the
    embedded model learnt from it ("a gray circle on a blue background" on the test's
    gradient); removed, the same prompt paints much less of it."""
    assert ui.get("ok"), ui.get("error")
    if not EMBEDDED.is_file():
        pytest.skip("the sample LoRA is for the embedded model")
    assert {"gray", "gray-kohya"} <= set(ui["lora_offered"])
    assert ui["lora_text"] == "gray-kohya" and ui["lora_saved"] == "gray-kohya"
    assert ui["prompt_with_triggers"].startswith("gray")
    assert "Added 1 layer" in ui["lora_message_with"], ui["lora_message_with"]
    assert "Added 1 layer" in ui["lora_message_without"]
    (with_lora, n_with), (without, n_without) = ui["gray_share_with"], ui["gray_share_without"]
    assert n_with == n_without > 0.9 * 32 * 24     # the selection, opaque (its corners soft)
    # the test's gradient is bluish grey where the selection is, so some of it counts as
    # grey without the LoRA too (0.39); with it, 0.66
    assert with_lora > 0.5 and with_lora - without > 0.15, (with_lora, without)
    assert ui["lora_text_removed"] == ""


def test_live_follows_the_brush(ui: dict[str, Any]) -> None:
    """Live on, four strokes painted through Krita's API: the preview layer (one, above the
    painted layer) follows each; a still canvas sends nothing; Apply adds an ordinary layer;
    Live off removes the preview and leaves the painted layer exactly as painted."""
    assert ui.get("ok"), ui.get("error")
    assert ui["live_on"] and ui["live_off"], ui["live_message_on"]
    assert ui["live_results"] >= 4 and ui["live_sent"] >= 4
    assert ui["live_sent_after_still"] == ui["live_sent"]
    before, during, after = ui["layers_before_live"], ui["live_layers"], ui["layers_after_live"]
    assert before[0][0] == "Background"
    live = during[1]
    assert live[0].startswith("Live: a red apple [seed ") and live[1] == "paintlayer"
    assert during[:1] + during[2:] == before
    applied = after[1]
    assert applied[0].startswith("a red apple [seed ") and applied[1:] == ["paintlayer", True]
    assert after[:1] + after[2:] == before
    assert "Applied" in ui["live_apply_message"]
    assert ui["live_source_is_strokes_only"]
    costs = ui["live_costs"]
    assert {"overview_128_rows", "region_512_crc", "whole_4000x3000_crc"} <= set(costs)
    assert costs["overview_sees_a_dab"], costs    # the sampled rows see a 30 px dab ...
    x, y, w, h = costs["dab_found_at"]            # ... and where it is
    assert x <= 3000 and x + w >= 3030 and y <= 2030 and y + h >= 2000, costs


def test_expand_grows_the_canvas_with_a_painted_strip(ui: dict[str, Any]) -> None:
    """Expand 24 px on the right: nothing is resized while the job runs; then the canvas is
    24 px wider, a new layer paints the whole new strip opaquely, the painted layer keeps
    its pixels, and Krita's Undo shrinks the canvas back."""
    assert ui.get("ok"), ui.get("error")
    w, h = ui["size_1"]
    assert ui["expand_size_while_running"] == [w, h]
    assert ui["expand_size"] == [w + 24, h], ui["expand_message"]
    assert ui["expand_strip_alpha"] == [255]
    assert ui["expand_source_identical"]
    assert ui["expand_saved"] == "24 right"
    undo = ui["expand_undo"]
    assert undo["size"] == [w, h] and undo["source_identical"], undo


def test_upscale_opens_the_result_in_a_new_document(ui: dict[str, Any]) -> None:
    """Upscale ×2 from the docker: a new document twice the selection's bounding box, shown
    in the window, the result its only layer; the source document is as it was."""
    u = ui["upscale"]
    assert u["documents"] == 1, u["message"]
    x, y, w, h = u["selection"]
    assert u["size"] == [2 * w, 2 * h]
    assert len(u["layers"]) == 1 and u["layers"][0][0].startswith("Upscaled ×2")
    assert u["message"].startswith(f"Added a new {2 * w}×{2 * h} image with 1 layer")
    assert u["shown"] and u["source_identical"] and u["source_layers_same"]
    assert u["saved"] == "2"


def test_a_control_layer_steers_generate(ui: dict[str, Any]) -> None:
    """An artist's triangle outline on its own layer, picked as a scribble control, and
    "a red shape on a white background" on Generate: a new layer with a red triangle where
    the outline is ("a red shape" alone paints it too, with a muddy background that bleeds
    into its edges: IoU 0.36-0.66 over three seeds, against 0.70-0.76). "Map" puts the
    scribble map into a layer; the lines layer and the source stay as they were; with the
    lines layer active, Generate refuses (it is never the layer edited)."""
    assert ui.get("ok"), ui.get("error")
    if not EMBEDDED.is_file():
        pytest.skip("the sample ControlNet is for the embedded model")
    check_control_step(ui["control"], Path(ui["_out"]))


def check_control_step(res: dict[str, Any], out: Path) -> None:
    """What ui_driver's control step saw and saved in ``out``: the map, the steered
    result, the layers as they were, the refusal."""
    from tools.training.data import COLOURS
    from tools.training.evaluate import classify_pixels, classify_shape, largest_component

    assert res["layer_offered"] and res["type"] == "scribble"
    assert "shapes-scribble" in res["models_offered"]
    assert "Control map: lines (scribble)" in res["map_message"], res["map_message"]
    assert res["layers_map_removed"]
    filled, outline = _control_mask()
    mapped = np.fromfile(out / "control-map.bgra", np.uint8).reshape(H, W, 4)
    assert np.array_equal(mapped[..., 2] > 127, outline) and mapped[..., 3].min() == 255
    assert res["result_name"] == "a red shape on a white background [seed 7]", res["message"]
    bgra = np.fromfile(out / "control-result.bgra", np.uint8).reshape(H, W, 4)
    rgb = bgra[..., [2, 1, 0]]
    red = largest_component(classify_pixels(rgb) == list(COLOURS).index("red"))
    iou = (red & filled).sum() / (red | filled).sum()
    assert iou >= 0.5 and classify_shape(red) == "triangle", (iou, classify_shape(red))
    assert res["lines_as_drawn"] and res["source_identical"]
    assert "is a control layer" in res["refused_message"] and not res["refused_running"]

"""The GIMP 3 plug-in in the real GIMP 3.0.4, driven in batch mode against a real daemon.

GIMP 3 exists only in Debian trixie, so it runs in a trixie chroot that
scripts/ensure_gimp_chroot.sh builds once into a cache folder. The chroot shares the host's
network, so the plug-in inside reaches the daemon on the host's loopback. Installing uses
`paintbridge install gimp` as a user would; tests/gimp/cases.py calls the registered
procedures non-interactively inside GIMP and records what it saw; the tests here judge it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from paintbridge.plugin import controls
from paintbridge.plugin.params import INT32_MAX, PARAMS
from paintbridge.plugin.shared import stage_text

from .conftest import DaemonProc, free_port, start_daemon
from .gimp.harness import (
    GIMP_TIMEOUT_S,
    assert_changed_inside_only,
    assert_one_result_above,
    assert_untouched,
    daemon_args,
    ensure_chroot,
    fresh_profile,
    paintbridge,
    popen_gimp,
    result,
    run_gimp,
)

SEL_BOX = [32, 24, 56, 44]           # tests/gimp/cases.py SEL as x1, y1, x2, y2
GIMP_ARGS = ("run-mode", "image", "num-drawables", "drawables")   # every image procedure's
DAEMON_ARGS = ["endpoint", "server-key", "client-key"]

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="the GIMP 3 chroot needs root (debootstrap, chroot)")


#: the control layer, then one argument per key of plugin/controls.py
CONTROL_ARGS = ["control-drawable", *(f"control-{f.name.replace('_', '-')}"
                                      for f in controls.FIELDS)]
CONTROL_SIDE, CONTROL_BOX = 64, (10, 8, 50, 48)


def _control_outline() -> tuple[Any, Any]:
    """(the filled triangle, its 3 px outline) on the control case's 64x64 page."""
    from tools.training.control import outline
    from tools.training.data import shape_mask

    return shape_mask("triangle", CONTROL_BOX), outline("triangle", CONTROL_BOX, 3)


def _control_case() -> dict[str, Any]:
    outline = _control_outline()[1]
    return {"side": CONTROL_SIDE, "outline": "".join("1" if v else "0" for v in outline.ravel())}


@pytest.fixture(scope="module")
def gimp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Any]]:
    """Install the plug-in into a fresh GIMP profile in the chroot and start a daemon."""
    chroot = ensure_chroot()
    work, inside, plug_ins = fresh_profile(chroot, "paintbridge-test-")
    log_dir = tmp_path_factory.mktemp("gimp")
    daemon = None
    try:
        daemon = start_daemon(log_dir, *daemon_args(request))
        env = {"PB_ENDPOINT": daemon.endpoint,
               "PB_DEAD_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"}
        if not daemon_args(request):   # the embedded model and its scribble ControlNet
            env["PB_CONTROL"] = json.dumps(_control_case())
        yield {"chroot": chroot, "work": work, "inside": inside, "plug_ins": plug_ins,
               "log_dir": log_dir, "env": env}
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def cases(gimp: dict[str, Any]) -> dict[str, Any]:
    """Every procedure case in one GIMP run (tests/gimp/cases.py)."""
    run = run_gimp(gimp["chroot"], gimp["inside"], f"{gimp['inside']}/cases.py", gimp["env"])
    (gimp["log_dir"] / "gimp.log").write_text(run.stdout + run.stderr)
    out = gimp["work"] / "results.json"
    assert out.exists(), f"GIMP wrote no results:\n{run.stderr[-4000:]}"
    return {"results": json.loads(out.read_text()), **gimp}


@pytest.fixture(scope="module")
def ui(gimp: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The interactive pieces under a private Xvfb; the chroot shares the network namespace,
    so GTK inside reaches the X server's abstract socket without any mount.

    For "Start daemon" the installed record's command becomes a stand-in inside the chroot
    (the real one is a host path): it leaves its arguments in a file, and this fixture starts
    a real daemon on the host with them, as the real command would have."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed on the host (apt-get install xvfb)")
    work, inside = gimp["work"], gimp["inside"]
    stand_in = work / "serve-stand-in.sh"
    stand_in.write_text(f"#!/bin/sh\necho \"$@\" > {inside}/serve-request.tmp\n"
                        f"mv {inside}/serve-request.tmp {inside}/serve-request\n")
    stand_in.chmod(0o755)
    record = gimp["plug_ins"] / "paintbridge" / "paintbridge-install.json"
    record.write_text(json.dumps({**json.loads(record.read_text()),
                                  "command": [f"{inside}/serve-stand-in.sh"]}))
    display = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists())
    server = subprocess.Popen([xvfb, f":{display}", "-screen", "0", "1024x768x24",
                               "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    started: DaemonProc | None = None
    try:
        time.sleep(1.0)
        env = {**gimp["env"], "DISPLAY": f":{display}",
               "PB_START_ENDPOINT": f"tcp://127.0.0.1:{free_port()}"}
        gimp_log = gimp["log_dir"] / "gimp-ui.log"
        with gimp_log.open("wb") as log_file:
            proc = popen_gimp(gimp["chroot"], inside, f"{inside}/ui_cases.py", env, log_file)
        deadline = time.monotonic() + GIMP_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            asked = work / "serve-request"
            if started is None and asked.exists():
                args = asked.read_text().split()      # serve --bind ENDPOINT
                assert args[:2] == ["serve", "--bind"], args
                started = start_daemon(gimp["log_dir"], *daemon_args(request),
                                       endpoint=args[2], wait=False)
            time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log = gimp_log.read_text(errors="replace")
    finally:
        server.terminate()
        server.wait(10)
        if started is not None:
            started.stop()
    out = work / "ui_results.json"
    assert out.exists(), f"GIMP wrote no results:\n{log[-4000:]}"
    return json.loads(out.read_text())


def test_arguments_are_the_parameter_table(cases: dict[str, Any]) -> None:
    """Each procedure has one argument per row of plugin/params.py, in order, named, labelled,
    ranged and defaulted by the row (strength per procedure; GIMP's 32-bit ints narrow the
    seed), then the connection's three."""
    procs = result(cases, "arguments")
    kinds = {"paintbridge-inpaint": "inpaint", "paintbridge-img2img": "img2img",
             "paintbridge-generate": "txt2img", "paintbridge-expand": "inpaint",
             "paintbridge-upscale": "upscale"}
    for proc, kind in kinds.items():
        args = {a["name"]: a for a in procs[proc]}
        names = [a["name"] for a in procs[proc] if a["name"] not in GIMP_ARGS]
        own = {"paintbridge-expand": ["expand-pixels", "expand-sides"],
               "paintbridge-upscale": ["upscale-factor"]}.get(proc, CONTROL_ARGS)
        assert names == [p.arg_name for p in PARAMS] + own + DAEMON_ARGS, (proc, names)
        for p in PARAMS:
            arg = args[p.arg_name]
            assert arg["label"] == p.label and arg["help"].startswith(p.help), arg
            if p.unset_text:
                assert f"{p.unset:g}: {p.unset_text}" in arg["help"], arg
            if p.choices and not p.from_daemon:
                assert arg["choices"] == list(p.choices), arg
            if p.type in (int, float):
                lo, hi = p.widget_range(int_max=INT32_MAX)
                assert (arg["minimum"], arg["maximum"]) == (lo, hi), arg
        assert args["strength"]["default_value"] == {"inpaint": 1.0, "img2img": 0.6,
                                                     "txt2img": 1.0, "upscale": 0.0}[kind]
        assert args["seed"]["maximum"] == INT32_MAX and args["seed"]["default_value"] == -1
        assert args["grow"]["default_value"] == 4 and args["sampler"]["default_value"] == \
            "default"


def test_control_arguments_are_the_control_table(cases: dict[str, Any]) -> None:
    """The generating procedures' control arguments: the layer, then one per key of
    plugin/controls.py, labelled, ranged and defaulted by its row; a key with choices is a
    list of them (an optional one starts at "not set")."""
    procs = result(cases, "arguments")
    for proc in ("paintbridge-inpaint", "paintbridge-img2img", "paintbridge-generate"):
        args = {a["name"]: a for a in procs[proc]}
        assert "Drawable" in args["control-drawable"]["type"], args["control-drawable"]
        for f, name in zip(controls.FIELDS, CONTROL_ARGS[1:], strict=True):
            arg = args[name]
            assert arg["help"] == f.help and f.label.lower() in arg["label"].lower(), arg
            if f.choices:
                offered = arg["choices"]
                assert offered[len(offered) - len(f.choices):] == list(f.choices), arg
                assert len(offered) == len(f.choices) + (not f.required), arg
                start = f.default if f.default is not None else offered[0]
                assert arg["default_value"] == start, arg
            elif f.type is str:
                assert arg["default_value"] == (f.default or ""), arg
            else:
                assert (arg["minimum"], arg["maximum"], arg["default_value"]) == \
                    (f.lo, f.hi, f.default), arg
        assert args["control-type"]["default_value"] == "scribble"


def test_control_arguments_read_back_as_a_control_layer(cases: dict[str, Any]) -> None:
    """No control layer: no control. With one: its id and name, every key's default ("not
    set" as empty, so the daemon chooses), then the values set, as the wire item."""
    res = result(cases, "controls")
    assert res["none"] == []
    default = res["default"]
    assert (default["layer"], default["name"]) == (default["top"], "top")
    unset = {f.name: "" if f.default is None and not f.required else f.default
             for f in controls.FIELDS}
    assert default["values"] == {**unset, "type": "scribble"}
    assert default["item"] == controls.check_item({"type": "scribble"})
    chosen = {"type": "canny", "model": "my-canny", "strength": 0.5, "start": 0.1,
              "end": 0.8, "preprocess": "none"}
    assert res["set"]["values"] == chosen
    assert res["set"]["item"] == controls.check_item(chosen)


def test_arguments_read_back_as_settings(cases: dict[str, Any]) -> None:
    """The plug-in's reading of its arguments: "no value" values (seed -1, steps and
    guidance 0, an empty model, padding -1) become None, set values arrive as they are."""
    res = result(cases, "settings")
    for kind in ("inpaint", "img2img", "txt2img"):
        expected = {p.name: p.default_for(kind) if p.name == "strength" else p.start
                    for p in PARAMS}
        assert res[kind] == {"mode": kind, **expected}, kind
        assert {k for k, v in expected.items() if v is None} >= {"model", "steps", "guidance",
                                                                "seed", "padding"}
    set_values = {"model": "other", "strength": 0.3, "steps": 20, "guidance": 7.5,
                  "sampler": "euler_a", "seed": 5, "count": 2, "padding": 0, "grow": 1,
                  "feather": 2, "loras": "ink:0.8, detail"}
    assert res["set"] == {**{p.name: p.start for p in PARAMS}, **set_values}
    assert res["set_wire"] == [{"name": "ink", "weight": 0.8}, {"name": "detail", "weight": 1.0}]


def test_progress_says_which_model_loads(cases: dict[str, Any]) -> None:
    """The first job on a fresh daemon loads its model: GIMP's progress bar says so, in the
    words every host uses, before it counts steps."""
    res = result(cases, "progress")
    assert res["state"] == "done" and res["delivered"] == ["a red apple [seed 7]"], res
    texts = res["texts"]
    loading = f"Paintbridge: Inpainting: {stage_text('loading', model=res['model'])}"
    assert loading in texts, texts
    steps = [t for t in texts if t.startswith("Paintbridge: Inpainting: Step ")]
    assert steps and texts.index(loading) < texts.index(steps[0]), texts
    assert steps[-1] == "Paintbridge: Inpainting: Step 3/3", texts


@pytest.mark.parametrize("case", ["inpaint_rgb8", "inpaint_u16_linear", "inpaint_float"])
def test_inpaint_selection(cases: dict[str, Any], case: str) -> None:
    res = result(cases, case)
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    name = assert_one_result_above(res, "bottom")
    assert name == "a red apple [seed 7]"
    assert_changed_inside_only(res)
    (layer,) = res["results"]
    assert layer["box"] == SEL_BOX and layer["opaque"] == 24 * 20
    if case != "inpaint_rgb8":
        # Sent and written at the image's depth: most 16-bit values are not 8-bit values
        # scaled by 257, which an 8-bit round trip would produce.
        assert layer["not_8bit"] > 0.5 * layer["rgb_values"], layer


def test_inpaint_grayscale_image(cases: dict[str, Any]) -> None:
    res = result(cases, "inpaint_gray8")
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    assert_one_result_above(res, "bottom")
    assert_changed_inside_only(res)


def test_layer_mask_stands_for_its_layer_inside_a_group(cases: dict[str, Any]) -> None:
    """The user's mask is selected and "bottom" sits in a group: the result goes into the
    group directly above "bottom", and the mask is left as it was."""
    res = result(cases, "inpaint_in_group_on_mask")
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    top, folder = res["tree"]
    assert top["name"] == "top" and folder["name"] == "folder"
    assert [c["name"] for c in folder["children"]] == ["a red apple [seed 7]", "bottom"]
    assert_changed_inside_only(res)


def test_img2img_whole_layer(cases: dict[str, Any]) -> None:
    res = result(cases, "img2img_layer")
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    assert [n["name"] for n in res["tree"]] == ["a red apple [seed 7]", "top", "bottom"]
    new = res["tree"][0]
    assert (new["x"], new["y"], new["w"], new["h"]) == (4, 6, 40, 30)  # the layer, not canvas
    assert res["changes"]["outside"] == 0 and res["changes"]["inside"] > 0


def test_generate_into_selection(cases: dict[str, Any]) -> None:
    res = result(cases, "generate_selection")
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    assert_one_result_above(res, "bottom")
    assert_changed_inside_only(res)
    assert res["results"][0]["box"] == SEL_BOX


def test_batch_goes_into_a_group(cases: dict[str, Any]) -> None:
    res = result(cases, "batch_group")
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    top, group, bottom = res["tree"]
    assert (top["name"], bottom["name"]) == ("top", "bottom")
    assert group["name"] == "a red apple [2 variations]"
    assert [c["name"] for c in group["children"]] == ["a red apple [seed 7]",
                                                      "a red apple [seed 8]"]
    assert_changed_inside_only(res)


def test_all_changes_in_one_undo_group(cases: dict[str, Any]) -> None:
    """The plug-in's own add_results on a real image: every change the undo stack records
    (inserting layers, moving them) happens between one group start and its end."""
    res = result(cases, "undo_group")
    calls = res["calls"]
    assert calls[0] == "undo_group_start" and calls[-1] == "undo_group_end", calls
    assert calls.count("undo_group_start") == 1 and calls.count("undo_group_end") == 1
    assert calls.count("insert_layer") == 3  # the group and its two layers


def test_daemon_stopped_is_an_error_and_changes_nothing(cases: dict[str, Any]) -> None:
    res = result(cases, "daemon_stopped")
    assert res["status"] == "execution-error"
    assert "no paintbridge daemon answers" in res["message"]
    assert "paintbridge serve" in res["message"]
    assert_untouched(res)
    assert [n["name"] for n in res["tree"]] == ["top", "bottom"]
    assert res["changes"] == {"inside": 0, "inside_total": 480, "outside": 0}


def test_expand_grows_the_image_with_a_painted_strip(cases: dict[str, Any]) -> None:
    """Filters ▸ Paintbridge ▸ Expand canvas, 16 px on the right, no selection: the image
    is 16 px wider, a new layer above "bottom" covers exactly the new strip, opaque in
    every pixel (grow and feather 0: nothing of the picture), the user's layers keep their
    pixels, and GIMP records the resize for Undo."""
    res = result(cases, "expand")
    assert res["status"] == "success", res["message"]
    assert res["before"]["size"] == [96, 72] and res["after"]["size"] == [112, 72]
    for key in ("bottom", "bottom_mask", "top"):
        assert res["after"][key] == res["before"][key], key
    assert [n["name"] for n in res["tree"]] == ["top", "a red apple [seed 7]", "bottom"]
    (layer,) = res["results"]
    assert layer["box"] == [96, 0, 112, 72] and layer["opaque"] == 16 * 72, layer
    assert res["undo_enabled"]
    stopped = result(cases, "expand_daemon_stopped")
    assert stopped["status"] == "execution-error"
    assert stopped["after"] == stopped["before"] and stopped["results"] == []


def test_upscale_returns_a_new_image_and_leaves_this_one(cases: dict[str, Any]) -> None:
    """Filters ▸ Paintbridge ▸ Upscale ×2 with a 24×20 selection on a 16-bit linear image:
    a new 48×40 image in the same precision, returned to the caller, holding one opaque
    result layer; the user's image keeps its layers, selection and size. With no daemon it
    fails with a message and makes no image."""
    res = result(cases, "upscale")
    assert res["status"] == "success", res.get("message")
    assert_untouched(res)
    assert [n["name"] for n in res["tree"]] == ["top", "bottom"]
    new = res["new"]
    assert new["size"] == [48, 40] and new["precision"] == "u16-linear"
    assert [n["name"] for n in new["tree"]] == ["Upscaled ×2: a red apple [seed 7]"]
    (layer,) = new["results"]
    assert layer["box"] == [0, 0, 48, 40] and layer["opaque"] == 48 * 40, layer
    assert res["images"] == 1
    stopped = result(cases, "upscale_daemon_stopped")
    assert stopped["status"] == "execution-error" and stopped["images"] == 0
    assert_untouched(stopped)


def test_inpaint_without_selection_explains(cases: dict[str, Any]) -> None:
    res = result(cases, "inpaint_no_selection")
    assert res["status"] == "execution-error"
    assert "needs a selection" in res["message"]
    assert_untouched(res)
    assert [n["name"] for n in res["tree"]] == ["top", "bottom"]


def test_settings_dialog_shows_every_row(ui: dict[str, Any]) -> None:
    """Every row of plugin/params.py is a field of the dialog: prompts as text boxes, the
    advanced rows in a folded "Advanced" section; OK keeps the values."""
    res = ui["settings_dialog"]
    assert "exception" not in res, res.get("exception")
    assert (res["ok"], res["seen"], res["prompt"]) == (True, ["Inpaint selection"], "a cat")
    rows = res["rows"]
    assert list(rows) == [p.arg_name for p in PARAMS]
    for p in PARAMS:
        row = rows[p.arg_name]
        assert row["shown"], (p.name, row)
        assert row["folded"] == (["Advanced", False] if p.advanced else None), (p.name, row)
        assert (row["widget"] == "TextView") == p.multiline, (p.name, row)
    assert list(res["controls"]) == CONTROL_ARGS
    assert all(c["shown"] for c in res["controls"].values()), res["controls"]


def test_dialog_shows_why_no_daemon_answers(ui: dict[str, Any]) -> None:
    """With a connection problem the dialog still opens, so the endpoint and keys can be
    corrected: its "Daemon" expander is open, says why, and holds the three fields, the
    client key with a file chooser button."""
    res = ui["settings_problem"]
    assert "exception" not in res, res.get("exception")
    assert res["ok"] is True and res["seen"] == ["Inpaint selection"]
    found = res["widgets"]
    assert "Expander:open" in found, found
    assert "label:Paintbridge: the daemon requires keys." in found, found
    assert "label:Daemon (endpoint and keys of a remote daemon)" in found, found
    assert "label:Client key" in found and "FileChooserButton" in found, found
    # what was typed stays, and the file picked with the button is the client key
    assert res["server_key"] == "K" * 40 and res["client_key"] == res["picked"]


def test_interactive_run_lets_the_keys_be_corrected(ui: dict[str, Any]) -> None:
    """The plug-in's own run from the menu with an unusable server key: the dialog shows why,
    the key is corrected there, and the filter then connects and adds its layer."""
    res = ui["interactive_fix"]
    assert "exception" not in res, res.get("exception")
    assert res["seen"] == ["Inpaint selection"], res
    assert len(res["problem"]) == 1 and "Keys not usable" in res["problem"][0], res
    assert res["status"] == "success", res["message"]
    assert res["layers"] == ["fixed [seed 3]", "bottom"]


def test_no_daemon_offer_explains(ui: dict[str, Any]) -> None:
    """A non-loopback endpoint: no Start button, only how to start the daemon."""
    res = ui["offer"]
    assert "exception" not in res, res.get("exception")
    title, text, detail = res["seen"]
    assert title == "Paintbridge" and "No paintbridge daemon answers" in text
    assert "paintbridge serve" in detail
    assert res["connected"] is False   # dismissed: the filter returns CANCEL, changes nothing


def test_start_daemon_button_starts_the_recorded_command(ui: dict[str, Any]) -> None:
    """Loopback endpoint, no daemon: "Start daemon" runs the installer's recorded command
    (here a stand-in that has the test start a real daemon) and waits until it answers."""
    res = ui["start"]
    assert "exception" not in res, res.get("exception")
    title, text, detail = res["seen"]
    assert "No paintbridge daemon answers" in text and "keeps running" in detail
    assert res["offered"] and res["connected"] and res["models"]


def test_cancel_leaves_the_image_unchanged(ui: dict[str, Any]) -> None:
    res = ui["cancel"]
    assert "exception" not in res, res.get("exception")
    assert res["seen"] == ["Paintbridge: Inpainting"]
    assert res["state"] == "cancelled" and res["step"] < res["total"] and res["cancelled"]
    assert res["delivered"] == [] and res["layers"] == ["bottom"]


def test_uninstall_removes_what_gimp_ran(cases: dict[str, Any], ui: Any) -> None:
    """After GIMP ran the plug-in (leaving __pycache__ behind), uninstall empties the folder."""
    plug_ins = cases["plug_ins"]
    assert (plug_ins / "paintbridge" / "paintbridge.py").exists()
    out = paintbridge("install", "gimp", "--plug-ins", str(plug_ins), "--uninstall")
    assert out.returncode == 0, out.stderr
    assert list(plug_ins.iterdir()) == []


def test_a_control_layer_steers_generate(cases: dict[str, Any]) -> None:
    """paintbridge-generate with a triangle outline on another layer as its scribble
    control and "a red shape on a white background": a red triangle where the outline is,
    in a new layer; the page and the lines layer as they were."""
    if "control" not in cases["results"]:
        pytest.skip("the sample ControlNet is for the embedded model")
    from tools.training.data import COLOURS
    from tools.training.evaluate import classify_pixels, classify_shape, largest_component

    res = result(cases, "control")
    assert res["status"] == "success", res.get("message")
    assert res["lines_as_drawn"] and res["page_as_it_was"]
    assert res["offset"] == [0, 0] and res["size"] == [CONTROL_SIDE, CONTROL_SIDE]
    rgba = np.frombuffer(bytes.fromhex(res["rgba"]), np.uint8).reshape(CONTROL_SIDE,
                                                                       CONTROL_SIDE, 4)
    red = largest_component(classify_pixels(rgba[..., :3]) == list(COLOURS).index("red"))
    filled = _control_outline()[0]
    iou = (red & filled).sum() / (red | filled).sum()
    assert iou >= 0.5 and classify_shape(red) == "triangle", (iou, classify_shape(red))

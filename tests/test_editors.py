"""plugin.editors: which editor each field of the three schemas gets (generation parameters,
control keys, a LoRA's weights), decided without Qt; the Krita docker makes one widget per
editor (tests/test_krita_ui.py proves that in the real Krita)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from paintbridge.plugin import controls, editors, loraspec
from paintbridge.plugin.editors import CHOICE, LINES, LORAS, NUMBER, TEXT
from paintbridge.plugin.params import BY_NAME, INT32_MAX, PARAMS
from paintbridge.plugin.session import ControlLayer

pytestmark = pytest.mark.fast


def test_every_parameter_row_gets_the_editor_its_type_says() -> None:
    eds = editors.params_editors(PARAMS)
    assert list(eds) == [p.name for p in PARAMS]
    for p in PARAMS:
        e = eds[p.name]
        want = (LORAS if p.wire == "loras" else LINES if p.multiline
                else CHOICE if p.type is str and (p.choices or p.from_daemon)
                else TEXT if p.type is str else NUMBER)
        assert e.kind == want, p.name
        assert "_" not in e.label and e.label.lower() == p.label.replace("_", "").lower()
        if e.kind == NUMBER:
            assert (e.lo, e.hi) == p.widget_range() and e.step == p.step
            assert e.unset_text == (p.unset_text if p.unset is not None else "")
    assert [eds[n].kind for n in ("prompt", "model", "sampler", "steps", "loras")] == [
        LINES, CHOICE, CHOICE, NUMBER, LORAS]
    assert eds["model"].offered == "model" and eds["upscaler"].offered == "upscaler"
    assert eds["sampler"].offered == "" and ("euler_a", "Euler ancestral") in eds["sampler"].choices
    # seeds reach 2**32 - 1: beyond a 32-bit box, so not an integer box
    assert eds["steps"].integer and not eds["seed"].integer and eds["seed"].hi > INT32_MAX
    assert eds["steps"].unset_text == "Model default" and eds["steps"].lo == 0


def test_every_control_key_gets_an_editor() -> None:
    eds = {e.name: e for e in editors.CONTROL_EDITORS}
    assert list(eds) == [f.name for f in controls.FIELDS]
    t = eds["type"]   # required: no empty choice, the first type to begin with
    assert t.kind == CHOICE and t.choices == tuple(controls.TYPES.items())
    assert t.default == "scribble"
    pre = eds["preprocess"]   # optional: "not set" first, then every preprocessor
    assert pre.kind == CHOICE and pre.choices[0] == ("", "Usual for the type")
    assert pre.choices[1:] == tuple(controls.PREPROCESSORS.items()) and pre.default == ""
    model = eds["model"]      # the ControlNets come from the daemon's hello
    assert model.kind == CHOICE and model.offered == "controlnet" and model.choices == ()
    for name in ("strength", "start", "end"):
        f, e = controls.BY_NAME[name], eds[name]
        assert e.kind == NUMBER and (e.lo, e.hi, e.default) == (f.lo, f.hi, f.default)
        assert not e.integer and e.decimals == 2 and e.label == f.label
        assert f.help[1:] in e.help      # the field's help, as a sentence with its range
    assert eds["strength"].step == pytest.approx(0.1) and eds["end"].step == pytest.approx(0.05)


def test_a_new_field_kind_by_kind() -> None:
    """What a row added to controls.FIELDS would get: a list, a number box, a text field."""
    listed = editors.for_control(controls.Field("mode", str, None, help="how it mixes",
                                                choices={"a": "A", "b": "B"}))
    assert listed.kind == CHOICE and listed.choices == (("", "Default"), ("a", "A"), ("b", "B"))
    assert listed.label == "Mode" and listed.help == "How it mixes"
    number = editors.for_control(controls.Field("blur_radius", int, 2, 0, 40, "blur first"))
    assert number.kind == NUMBER and number.integer and number.step == 2
    assert (number.lo, number.hi, number.default) == (0, 40, 2)
    assert number.label == "Blur radius" and number.help == "Blur first (0–40)"
    text = editors.for_control(controls.Field("hint", str, None, label="Hint"))
    assert text.kind == TEXT and text.default == ""
    with pytest.raises(AssertionError, match="no range"):
        editors.for_control(controls.Field("size", float, 1.0))


def test_a_row_added_to_controls_fields_reaches_the_editors_and_the_control() -> None:
    """One row appended to controls.FIELDS (before anything reads it, as an edit of the file
    would) is edited, taken by ControlLayer and sent, with no other edit."""
    code = """if True:
        import json
        from paintbridge.plugin import controls
        row = controls.Field("mix", str, None, help="how it mixes", label="Mix",
                             choices={"add": "Add", "multiply": "Multiply"})
        controls.FIELDS = (*controls.FIELDS, row)
        controls.BY_NAME["mix"] = row
        from paintbridge.plugin import editors
        from paintbridge.plugin.session import ControlLayer
        e = editors.CONTROL_EDITORS[-1]
        values = editors.control_values({"type": "canny", "mix": "multiply"})
        control = ControlLayer("key-1", name="lines", **values)
        print(json.dumps({"editor": [e.name, e.kind, e.choices], "values": values,
                          "mix": control.mix}))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    out = json.loads(done.stdout)
    assert out["editor"] == ["mix", CHOICE, [["", "Default"], ["add", "Add"],
                                             ["multiply", "Multiply"]]]
    assert out["values"]["mix"] == "multiply" and out["values"]["type"] == "canny"
    assert out["mix"] == "multiply"


def test_what_a_control_row_shows_becomes_the_wire_item() -> None:
    shown = {e.name: e.default for e in editors.CONTROL_EDITORS}   # a fresh row
    values = editors.control_values(shown)
    assert values == {"type": "scribble", "model": "", "strength": 1.0, "start": 0.0,
                      "end": 1.0, "preprocess": ""}
    control = ControlLayer("key-1", name="lines", **values)
    assert control.item() == controls.check_item({"type": "scribble"})
    picked = editors.control_values({**shown, "type": "canny", "model": "my-canny",
                                     "strength": 0.5, "preprocess": "none"})
    assert ControlLayer("k", **picked).item() == controls.check_item(
        {"type": "canny", "model": "my-canny", "strength": 0.5, "preprocess": "none"})
    assert editors.control_values({"type": "depth"})["strength"] == 1.0   # the rest: defaults
    with pytest.raises(ValueError, match="not control keys: colour"):
        editors.control_values({"colour": "red"})


def test_a_loras_row_is_made_from_the_lora_grammar() -> None:
    (weight,) = editors.LORA_EDITORS
    assert weight.name == "weight" and weight.kind == NUMBER
    assert (weight.lo, weight.hi, weight.default) == (-loraspec.MAX_WEIGHT, loraspec.MAX_WEIGHT,
                                                      1.0)
    # the box's whole range is what the grammar takes, and no more
    assert loraspec.check([{"name": "a", "weight": weight.hi}, {"name": "b",
                                                                "weight": weight.lo}], 8)
    with pytest.raises(ValueError):
        loraspec.check([{"name": "a", "weight": weight.hi + 0.01}], 8)
    item = editors.lora_item("ink")
    assert item == {"name": "ink", "weight": 1.0} and loraspec.format_text([item]) == "ink"
    editors.set_lora_value(item, "weight", 0.8)
    assert loraspec.format_text([item]) == "ink:0.8"


def test_a_weight_set_to_the_text_encoders_drops_it() -> None:
    """A1111's NAME:TE:UNET keeps both until the weight equals the text encoder's."""
    (item,) = loraspec.parse_text("ink:0.5:0.8") or []
    editors.set_lora_value(item, "weight", 0.6)
    assert loraspec.format_text([item]) == "ink:0.5:0.6"
    editors.set_lora_value(item, "weight", 0.5)
    assert item == {"name": "ink", "weight": 0.5}
    assert loraspec.format_text([item]) == "ink:0.5"


def test_the_advanced_rows_are_labelled_like_the_param_table() -> None:
    eds = editors.params_editors(PARAMS)
    assert eds["colour_match"].label == "Colour match"
    assert eds["refine"].choices == tuple(BY_NAME["refine"].choices.items())

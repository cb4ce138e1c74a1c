"""The parameter table drives the validator and the session's settings: every row checked."""

from __future__ import annotations

import pytest

from paintbridge.plugin import params, protocol
from paintbridge.plugin.params import BY_NAME, INT32_MAX, PARAMS
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError
from paintbridge.plugin.session import GenerationSettings

pytestmark = pytest.mark.fast

LIMITS = Limits()


def _valid(p: params.Param) -> object:
    if p.wire == "loras":
        return [{"name": "ink", "weight": 0.5}]
    if p.type is str:
        return next(iter(p.choices)) if p.choices and not p.from_daemon else "x"
    hi = p.limit(LIMITS)
    return p.type(hi)


@pytest.mark.parametrize("p", PARAMS, ids=lambda p: p.name)
def test_every_row_is_what_the_validator_checks(p: params.Param) -> None:
    for kind in protocol.KINDS:
        out = protocol.validate_params(kind, {}, LIMITS)
        assert out[p.name] == p.default_for(kind)
    assert protocol.validate_params("inpaint", {p.name: _valid(p)}, LIMITS)[p.name] == _valid(p)
    if p.wire == "loras":
        for wrong in ("ink:1", [{"name": "ink", "weight": 5}], [{"name": "a"}] * 9):
            with pytest.raises(ProtocolError) as exc:
                protocol.validate_params("inpaint", {p.name: wrong}, LIMITS)
            assert exc.value.field == p.name
    elif p.type is not str:
        with pytest.raises(ProtocolError) as exc:
            protocol.validate_params("inpaint", {p.name: p.limit(LIMITS) + 1}, LIMITS)
        assert exc.value.field == p.name
        with pytest.raises(ProtocolError):
            protocol.validate_params("inpaint", {p.name: "1"}, LIMITS)
    else:
        with pytest.raises(ProtocolError) as exc:
            protocol.validate_params("inpaint", {p.name: 1}, LIMITS)
        assert exc.value.code == ErrorCode.BAD_FIELD
    if not p.nullable:
        with pytest.raises(ProtocolError, match="must not be null"):
            protocol.validate_params("inpaint", {p.name: None}, LIMITS)


def test_limits_named_in_the_table_follow_the_daemon() -> None:
    small = Limits(max_steps=10, max_count=2)
    assert BY_NAME["steps"].limit(small) == 10
    with pytest.raises(ProtocolError):
        protocol.validate_params("img2img", {"steps": 11}, small)
    assert protocol.validate_params("img2img", {"count": 2}, small)["count"] == 2


def test_open_lower_bound_and_kind_defaults() -> None:
    with pytest.raises(ProtocolError, match="would change nothing"):
        protocol.validate_params("img2img", {"strength": 0.0}, LIMITS)
    assert protocol.validate_params("img2img", {}, LIMITS)["strength"] == 0.6
    assert protocol.validate_params("inpaint", {}, LIMITS)["strength"] == 1.0


def test_settings_have_one_attribute_per_row() -> None:
    s = GenerationSettings()
    assert set(s.values) == set(BY_NAME)
    for p in PARAMS:
        assert getattr(s, p.name) == p.start
    with pytest.raises(AttributeError):
        s.no_such_setting = 1
    with pytest.raises(TypeError):
        GenerationSettings(no_such_setting=1)
    with pytest.raises(ValueError):
        GenerationSettings(steps="many")
    assert GenerationSettings(guidance=5).guidance == 5.0     # ints are fine for floats


def test_settings_send_only_what_the_kind_uses() -> None:
    s = GenerationSettings(prompt="p", strength=0.3, seed=7, steps=None)
    assert "strength" not in s.params("txt2img")
    assert s.params("img2img")["strength"] == 0.3
    assert "steps" not in s.params("inpaint") and s.params("inpaint")["seed"] == 7
    for kind in protocol.KINDS:   # whatever the settings send, the daemon takes
        protocol.validate_params(kind, GenerationSettings().params(kind), LIMITS)


def test_widget_values_stand_for_none_and_host_limits_narrow() -> None:
    seed = BY_NAME["seed"]
    assert seed.widget_range() == (-1, 2**32 - 1)
    assert seed.widget_range(int_max=INT32_MAX) == (-1, INT32_MAX)
    assert seed.from_widget(-1) is None and seed.to_widget(None) == -1
    assert seed.from_widget(5) == 5
    steps = BY_NAME["steps"]
    assert steps.widget_range(Limits(max_steps=50)) == (0, 50) and steps.unset_text
    assert BY_NAME["count"].widget_range() == (1, LIMITS.max_count)
    assert BY_NAME["negative_prompt"].arg_name == "negative-prompt"
    assert params.plain_label(BY_NAME["prompt"].label) == "Prompt"


def test_enums_are_their_strings_on_the_wire() -> None:
    assert protocol.Kind.INPAINT == "inpaint" and f"{protocol.Kind.INPAINT}" == "inpaint"
    assert protocol.encode_header({"code": ErrorCode.BUSY}) == b'{"code":"busy"}'
    assert protocol.parse_submit(
        protocol.submit_header("j", "txt2img", {}, [], size=(8, 8)), [], LIMITS
    ).kind is protocol.Kind.TXT2IMG


def test_lora_text_is_one_grammar_for_hosts_prompts_and_the_wire() -> None:
    from paintbridge.plugin import loraspec

    row = BY_NAME["loras"]
    assert row.wire_value("ink:0.8, detail, <lora:x:0.5:1>") == [
        {"name": "ink", "weight": 0.8}, {"name": "detail", "weight": 1.0},
        {"name": "x", "weight": 1.0, "text_encoder_weight": 0.5}]   # A1111: NAME:TE:UNET
    assert row.wire_value(None) is None and row.wire_value("") is None
    assert row.from_widget("") is None           # an empty field: no LoRAs
    assert loraspec.parse_one("ink:te=0:unet=0.7") == {"name": "ink", "weight": 0.7,
                                                        "text_encoder_weight": 0.0}
    assert loraspec.format_text(row.wire_value("ink:0.8, detail, x:0.5:1")) == \
        "ink:0.8, detail, x:0.5:1"
    text, items = loraspec.from_prompt("a red circle, <lora:purple:0.8>, on white")
    assert text == "a red circle, on white" and items == [{"name": "purple", "weight": 0.8}]
    assert loraspec.from_prompt("no tags <here>") == ("no tags <here>", [])
    for bad, words in (("ink:x", "'x' is not a weight"), ("ink:9", "outside -4..4"),
                       (":1", "needs a name"), ("ink:1:2:3", "NAME:TE:UNET"),
                       ("ink:foo=1", "NAME:TE:UNET")):
        with pytest.raises(ValueError, match=words):
            row.wire_value(bad)
    assert "at most 8, weights -4–4" in row.range_text()

"""plugin.offers: what the docker's lists offer, read from a daemon's hello. The hellos here
are written the way backend/door/daemon.py writes them; tests/test_controller.py reads a
real daemon's through the controller."""

from __future__ import annotations

from typing import Any

import pytest

from paintbridge.plugin import offers
from paintbridge.plugin.limits import Limits

pytestmark = pytest.mark.fast

HELLO: dict[str, Any] = {
    "default_model": "sd15", "models": ["sd15", "sdxl"],
    "upscalers": ["4x-ultra"],
    "loras": [{"name": "ink", "arch": "sd15", "triggers": ["inkwash", "brush", "ink", "sumi"]},
              {"name": "plain", "arch": None, "triggers": []}, {"arch": "no name"}, "odd"],
    "controlnets": [{"name": "shapes-scribble", "type": "scribble", "arch": "sd15"},
                    {"type": "depth"}],
    "limits": {**Limits().to_json(), "max_steps": 50, "from_a_newer_daemon": 1},
    "features": ["live"],
}


def test_lists_the_daemon_fills() -> None:
    assert offers.choices(HELLO, "model") == [("", "Daemon default (sd15)"), ("sd15", "sd15"),
                                              ("sdxl", "sdxl")]
    assert offers.choices({}, "model") == [("", "Daemon default")]
    assert offers.choices(HELLO, "upscaler") == [("", "Lanczos (no upscaler model)"),
                                                 ("4x-ultra", "4x-ultra")]
    assert offers.choices(HELLO, "controlnet") == [("", "Auto"),
                                                   ("shapes-scribble", "shapes-scribble")]
    assert offers.choices(None, "controlnet") == [("", "Auto")]
    # a stored choice this daemon does not have stays choosable, and says so
    assert offers.choices(HELLO, "model", "old")[-1] == ("old", "old (not offered)")
    assert offers.choices(HELLO, "model", "sdxl")[-1] == ("sdxl", "sdxl")
    assert offers.names({"models": "sd15"}, "models") == []          # not a list


def test_loras_limits_and_features() -> None:
    assert [lo["name"] for lo in offers.loras(HELLO)] == ["ink", "plain"]
    assert offers.loras({"loras": None}) == []
    limits = offers.limits(HELLO)
    assert limits == Limits(max_steps=50)                 # unknown keys left out
    assert offers.limits({}) is None and offers.limits({"limits": [1]}) is None
    assert offers.has_feature(HELLO, "live") and not offers.has_feature({}, "live")


def test_the_lora_lists_words() -> None:
    loras = offers.loras(HELLO)
    assert offers.add_lora_text(loras) == "Add LoRA…"
    assert offers.add_lora_text([]) == "Add LoRA… (the daemon has none)"
    assert [offers.lora_entry(lo) for lo in loras] == ["ink  [sd15]", "plain  [?]"]
    assert offers.describe_lora(loras, "ink") == \
        "ink [sd15]; trigger words: inkwash, brush, ink, sumi"
    assert offers.describe_lora(loras, "plain") == "plain [?]; trigger words: none"
    assert offers.describe_lora(loras, "gone") == "gone: this daemon does not offer it"
    assert offers.trigger_text(loras, "ink") == "inkwash, brush, ink"     # the first three
    assert offers.trigger_text(loras, "plain") == offers.trigger_text(loras, "gone") == ""


def test_trigger_words_go_into_the_prompt_once() -> None:
    assert offers.prompt_with("a cat  ", "inkwash, brush") == "a cat, inkwash, brush"
    assert offers.prompt_with("", "inkwash") == "inkwash"
    assert offers.prompt_with("a cat, INKWASH ", "inkwash") == "a cat, INKWASH "
    assert offers.prompt_with("a cat", "") == "a cat"

"""Which editor a host gives each field of a schema, decided without a toolkit.

Three schemas describe what a host edits: the generation parameters
(:data:`.params.PARAMS`), the keys of a control item (:data:`.controls.FIELDS`) and the
weights of a LoRA (:mod:`.loraspec`). Each field gets an :class:`Editor`: a choice list
for a field with choices (or whose choices the daemon offers), a number box with its range
for a number, a text field for a string. A host builds one widget per editor (krita/'s
``widgets.make``), so a row added to a schema reaches the hosts with no edit there.
Standard library only: the hosts import it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import controls, loraspec
from .params import INT32_MAX, Param, plain_label

CHOICE = "choice"    # one of a few values (a combo box)
NUMBER = "number"    # a number in lo..hi (a spin box)
TEXT = "text"        # a line of text
LINES = "lines"      # a few lines of text (prompts)
LORAS = "loras"      # the LoRA list (rows of name and weights)


@dataclass(frozen=True)
class Editor:
    """How a host edits one field: its kind, label, help and what the kind needs."""

    name: str
    kind: str
    label: str
    help: str = ""
    #: (value, label); "" is the empty choice (not set: the daemon decides)
    choices: tuple[tuple[str, str], ...] = ()
    #: the daemon's hello fills the choices (a key of plugin.offers.OFFERS)
    offered: str = ""
    lo: float = 0.0
    hi: float = 0.0
    step: float = 1.0
    decimals: int = 0
    #: a whole-number box; numbers beyond 32 bits (seeds) need a box that holds them
    integer: bool = False
    #: what a number box shows at ``lo`` when ``lo`` stands for "not set"
    unset_text: str = ""
    default: Any = None


def tip(help_text: str, range_text: str = "") -> str:
    """A field's help as a tooltip: a sentence, with its range when there is one."""
    text = help_text[:1].upper() + help_text[1:]
    return f"{text} ({range_text})" if range_text else text


def _num(value: float) -> str:
    return f"{value:g}"


# ------------------------------------------------------------------ generation parameters

def for_param(p: Param) -> Editor:
    """A parameter row's editor (its ranges from the daemon's defaults; a host narrows them
    with ``p.widget_range(limits)`` once the daemon announced its own)."""
    label = plain_label(p.label)
    if p.wire == "loras":
        return Editor(p.name, LORAS, label, p.help)
    if p.type is str:
        if p.multiline:
            return Editor(p.name, LINES, label, p.help, default=p.start)
        if p.choices or p.from_daemon:
            return Editor(p.name, CHOICE, label, p.help, tuple(p.choices.items()),
                          offered=p.name if p.from_daemon else "", default=p.start)
        return Editor(p.name, TEXT, label, p.help, default=p.start)
    lo, hi = p.widget_range()
    return Editor(p.name, NUMBER, label, p.help, lo=lo, hi=hi, step=p.step,
                  decimals=p.decimals, integer=p.type is int and hi <= INT32_MAX,
                  unset_text=p.unset_text if p.unset is not None else "",
                  default=p.to_widget(p.start))


def params_editors(rows: Iterable[Param]) -> dict[str, Editor]:
    return {p.name: for_param(p) for p in rows}


# ------------------------------------------------------------------ control items

#: what the empty choice of a control key says where the key does not say
UNSET_DEFAULT = "Default"
#: the fraction of a number's range one step of its box moves
STEPS_PER_RANGE = 20


def for_control(f: controls.Field) -> Editor:
    """A control key's editor: a choice list for a key with choices (the empty choice
    first unless the key is required) or whose choices the daemon offers, a number box
    over ``lo..hi``, else a text field (empty: not set)."""
    label = f.label or f.name.replace("_", " ").capitalize()
    if f.offered:
        return Editor(f.name, CHOICE, label, tip(f.help), offered=f.offered, default="")
    if f.choices:
        empty = () if f.required else ((("", f.unset_label or UNSET_DEFAULT),))
        first = next(iter(f.choices)) if f.required else ""
        return Editor(f.name, CHOICE, label, tip(f.help), empty + tuple(f.choices.items()),
                      default=f.default if f.default is not None else first)
    if f.type in (int, float):
        assert f.lo is not None and f.hi is not None, f"control key {f.name} has no range"
        integer = f.type is int
        step = (f.hi - f.lo) / STEPS_PER_RANGE
        return Editor(f.name, NUMBER, label, tip(f.help, f"{_num(f.lo)}–{_num(f.hi)}"),
                      lo=f.lo, hi=f.hi, step=max(1.0, round(step)) if integer else step,
                      decimals=0 if integer else 2, integer=integer,
                      default=f.default if f.default is not None else f.lo)
    return Editor(f.name, TEXT, label, tip(f.help), default=f.default or "")


CONTROL_EDITORS: tuple[Editor, ...] = tuple(for_control(f) for f in controls.FIELDS)


def control_values(shown: dict[str, Any]) -> dict[str, Any]:
    """What a control row's editors show, as ``ControlLayer`` values: every key of
    :data:`controls.FIELDS` ("" where a choice or text is not set)."""
    unknown = set(shown) - set(controls.BY_NAME)
    if unknown:
        raise ValueError(f"not control keys: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for e in CONTROL_EDITORS:
        value = shown.get(e.name, e.default)
        if e.kind == NUMBER:
            value = int(value) if e.integer else float(value)
        else:
            value = "" if value is None else str(value)
        out[e.name] = value
    return out


# ------------------------------------------------------------------ a LoRA's weights

#: the keys of a LoRA item a host edits in its row (loraspec's wire form): the weight
#: (the UNet's, and the text encoder's unless an A1111 ``NAME:TE:UNET`` set it apart)
LORA_EDITORS: tuple[Editor, ...] = (
    Editor("weight", NUMBER, "Weight",
           tip("how strongly the LoRA acts (the text encoder's weight too, unless "
               "NAME:TE:UNET sets it apart)",
               f"-{_num(loraspec.MAX_WEIGHT)}–{_num(loraspec.MAX_WEIGHT)}"),
           lo=-loraspec.MAX_WEIGHT, hi=loraspec.MAX_WEIGHT, step=0.05, decimals=2,
           default=1.0),
)


def lora_item(name: str) -> dict[str, Any]:
    """A LoRA newly picked from the list: its editors' defaults."""
    return {"name": name, **{e.name: e.default for e in LORA_EDITORS}}


def set_lora_value(item: dict[str, Any], key: str, value: float) -> None:
    """A LoRA row's editor changed: set it in the item; a text encoder weight that now
    equals the weight is dropped (``NAME:W`` says both)."""
    item[key] = value
    if key == "weight" and item.get("text_encoder_weight") == value:
        item.pop("text_encoder_weight")

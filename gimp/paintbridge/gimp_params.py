"""The procedures' generation arguments, made from the rows of ``plugin.params.PARAMS``.

One argument per row (its name with dashes, its label, help, range and default), so a new
row becomes a GIMP argument, and a field of the dialog, without a change here; and the
arguments read back as ``plugin.session.GenerationSettings``. GIMP's arguments cannot hold
"no value": a number row's ``unset`` value stands for it, an empty string for a string row
without a default. No GimpUi here: batch runs import it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402

from plugin.params import INT32_MAX, PARAMS, Param  # noqa: E402

RW = GObject.ParamFlags.READWRITE
#: the dialog's fields: the main ones, and those of its folded "Advanced" section
FIELDS = [p.arg_name for p in PARAMS if not p.advanced]
ADVANCED_FIELDS = [p.arg_name for p in PARAMS if p.advanced]


def help_text(p: Param) -> str:
    """The row's help, and what its "no value" value means (e.g. "-1: Random")."""
    if p.unset is None or not p.unset_text:
        return p.help
    return f"{p.help} ({p.unset:g}: {p.unset_text})"


def start(p: Param, kind: str) -> Any:
    """An argument's default: the row's own for this procedure's kind where it has one (the
    strength), else the value a fresh host starts at, as the widget holds it."""
    value = p.to_widget(p.default_for(kind) if kind in p.kind_defaults else p.start)
    if value is None:
        return "" if p.type is str else p.widget_range(int_max=INT32_MAX)[0]
    return value


def _choice(choices: Mapping[str, str]) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for i, (nick, label) in enumerate(choices.items()):
        choice.add(nick, i, label, "")
    return choice


def add_arguments(proc: Gimp.Procedure, kind: str) -> None:
    """Every row as an argument of ``proc`` (GIMP's integers are 32-bit: ranges narrow)."""
    for p in PARAMS:
        name, label, blurb, value = p.arg_name, p.label, help_text(p), start(p, kind)
        if p.type is str and p.choices and not p.from_daemon:
            proc.add_choice_argument(name, label, blurb, _choice(p.choices), value, RW)
        elif p.type is str:
            proc.add_string_argument(name, label, blurb, value, RW)
        elif p.type is int:
            lo, hi = p.widget_range(int_max=INT32_MAX)
            proc.add_int_argument(name, label, blurb, int(lo), int(hi), int(value), RW)
        elif p.type is float:
            lo, hi = p.widget_range(int_max=INT32_MAX)
            proc.add_double_argument(name, label, blurb, lo, hi, float(value), RW)
        else:
            raise TypeError(f"no GIMP argument type for {p.name} ({p.type.__name__})")


def setting(p: Param, value: Any) -> Any:
    """An argument's value as the row's setting: its ``unset`` value, or an empty string for
    a row without a default (the model), is None."""
    return p.from_widget("" if p.type is str and value is None else value)


def settings_from_config(config: Gimp.ProcedureConfig, kind: str):  # -> GenerationSettings
    """The procedure's arguments as plugin/'s settings for a job of ``kind``."""
    from plugin.session import GenerationSettings

    return GenerationSettings(mode=kind, **{p.name: setting(p, config.get_property(p.arg_name))
                                            for p in PARAMS})


def add_expand_arguments(proc: Gimp.Procedure) -> None:
    """Expand's own two: how many pixels, and on which sides (plugin/expand.py)."""
    from plugin.expand import MAX_PIXELS, SIDE_LABELS

    proc.add_int_argument("expand-pixels", "Expand _by (px)",
                          "How many pixels the canvas grows by on each chosen side", 1,
                          MAX_PIXELS, 256, RW)
    proc.add_choice_argument("expand-sides", "_Sides", "Which sides of the canvas grow",
                             _choice(SIDE_LABELS), "right", RW)


def expansion_from_config(config: Gimp.ProcedureConfig):  # -> plugin.expand.Expansion
    from plugin.expand import Expansion

    return Expansion.of(config.get_property("expand-pixels"),
                        config.get_property("expand-sides"))


def add_upscale_arguments(proc: Gimp.Procedure) -> None:
    """Upscale's own: by how much (plugin.protocol.UPSCALE_FACTORS)."""
    from plugin.protocol import UPSCALE_FACTORS

    proc.add_int_argument("upscale-factor", "_Enlarge by",
                          "How many times wider and taller the new image is",
                          min(UPSCALE_FACTORS), max(UPSCALE_FACTORS), 2, RW)


def upscale_from_config(config: Gimp.ProcedureConfig) -> int:
    return int(config.get_property("upscale-factor"))


#: the control arguments of the generating procedures (one control layer; plugin/controls.py)
CONTROL_FIELDS = ["control-drawable", "control-type", "control-model", "control-strength"]


def add_control_arguments(proc: Gimp.Procedure) -> None:
    """A layer whose drawing steers the job (ControlNet), what it holds, which ControlNet
    (empty: one the daemon has for the type and the model) and how strongly."""
    from plugin.controls import MAX_STRENGTH, TYPES

    proc.add_drawable_argument("control-drawable", "_Control layer",
                               "A layer with your drawing (scribble, line art, depth…) that "
                               "steers the result; it is never changed. None: no control",
                               True, RW)
    proc.add_choice_argument("control-type", "Control _type",
                             "What the control layer holds", _choice(TYPES), "scribble", RW)
    proc.add_string_argument("control-model", "Control_Net",
                             "A ControlNet's name (`paintbridge models` lists them); empty: "
                             "one the daemon has for the type and the model", "", RW)
    proc.add_double_argument("control-strength", "Control st_rength",
                             "How strongly the control layer steers (0-2)", 0.0,
                             MAX_STRENGTH, 1.0, RW)


def controls_from_config(config: Gimp.ProcedureConfig) -> list:  # -> [ControlLayer]
    """The control layer the arguments name, as plugin/'s ControlLayer (none when unset)."""
    from plugin.session import ControlLayer

    if config.find_property("control-drawable") is None:
        return []
    drawable = config.get_property("control-drawable")
    if drawable is None:
        return []
    return [ControlLayer(str(drawable.get_id()), config.get_property("control-type"),
                         config.get_property("control-model") or None,
                         float(config.get_property("control-strength")),
                         name=drawable.get_name())]

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

from plugin import controls  # noqa: E402
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


def control_arg(f: controls.Field) -> str:
    """A control key's argument: ``control-`` and its name with dashes."""
    return "control-" + f.name.replace("_", "-")


#: the "not set" value of a control key's list (an optional key's choices): the daemon's
#: choice (the type's usual preprocessor...)
UNSET_CHOICE = "default"
#: the control arguments of the generating procedures, in order: the layer, then one per key
#: of plugin.controls.FIELDS (one control layer)
CONTROL_FIELDS = ["control-drawable", *(control_arg(f) for f in controls.FIELDS)]


def control_label(f: controls.Field) -> str:
    """"Control strength", "ControlNet": the key's label, said to be the control's."""
    if f.label.lower().startswith("control"):
        return f.label
    return f"Control {f.label[:1].lower()}{f.label[1:]}"


def add_control_arguments(proc: Gimp.Procedure) -> None:
    """A layer whose drawing steers the job (ControlNet), then one argument per key of
    plugin.controls.FIELDS: a list for a key with choices (an optional one starts at "not
    set"), text for a name (empty: not set), a number in the key's range."""
    proc.add_drawable_argument("control-drawable", "_Control layer",
                               "A layer with your drawing (scribble, line art, depth…) that "
                               "steers the result; it is never changed. None: no control",
                               True, RW)
    for f in controls.FIELDS:
        name, label = control_arg(f), control_label(f)
        if f.type is str and f.choices:
            choices = dict(f.choices)
            if not f.required:
                if UNSET_CHOICE in choices:
                    raise ValueError(f"control key {f.name}: '{UNSET_CHOICE}' is a choice")
                choices = {UNSET_CHOICE: "Default (the daemon's choice)", **choices}
            start = f.default if f.default is not None else next(iter(choices))
            proc.add_choice_argument(name, label, f.help, _choice(choices), start, RW)
        elif f.type is str:
            proc.add_string_argument(name, label, f.help, f.default or "", RW)
        elif f.type in (int, float):
            add = proc.add_int_argument if f.type is int else proc.add_double_argument
            add(name, label, f.help, f.type(f.lo), f.type(f.hi), f.type(f.default), RW)
        else:
            raise TypeError(f"no GIMP argument type for control key {f.name} "
                            f"({f.type.__name__})")


def controls_from_config(config: Gimp.ProcedureConfig) -> list:  # -> [ControlLayer]
    """The control layer the arguments name, as plugin/'s ControlLayer (none when unset):
    one value per key, "" where a key is not set."""
    from plugin.session import ControlLayer

    if config.find_property("control-drawable") is None:
        return []
    drawable = config.get_property("control-drawable")
    if drawable is None:
        return []
    values = {}
    for f in controls.FIELDS:
        value = config.get_property(control_arg(f))
        unset = f.choices is not None and not f.required and value == UNSET_CHOICE
        values[f.name] = "" if f.type is str and (unset or not value) else value
    return [ControlLayer(str(drawable.get_id()), name=drawable.get_name(), **values)]


def job_from_config(config: Gimp.ProcedureConfig, kind: str, expanding: bool):
    """(GenerationSettings, plugin.oneshot.JobSpec) from the procedure's arguments; a value
    that cannot be used is the plug-in's error."""
    from plugin.oneshot import JobSpec, PaintbridgeError

    try:
        return settings_from_config(config, kind), JobSpec(
            expansion=expansion_from_config(config) if expanding else None,
            upscale=upscale_from_config(config) if kind == "upscale" else 0,
            control_layers=controls_from_config(config))
    except ValueError as exc:
        raise PaintbridgeError(str(exc)) from exc

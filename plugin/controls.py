"""Control layers (ControlNet): the vocabulary, the wire form and the command-line form.

A job's ``params.controls`` is a list of up to ``max_controls`` items, each steering the
model with one extra frame (role ``control``, the same region as the image, in the order of
the list)::

    {"type": "scribble", "model": null, "strength": 1.0, "start": 0.0, "end": 1.0,
     "preprocess": null}

``type`` says what the frame holds (and picks a ControlNet when ``model`` is null);
``preprocess`` what the daemon does to the frame first (null: the type's usual one, see
:data:`DEFAULT_PREPROCESS`). Standard library only: the hosts import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: control type -> label. The ControlNet families people download (their file names carry
#: these words); what the frame must hold is in docs/protocol.md.
TYPES: dict[str, str] = {
    "scribble": "Scribble", "lineart": "Line art", "softedge": "Soft edges",
    "canny": "Canny edges", "depth": "Depth", "normal": "Normal map", "pose": "Pose",
    "segmentation": "Segmentation", "mlsd": "Straight lines", "tile": "Tile",
}

#: preprocessors the daemon runs without downloading anything -> label
PREPROCESSORS: dict[str, str] = {
    "none": "None (the layer as it is)",
    "scribble": "Scribble (the strokes, white on black)",
    "threshold": "Threshold (light parts white)",
    "invert": "Invert (dark lines on white -> white on black)",
    "canny": "Canny edges",
}
#: preprocessors that need annotator weights: refused with advice, never downloaded
ANNOTATORS: dict[str, str] = {
    "depth_midas": "MiDaS depth", "depth_zoe": "ZoeDepth", "normal_bae": "BAE normals",
    "openpose": "OpenPose", "hed": "HED soft edges", "pidinet": "PiDiNet soft edges",
    "lineart_realistic": "realistic line art", "lineart_anime": "anime line art",
    "segmentation_ofade20k": "OneFormer segmentation", "mlsd": "M-LSD lines",
}
#: what a type's frame usually needs when the request does not say
DEFAULT_PREPROCESS: dict[str, str] = {
    "scribble": "scribble", "lineart": "invert", "canny": "canny",
}

MAX_STRENGTH = 2.0
MAX_NAME = 512


@dataclass(frozen=True)
class Field:
    """One key of a control item: its type, range or choices, default and label (the item's
    schema). The daemon's check, the hosts' widgets and the command line's help are built
    from these rows, so a new key is one row here."""

    name: str
    type: type
    default: Any
    lo: float | None = None
    hi: float | None = None
    help: str = ""
    label: str = ""
    #: value -> label, for a key that takes one of a few names (a host shows a list)
    choices: dict[str, str] | None = None
    required: bool = False
    #: the daemon's hello lists this key's values (a key of plugin.offers.OFFERS)
    offered: str = ""
    #: what a host's empty choice says ("not set": the daemon decides)
    unset_label: str = ""


FIELDS: tuple[Field, ...] = (
    Field("type", str, None, help="what the control frame holds: " + ", ".join(TYPES),
          label="Type", choices=TYPES, required=True),
    Field("model", str, None, help="a ControlNet's name; null: one that matches the type "
          "and the model", label="ControlNet", offered="controlnet"),
    Field("strength", float, 1.0, 0.0, MAX_STRENGTH, "how strongly it steers",
          label="Strength"),
    Field("start", float, 0.0, 0.0, 1.0, "the fraction of the steps where it starts",
          label="Start"),
    Field("end", float, 1.0, 0.0, 1.0, "the fraction of the steps where it stops",
          label="End"),
    Field("preprocess", str, None, help="what the daemon does to the frame first: "
          + ", ".join(PREPROCESSORS) + "; null: the type's usual one", label="Preprocess",
          choices=PREPROCESSORS, unset_label="Usual for the type"),
)
BY_NAME = {f.name: f for f in FIELDS}
#: key -> its choices (value -> label), for the keys that take one of a few names
CHOICES: dict[str, dict[str, str]] = {f.name: f.choices for f in FIELDS if f.choices}
#: the keys an item must have
REQUIRED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)


def preprocessor(item: dict[str, Any]) -> str:
    """The preprocessor an item runs (its own, or its type's usual one)."""
    return item.get("preprocess") or DEFAULT_PREPROCESS.get(item["type"], "none")


def check_preprocess(name: Any, where: str = "preprocess") -> str:
    """A preprocessor name, or ValueError saying what is offered."""
    if name in ANNOTATORS:
        raise ValueError(f"{where}: '{name}' ({ANNOTATORS[name]}) needs annotator weights, "
                         "which paintbridge never downloads; make the map with another tool "
                         "(or draw it) and use preprocess 'none'")
    if not isinstance(name, str) or name not in PREPROCESSORS:
        raise ValueError(f"{where} must be one of {', '.join(PREPROCESSORS)}")
    return name


def check_item(raw: Any, where: str = "controls[0]") -> dict[str, Any]:
    """One wire item, filled with defaults; ValueError naming the key that is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(raw) - set(BY_NAME))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(BY_NAME)})")
    out: dict[str, Any] = {}
    for f in FIELDS:
        value = raw.get(f.name)
        if value is None:
            if f.required:
                offered = f": one of {', '.join(f.choices)}" if f.choices else ""
                raise ValueError(f"{where}.{f.name} is required{offered}")
            out[f.name] = f.default
            continue
        if f.type is str:
            if not isinstance(value, str) or not value or len(value) > MAX_NAME:
                raise ValueError(f"{where}.{f.name} must be a non-empty string")
            if f.name == "preprocess":   # annotators get their own advice
                check_preprocess(value, f"{where}.preprocess")
            elif f.choices is not None and value not in f.choices:
                raise ValueError(f"{where}.{f.name} '{value}' is unknown; known: "
                                 f"{', '.join(f.choices)}")
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"{where}.{f.name} must be a number")
            assert f.lo is not None and f.hi is not None
            if not f.lo <= value <= f.hi:
                raise ValueError(f"{where}.{f.name} = {value:g} is outside {f.lo:g}..{f.hi:g}")
            value = float(value)
        out[f.name] = value
    if out["start"] >= out["end"]:
        raise ValueError(f"{where}: start ({out['start']:g}) must be before end "
                         f"({out['end']:g})")
    return out


def check(raw: Any, limit: int) -> list[dict[str, Any]] | None:
    """``params.controls`` as the daemon takes it (None or [] : no controls)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ValueError("controls must be a list of objects")
    if len(raw) > limit:
        raise ValueError(f"{len(raw)} controls; at most {limit} at once")
    return [check_item(item, f"controls[{i}]") for i, item in enumerate(raw)] or None


def parse_spec(text: str) -> tuple[dict[str, Any], str]:
    """The command line's ``TYPE:FILE[:MODEL[:STRENGTH]]`` -> (wire item, FILE).
    ``TYPE`` may carry a preprocessor as ``TYPE/PREPROCESS`` (``canny/none``)."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"'{text}': write TYPE:FILE[:MODEL[:STRENGTH]] "
                         f"(TYPE one of {', '.join(TYPES)})")
    if len(parts) > 4:
        raise ValueError(f"'{text}': too many ':' (TYPE:FILE[:MODEL[:STRENGTH]])")
    kind, _, pre = parts[0].partition("/")
    item: dict[str, Any] = {"type": kind}
    if pre:
        item["preprocess"] = pre
    if len(parts) > 2 and parts[2]:
        item["model"] = parts[2]
    if len(parts) > 3:
        try:
            item["strength"] = float(parts[3])
        except ValueError:
            raise ValueError(f"'{text}': strength '{parts[3]}' is not a number") from None
    return check_item(item, f"--control '{text}'"), parts[1]

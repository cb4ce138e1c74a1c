"""Every generation parameter in one table: type, range, defaults, label and help.

The protocol's validator, the session's settings, the Krita docker's widgets and the GIMP
procedure's arguments are all built from :data:`PARAMS`, so a new parameter is one new row
here plus its use in the daemon. Standard library only: this runs inside the hosts' Pythons.

Hosts cannot always hold "no value" (a spin box has no None), so a row names the widget
value that stands for None (``unset``) and the words a widget shows for it (``unset_text``).
Host-specific limits (GIMP's 32-bit signed integers) narrow a range with ``int_max``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import loraspec
from .limits import Limits

INT32_MAX = 2**31 - 1


class WireEnum(str, Enum):
    """A closed vocabulary of the protocol: members are their strings, in JSON too."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Kind(WireEnum):
    """Job kinds (the submit header's ``kind``)."""

    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"    # the region enlarged (header ``scale``), refined in tiles


KINDS: tuple[str, ...] = tuple(k.value for k in Kind)
#: the kinds that paint into the document (an upscale's result goes into a new one)
GENERATE_KINDS: tuple[str, ...] = ("txt2img", "img2img", "inpaint")

#: sampler name -> label shown by the hosts ("default" = what the model's folder says)
SAMPLERS: dict[str, str] = {
    "default": "Model default", "euler": "Euler", "euler_a": "Euler ancestral",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M Karras", "ddim": "DDIM",
    "lcm": "LCM", "pndm": "PNDM", "unipc": "UniPC",
}

_SAME: Any = object()    # host_default: the same as default


@dataclass(frozen=True)
class Param:
    """One row of the table. ``hi`` may name a :class:`~.protocol.Limits` field, so the
    daemon's announced limit is the range (and ``limit()`` resolves it)."""

    name: str                       # the wire name; GIMP's argument is name with "-" for "_"
    type: type                      # str, int or float
    label: str                      # "_" marks the mnemonic letter
    help: str
    default: Any = None             # what the daemon takes when absent; None: the model's own
    lo: float | None = None
    hi: float | str | None = None   # a number, or the name of a Limits field
    lo_open: bool = False           # lo itself is not allowed (strength 0 changes nothing)
    choices: Mapping[str, str] = field(default_factory=dict)   # value -> label
    from_daemon: bool = False       # the choices come from the daemon's hello (models...)
    kinds: tuple[str, ...] = KINDS  # the job kinds that use it
    kind_defaults: Mapping[str, Any] = field(default_factory=dict)
    host_default: Any = _SAME       # what a host starts at, where it differs from default
    unset: float | None = None      # the widget value standing for None
    unset_text: str = ""            # what a widget shows for unset
    step: float = 1.0               # a spin box's step
    decimals: int = 0
    multiline: bool = False
    advanced: bool = False          # in the hosts' folded section
    wire: str = ""                  # "loras": hosts hold text, the wire a checked list

    @property
    def nullable(self) -> bool:
        return self.default is None

    @property
    def start(self) -> Any:
        """The value a fresh host setting starts at."""
        return self.default if self.host_default is _SAME else self.host_default

    @property
    def arg_name(self) -> str:
        """The name as a GIMP argument or a command-line option."""
        return self.name.replace("_", "-")

    def limit(self, limits: Any = None) -> float | None:
        """``hi`` as a number: a Limits field's value (the defaults when no limits given)."""
        if isinstance(self.hi, str):
            if limits is None:
                limits = Limits()
            return float(getattr(limits, self.hi))
        return self.hi

    def widget_range(self, limits: Any = None, int_max: int | None = None
                     ) -> tuple[float, float]:
        """(minimum, maximum) of a host's number widget: ``unset`` below the range when the
        row has one, and narrowed to ``int_max`` for hosts with 32-bit integers."""
        lo = self.lo if self.lo is not None else 0.0
        if self.unset is not None:
            lo = min(lo, self.unset)
        hi = self.limit(limits)
        hi = float(INT32_MAX if hi is None else hi)
        if int_max is not None:
            hi = min(hi, float(int_max))
        return lo, hi

    def wire_value(self, value: Any) -> Any:
        """A setting as it goes on the wire (None: leave it out). A host's LoRA text
        becomes the list; ValueError names a wrong entry."""
        if self.wire == "loras" and isinstance(value, str):
            return loraspec.parse_text(value)
        return value

    def range_text(self, limits: Any = None) -> str:
        """The accepted values in words, for help texts ("1–200; 0: model default")."""
        if self.wire == "loras":
            return (f"at most {_num(self.limit(limits))}, weights "
                    f"-{_num(loraspec.MAX_WEIGHT)}–{_num(loraspec.MAX_WEIGHT)}")
        if self.choices or self.from_daemon:
            return ""
        hi = self.limit(limits)
        if self.type is str:
            return f"up to {_num(hi)} characters" if hi is not None else ""
        lo = self.lo if self.lo is not None else 0.0
        text = f"above {_num(lo)}, up to {_num(hi)}" if self.lo_open else \
            f"{_num(lo)}–{_num(hi)}"
        if self.unset is not None:
            text += f"; {_num(self.unset)}: {self.unset_text.lower()}"
        return text

    def default_text(self) -> str:
        """What the setting is when not given, as a host or the CLI starts it."""
        if self.kind_defaults:
            return ", ".join(f"{_num(v)} for {k}" for k, v in self.kind_defaults.items()
                             if k in self.kinds)
        if self.start is None:
            return _num(self.unset) if self.unset is not None else ""
        if self.choices:
            return f"'{self.start}'"
        return "" if self.start == "" else _num(self.start)

    def default_for(self, kind: str) -> Any:
        return self.kind_defaults.get(kind, self.default)

    def to_widget(self, value: Any) -> Any:
        """A setting's value for a host widget (None -> ``unset``)."""
        if value is None:
            return self.unset if self.unset is not None else self.start
        return value

    def from_widget(self, value: Any) -> Any:
        """A widget's value as a setting (``unset`` -> None)."""
        if self.unset is not None and value == self.unset:
            return None
        if self.type is str and self.nullable and not value:
            return None     # an empty entry: the daemon's choice (e.g. its default model)
        return self.type(value)

    def coerce(self, value: Any) -> Any:
        """``value`` if it has this row's type (ints accepted for floats), else ValueError.
        Ranges are the validator's business; this only keeps types right."""
        if value is None:
            if not self.nullable:
                raise ValueError(f"{self.name} must not be null")
            return None
        if isinstance(value, bool):
            raise ValueError(f"{self.name} must be a {self.type.__name__}")
        if self.type is float and isinstance(value, int):
            return float(value)
        if not isinstance(value, self.type):
            raise ValueError(f"{self.name} must be a {self.type.__name__}")
        if self.choices and not self.from_daemon and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}")
        return value


PARAMS: tuple[Param, ...] = (
    Param("prompt", str, "_Prompt", "What to paint", default="", hi="max_prompt_chars",
          multiline=True),
    Param("negative_prompt", str, "_Negative prompt", "What to avoid", default="",
          hi="max_prompt_chars", multiline=True),
    Param("model", str, "Mo_del", "Model name; empty: the daemon's default", hi=512,
          from_daemon=True),
    Param("strength", float, "Stren_gth",
          "How much to change: 1 repaints fully, low values keep the picture "
          "(not used when generating)", lo=0.0, hi=1.0, lo_open=True,
          kinds=("img2img", "inpaint"), kind_defaults={"txt2img": 1.0, "img2img": 0.6,
                                                       "inpaint": 1.0},
          unset=0.0, unset_text="Auto", step=0.05, decimals=2),
    Param("steps", int, "S_teps", "Denoising steps; the model's default when unset", lo=1,
          hi="max_steps", unset=0, unset_text="Model default"),
    Param("guidance", float, "Guidance (_CFG)",
          "How closely to follow the prompt; the model's default when unset", lo=0.0, hi=50.0,
          unset=0.0, unset_text="Model default", step=0.5, decimals=1),
    Param("sampler", str, "Sa_mpler", "The denoising schedule; 'default' is the model's own",
          default="default",
          choices=SAMPLERS),
    Param("seed", int, "S_eed", "Seed of the noise; a random one each time when unset", lo=0,
          hi=2**32 - 1, unset=-1, unset_text="Random"),
    Param("loras", str, "_LoRAs",
          "LoRA files and their weights: NAME:WEIGHT, NAME:WEIGHT (A1111's NAME:TE:UNET "
          "too); in a prompt, <lora:NAME:WEIGHT> does the same", hi="max_loras",
          wire="loras"),
    Param("count", int, "Co_unt", "Variations; more than one go into a layer group",
          default=1, lo=1, hi="max_count"),
    Param("padding", int, "Conte_xt padding",
          "Context around the selection in pixels; automatic when unset", lo=0, hi=8192,
          unset=-1, unset_text="Automatic", kinds=GENERATE_KINDS, advanced=True),
    Param("grow", int, "G_row", "Grow the selection by this many pixels", default=0, lo=0,
          hi=512, host_default=4, kinds=GENERATE_KINDS, advanced=True),
    Param("feather", int, "Feat_her",
          "Soften the result's edge inside the grown selection by this many pixels",
          default=0, lo=0, hi=512, host_default=4, kinds=GENERATE_KINDS, advanced=True),
    Param("colour_match", str, "Colour _match",
          "Match the result's colours to the pixels around the selection, so its edge does "
          "not show", default="on", choices={"on": "On", "off": "Off"},
          kinds=("img2img", "inpaint"), advanced=True),
    Param("soft_edges", str, "Soft _edges",
          "Partly selected pixels change only partly (differential diffusion), so a soft "
          "selection's edge is a gradual change, not two pictures blended",
          default="on", choices={"on": "On", "off": "Off"}, kinds=("inpaint",), advanced=True),
    Param("refine", str, "_Full-resolution detail",
          "On a region larger than the model's own size: image to image up to strength "
          "0.6 in one call at full resolution; else generate at the model's size, then "
          "refine at full resolution in overlapping tiles (off: scale the result up)",
          default="on", choices={"on": "On", "off": "Off"}, advanced=True),
    Param("refine_strength", float, "Refine _strength",
          "How much the full-resolution tiles may change the upscaled result (image to "
          "image up to 0.6 has no tiles: one call on the picture itself)",
          default=0.35, lo=0.0, hi=1.0, lo_open=True, step=0.05, decimals=2, advanced=True),
    Param("tile_overlap", int, "Tile o_verlap",
          "Pixels each full-resolution tile shares with its neighbours, blended so no "
          "seam shows; automatic when unset (a quarter of the tile)", lo=8, hi=1024,
          unset=0, unset_text="Automatic", advanced=True),
    Param("upscaler", str, "_Upscaler",
          "An upscaler model (ESRGAN family; `paintbridge models` lists them) for the first "
          "upscale of a full-resolution job; empty: Lanczos", hi=512, from_daemon=True,
          advanced=True),
    Param("tile_size", int, "T_ile size",
          "Side of a full-resolution tile in pixels; the model's own size when unset (set, "
          "low-strength image to image runs in tiles too rather than in one call)",
          lo=64, hi=2048, unset=0, unset_text="Model's size", advanced=True),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}


def _num(value: Any) -> str:
    """A number as people write it: 4294967295, 0.6 (not 4.29497e+09, 0.6000000001)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def plain_label(label: str) -> str:
    """A label without its mnemonic mark."""
    return label.replace("_", "", 1)

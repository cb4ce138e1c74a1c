"""What the artist chose (:class:`GenerationSettings`) and what a job reads from the
document for it (:func:`prepare` and its Expand and Upscale twins), with the host left out."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .document import ControlLayer, Document
from .expand import Expansion
from .job import Frame, JobRequest
from .params import BY_NAME, PARAMS
from .region import Rect, job_region

MODES = ("auto", *protocol.KINDS)


class GenerationSettings:
    """Everything the user chooses in the docker or dialog; persisted by the host.

    One attribute per row of :data:`params.PARAMS` (None = the daemon's or model's default,
    where the row allows it) plus ``mode`` ("auto" picks inpaint with a selection, img2img
    without)."""

    def __init__(self, mode: str = "auto", **values: Any) -> None:
        unknown = set(values) - set(BY_NAME)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "values", {p.name: p.start for p in PARAMS})
        for name, value in values.items():
            setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in BY_NAME:
            self.values[name] = BY_NAME[name].coerce(value)
        elif name == "mode":
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"no setting {name!r}")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, GenerationSettings) and self.mode == other.mode
                and self.values == other.values)

    def __repr__(self) -> str:
        return f"GenerationSettings(mode={self.mode!r}, {self.values!r})"

    def to_json(self) -> str:
        return json.dumps({"mode": self.mode, **self.values})

    @classmethod
    def from_json(cls, text: str | None) -> GenerationSettings:
        """Tolerant: unknown keys and values of the wrong type keep their defaults, so an
        old or hand-edited settings file never stops the plugin from loading."""
        out = cls()
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return out
        if not isinstance(data, dict):
            return out
        for name in BY_NAME:
            if name in data:
                try:
                    setattr(out, name, data[name])
                except ValueError:
                    pass
        if data.get("mode") in MODES:
            out.mode = data["mode"]
        return out

    def kind(self, has_selection: bool) -> str:
        if self.mode != "auto":
            return self.mode
        return "inpaint" if has_selection else "img2img"

    def params(self, kind: str) -> dict[str, Any]:
        """The submit's ``params`` for ``kind``: the rows the kind uses, with a value."""
        wire = {p.name: p.wire_value(self.values[p.name]) for p in PARAMS if kind in p.kinds}
        return {name: value for name, value in wire.items() if value is not None}


@dataclass
class PreparedJob:
    kind: str
    region: Rect
    params: dict[str, Any]
    image: Frame | None
    mask: Frame | None
    scale: int | None = None    # an upscale's factor
    controls: list[Frame] = field(default_factory=list)   # one per params["controls"]

    def request(self, result_format: str, preview: bool = False,
                live: bool = False) -> JobRequest:
        """What the client sends for this job: the region's place and size with it."""
        r = self.region
        return JobRequest(self.kind, self.params, self.image, self.mask, (r.x, r.y),
                          (r.width, r.height), result_format, preview, live, self.scale,
                          self.controls)



def prepare(doc: Document, settings: GenerationSettings,
            area: Callable[[], Rect] | None = None,
            control_layers: Sequence[ControlLayer] = ()) -> PreparedJob:
    """Read exactly the region the job needs from the document; raise ValueError or
    UnsupportedDocument with a message for the user when nothing can be sent. ``area``
    gives the region when nothing is selected (default: the whole layer). Each control
    layer's pixels in the same region go along as a control frame."""
    items = [c.item() for c in control_layers]
    active = doc.layer_key() if control_layers else None
    for c in control_layers:
        if c.layer == active:
            raise ValueError(f"'{c.name or 'This layer'}' is a control layer: its drawing "
                             "steers the job. Select the layer to paint on.")
    fmt = doc.pixel_format()
    canvas = doc.canvas()
    bounds = doc.selection_bounds()
    if bounds is not None and bounds.is_empty:
        bounds = None
    kind = settings.kind(bounds is not None)
    if kind == "inpaint" and bounds is None:
        raise ValueError("Inpaint needs a selection: select the area to repaint first.")
    if bounds is None and area is not None:
        region = area()
    else:
        region = job_region(kind, canvas, bounds, settings.padding, settings.grow)
    image = None
    if kind != "txt2img":
        image = Frame(region.width, region.height, fmt, doc.read_pixels(region))
    mask = doc.read_selection(region) if bounds is not None else None
    params = settings.params(kind)
    if items:
        params["controls"] = items
    frames = [doc.read_layer(c.layer, region) for c in control_layers]
    return PreparedJob(kind, region, params, image, mask, controls=frames)


def prepare_expand(doc: Document, settings: GenerationSettings,
                   expansion: Expansion) -> PreparedJob:
    """An Expand job (plugin.expand): the new strips and the picture beside them, the new
    area transparent and selected, in the grown canvas's coordinates. Nothing is resized."""
    fmt = doc.pixel_format()
    canvas = doc.image_rect()
    region = expansion.region(canvas, settings.padding)
    image = expansion.image(region, canvas, fmt, doc.read_pixels)
    return PreparedJob("inpaint", region, settings.params("inpaint"), image,
                       expansion.mask(region, canvas))


def prepare_upscale(doc: Document, settings: GenerationSettings, scale: int) -> PreparedJob:
    """An upscale job: the selection's bounding box, or the whole layer, to be enlarged
    ``scale`` times into a new image (the selection's shape does not matter)."""
    if scale not in protocol.UPSCALE_FACTORS:
        raise ValueError(f"Upscale by {', '.join(map(str, protocol.UPSCALE_FACTORS))} only.")
    fmt = doc.pixel_format()
    bounds = doc.selection_bounds()
    region = bounds if bounds is not None and not bounds.is_empty else doc.canvas()
    image = Frame(region.width, region.height, fmt, doc.read_pixels(region))
    return PreparedJob("upscale", region, settings.params("upscale"), image, None, scale)

"""Which way a job is painted, decided before any model work, and how many denoising steps
one variation takes (the progress bar's total): the region at the model's size and back
(``scaled``), at its own size in one call (``whole``), in one call at the largest size that
fits with its change carried up over the source (``reduced``), in tiles (``tiled``,
backend/jobs/tiling.py) or enlarged (``upscale``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from paintbridge.plugin.protocol import SubmitRequest

from .. import settings
from . import pixels
from .grid import grid

#: refine when the region's side (square root of its area) is at least this many times the
#: model's: below it the model still sees more than half the region's resolution, and
#: tiles (at least four, plus the composition) would cost five times as much for little
REFINE_FROM = 2.0
#: image to image stronger than this changes the layout: composition pass first
COMPOSE_ABOVE = 0.5
#: image to image up to this strength refines the source itself: the region at its own
#: resolution in one pipeline call, as the bare diffusers call would. Measured
#: (bench/fidelity.py, 512², the embedded model): the composition pass and the tiles'
#: colour split lost 3-5 dB PSNR to that call at 0.1, 0.3 and 0.6, and at 0.6 kept 0.12 of
#: the edges' steepness against its 0.73. Stronger changes the layout, where a model run
#: far above its size repeats content: composition first.
WHOLE_UP_TO = 0.6
#: the kinds that polish at low strength (inpainting: the selection, as the model's own
#: inpainting call would; measured in bench/fidelity.py)
POLISHED = ("img2img", "inpaint")
#: ... where that one call fits: regions up to this many pixels (1024², the default of the
#: daemon's ``whole_max_pixels`` setting). The call's memory and time grow faster than its
#: pixels (the VAE's attention is quadratic in them: the embedded model's bare call takes
#: 1.5 GB and 91 s at 1024², over ten minutes at 2048² on one CPU thread), so the default
#: is one that fits every device; a large GPU may take more. Larger regions are
#: ``reduced``: one call at the largest size that fits, its change (result minus input)
#: carried up to full resolution over the source, whose own detail stays, so memory stays
#: flat. Measured (bench/fidelity.py, 1024² with the line at 512²): tiles of the model's
#: size over the source drew a grid on flat areas at 0.1 (texture 2.09 against the bare
#: call's 1.15), composing at 512² then tiles kept 0.60 of the edges at 0.6 against its
#: 0.77; carried up, both within the targets.
WHOLE_MAX_PIXELS = settings.WHOLE_MAX_PIXELS


def polishes(req: SubmitRequest, native: int) -> bool:
    """Image to image or inpainting at low strength on a region larger than the model's
    size: one call (``whole`` or ``reduced``). Live drafts and ``refine`` off keep the
    model's size; a ``tile_size`` asked for means tiles."""
    width, height = req.size
    return (req.kind in POLISHED and req.params["refine"] == "on" and not req.live
            and not req.params["tile_size"] and req.params["strength"] <= WHOLE_UP_TO
            and native * native < width * height)


def whole(req: SubmitRequest, native: int, max_pixels: int = WHOLE_MAX_PIXELS) -> bool:
    """Whether the job runs on the region at its own resolution, in one call (a polish of
    a region of at most ``max_pixels``)."""
    width, height = req.size
    return polishes(req, native) and width * height <= max_pixels


@dataclass(frozen=True)
class Plan:
    """How a job is painted, and how many denoising steps one variation takes (the
    progress bar's total): ``scaled`` (the region at the model's size and back), ``whole``
    (the region at its own size, one call), ``reduced`` (one call at the largest size that
    fits, its change carried up over the source), ``tiled`` (composition, then tiles at
    1:1) or ``upscale``."""

    path: Literal["scaled", "whole", "reduced", "tiled", "upscale"]
    steps_per_variation: int
    #: ``tiled``: the composition pass's size (width, height), None without one;
    #: ``reduced``: the size of the one call
    compose: tuple[int, int] | None = None


def plan(req: SubmitRequest, native: int, steps: int,
         whole_max_pixels: int = WHOLE_MAX_PIXELS) -> Plan:
    if req.kind == "upscale":
        return Plan("upscale", upscale_steps(req, native, steps))
    if whole(req, native, whole_max_pixels):
        return Plan("whole", pass_steps(steps, req.params["strength"]))
    if polishes(req, native):   # larger: one call at the largest size that fits
        width, height = req.size
        return Plan("reduced", pass_steps(steps, req.params["strength"]),
                    fitting(width, height, whole_max_pixels))
    if applies(req, native) and not req.live:   # live jobs are drafts: the model's size
        return Plan("tiled", variation_steps(req, native, steps),
                    compose_size(req, native, whole_max_pixels))
    return Plan("scaled", steps if req.kind == "txt2img"
                else pass_steps(steps, req.params["strength"]))


def applies(req: SubmitRequest, native: int) -> bool:
    width, height = req.size
    return req.params["refine"] == "on" and math.sqrt(width * height) >= REFINE_FROM * native


def composes(req: SubmitRequest) -> bool:
    """Whether the composition pass's result becomes the canvas (else the tiles refine the
    source itself, and the composition gives only the colours)."""
    return req.kind != "img2img" or req.params["strength"] > COMPOSE_ABOVE


def compose_size(req: SubmitRequest, native: int, whole_max_pixels: int = WHOLE_MAX_PIXELS
                 ) -> tuple[int, int] | None:
    """The composition pass's size; None without one (image to image at low strength
    refines the source itself). Image to image up to :data:`WHOLE_UP_TO` keeps the layout,
    as the whole path does: its composition is the largest one call that fits
    ``whole_max_pixels`` (measured, bench/fidelity.py, 1024² in tiles at 0.6: composed at
    the model's size and enlarged 16 times it kept 0.08 of the edges' steepness against the
    bare call's 0.77). Stronger changes the layout: the model's size, where it composes
    without repeating content."""
    if not composes(req):
        return None
    width, height = req.size
    if req.kind == "img2img" and req.params["strength"] <= WHOLE_UP_TO:
        return fitting(width, height, whole_max_pixels)
    return pixels.model_size(width, height, native)


def fitting(width: int, height: int, max_pixels: int, multiple: int = 8) -> tuple[int, int]:
    """The largest size of the region's aspect, sides × ``multiple``, within ``max_pixels``."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    return (max(multiple, int(width * scale) // multiple * multiple),
            max(multiple, int(height * scale) // multiple * multiple))


def variation_steps(req: SubmitRequest, native: int, steps: int) -> int:
    """Denoising steps of one variation (progress totals): the composition pass, then every
    tile (an upper bound for inpainting, which skips the tiles outside the selection)."""
    params = req.params
    width, height = req.size
    tiles = len(grid(width, height, *tile_side(req, native)))
    if not composes(req):   # low strength: the tiles alone, on the source
        return tiles * pass_steps(steps, params["strength"])
    first = steps if req.kind == "txt2img" else pass_steps(steps, params["strength"])
    return first + tiles * pass_steps(steps, params["refine_strength"])


def tile_side(req: SubmitRequest, native: int) -> tuple[int, int]:
    """(tile, overlap) in px: ``tile_size`` or the model's size; overlap a quarter."""
    tile = req.params["tile_size"] or native
    overlap = req.params["tile_overlap"] or max(16, tile // 4)
    return tile, min(overlap, tile // 2)


def pass_steps(steps: int, strength: float) -> int:
    """Denoising steps diffusers runs for image to image at ``strength`` (progress totals)."""
    return max(1, min(int(steps * strength), steps))


def upscale_steps(req: SubmitRequest, native: int, steps: int) -> int:
    """Denoising steps of one upscale variation (progress totals; 1 for the plain upscale
    when it is not refined)."""
    if req.params["refine"] != "on":
        return 1
    width, height = req.result_size
    tiles = len(grid(width, height, *tile_side(req, native)))
    return tiles * pass_steps(steps, req.params["refine_strength"])

"""Full resolution for regions larger than the model's own size.

Scaling a 3000-px region down to a 512-px model and back blurs it. Image to image at low
strength (up to :data:`WHOLE_UP_TO`) is one pipeline call: on the region at its own size
where it fits :data:`WHOLE_MAX_PIXELS` (``whole``: what the bare diffusers call does), else
on the region reduced to fit, its change carried up over the source (``reduced``). Where a
job changes the picture's layout (text to image, inpainting, image to image above
:data:`WHOLE_UP_TO`, or a ``tile_size`` asked for above :data:`COMPOSE_ABOVE`) a
composition pass runs at the model's size (paths.compose_size) and its result is upscaled
(an upscaler model, then Lanczos) into a canvas at the region's own resolution, over the
source; tiles asked for at low strength have no composition pass: the source is the canvas
and its own colours the reference. Then overlapping tiles of the model's size refine the
canvas at 1:1, one after another, by image to image (inpainting for inpaint jobs, so what
lies outside the selection stays the source). Each tile keeps only its detail finer than
:data:`COLOUR_SCALE` over the reference's colours (every VAE pass shifts colours; tiles
would drift apart), starts from the canvas as the tiles before it left it, and takes over
across the middle half of its overlap: no seam.

Memory: every full-size array is 8-bit (the canvas, the grown selection) or a view of the
request's frames; float work is done one tile or one band of rows at a time, and the VAE
only ever sees a tile. Colours are matched to the surroundings (``colour_match``) from a
reduced copy: the offset is smooth by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from PIL import Image

from paintbridge.plugin.protocol import FORMATS, SubmitRequest

from ..models import upscalers
from . import pixels, seams
from .grid import Tile, grid, ramp
from .paths import Plan, tile_side

#: the tiles keep only detail finer than this many pixels (or the composition's own scale
#: where it is coarser); colours and shapes come from the composition
COLOUR_SCALE = 4.0
#: ``reduced`` carries up only the change coarser than this many pixels of its call: what
#: it changed finer is mostly the call's own loss of detail at its size (carried up, it
#: blurred a photo's edges to 0.22 of their steepness against the bare call's 0.33; with
#: it, 0.91; bench/fidelity.py)
CHANGE_SCALE = 2.0
BAND = 256            # rows per band of band-wise work
MATCH_SIDE = 1024     # longest side of the reduced copy colours are matched on

class Denoise(Protocol):
    """One pipeline call (the recipe's ``denoise``): ``image`` (h, w, 3) at the call's size or
    None, ``mask`` (h, w) or None, ``kind`` "txt2img" / "img2img" / "inpaint", ``box`` the
    part of the region the call paints (x, y, width, height), None for all of it; returns
    (h, w, 3) float32 pixels."""

    def __call__(self, image: np.ndarray | None, mask: np.ndarray | None, w: int, h: int,
                 strength: float, seed: int, kind: str,
                 box: tuple[int, int, int, int] | None = None) -> np.ndarray: ...


def paint(how: Plan, req: SubmitRequest, native: int, seed: int, denoise: Denoise,
          cancelled: Callable[[], bool], preview: Callable[[np.ndarray], None] | None,
          upscaler: Any = None) -> pixels.EncodedPatch:
    """One variation of a reduced, tiled or upscale job."""
    if how.path == "reduced":
        assert how.compose is not None
        return reduced(req, how.compose, seed, denoise, cancelled)
    if how.path == "upscale":
        return upscale(req, native, seed, denoise, cancelled, preview, upscaler)
    return run(req, native, seed, denoise, cancelled, preview, upscaler, how.compose)


class Region:
    """The request's frames read a window at a time, and the masks derived from them."""

    def __init__(self, req: SubmitRequest) -> None:
        self.width, self.height = req.size
        self.image = (pixels.frame_array(req.image_data, req.image)
                      if req.image is not None else None)
        self.image_format = req.image.format if req.image is not None else ""
        self.mask = (pixels.frame_array(req.mask_data, req.mask)
                     if req.mask is not None else None)
        self.mask_format = req.mask.format if req.mask is not None else ""
        self.grow = req.params["grow"]
        self.feather = req.params["feather"]

    def bands(self, multiple: int = 1) -> list[tuple[int, int]]:
        """Row bands of about :data:`BAND` rows, each starting at a multiple of ``multiple``."""
        step = -(-BAND // multiple) * multiple
        return [(y, min(y + step, self.height)) for y in range(0, self.height, step)]

    def opacity(self, y0: int, y1: int) -> np.ndarray:
        """The image's alpha in rows y0..y1."""
        assert self.image is not None
        return pixels.to_float(self.image[y0:y1], self.image_format)[..., 3]

    def rgb8(self) -> np.ndarray:
        """The source's RGB as one 8-bit copy (the canvas starts from it), its see-through
        parts filled with the colours around them (outpainting: recipe.prepare)."""
        assert self.image is not None
        out = np.empty((self.height, self.width, 3), np.uint8)
        transparent = False
        for y0, y1 in self.bands():
            rgba = pixels.to_float(self.image[y0:y1], self.image_format)
            out[y0:y1] = np.rint(rgba[..., :3] * 255.0)
            transparent |= bool((rgba[..., 3] < 1).any())
        if transparent:
            self._fill(out)
        return out

    def _fill(self, rgb8: np.ndarray) -> None:
        """seams.fill band by band: the smooth fill worked out on a copy reduced to at most
        MATCH_SIDE, upsampled where pixels are see-through."""
        f = max(1, math.ceil(max(self.width, self.height) / MATCH_SIDE))
        sh, sw = -(-self.height // f), -(-self.width // f)
        premultiplied = np.zeros((sh, sw, 3), np.float32)
        weight = np.zeros((sh, sw), np.float32)
        for y0, y1 in self.bands(f):
            a = self.opacity(y0, y1)
            w = _reduce_blocks(a, f, sw, np.mean)
            weight[y0 // f:y0 // f + len(w)] = w
            premultiplied[y0 // f:y0 // f + len(w)] = _reduce_blocks(
                rgb8[y0:y1] / 255.0 * a[..., None], f, sw, np.mean)
        colour = premultiplied / np.maximum(weight, 1e-6)[..., None]
        small = seams.fill(colour, weight)
        for y0, y1 in self.bands():
            a = self.opacity(y0, y1)[..., None]
            if bool((a < 1).any()):
                around = upsample_rows(small, y0, y1, 0, self.width, f)
                rgb8[y0:y1] = _to8(rgb8[y0:y1] / 255.0 * a + around * (1 - a))

    def masks(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """(grown selection, patch alpha) for rows y0..y1, exactly as recipe.prepare makes
        them for the whole region: each band is computed with a halo as wide as the
        filters reach."""
        if self.mask is None:
            ones = np.ones((y1 - y0, self.width), np.float32)
            return ones, ones
        halo = self.grow + 2 * self.feather + 2
        top, bottom = max(0, y0 - halo), min(self.height, y1 + halo)
        selection = pixels.to_float(self.mask[top:bottom], self.mask_format)[..., 0]
        grown = pixels.grow(selection, self.grow)
        alpha = pixels.feather_inward(grown, self.feather)[y0 - top:y1 - top]
        grown = grown[y0 - top:y1 - top]
        if self.image is not None:
            alpha = pixels.cover(alpha, grown, self.opacity(y0, y1))
        return grown, alpha

    def grown8(self) -> np.ndarray | None:
        """The grown selection (what inpainting repaints) as 8 bits; None: everything."""
        if self.mask is None:
            return None
        out = np.empty((self.height, self.width), np.uint8)
        for y0, y1 in self.bands():
            out[y0:y1] = np.rint(self.masks(y0, y1)[0] * 255.0)
        return out


def _reduce_blocks(band: np.ndarray, f: int, blocks: int, op: Callable[..., np.ndarray]
                   ) -> np.ndarray:
    """Rows of ``band`` (h, w[, c]) in ``f`` × ``f`` blocks, ``blocks`` across, reduced by
    ``op`` (mean, max); the part past the band's edge counts as zeros."""
    rows = -(-band.shape[0] // f) * f
    padded = np.zeros((rows, blocks * f, *band.shape[2:]), np.float32)
    padded[:band.shape[0], :band.shape[1]] = band
    return op(padded.reshape(rows // f, f, blocks, f, *band.shape[2:]), axis=(1, 3))


def _pil_resize(pixels: np.ndarray, width: int, height: int,
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """8-bit (h, w[, 3]) Lanczos resize of ``box`` of ``pixels`` (filters reach past it)."""
    image = Image.fromarray(pixels)
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS, box=box))


def _upscale_into(canvas: np.ndarray, small: np.ndarray, grown: np.ndarray | None) -> None:
    """``small`` (the composition pass) upscaled over ``canvas``, band by band; where
    ``grown`` is given, only over what inpainting repaints, blended by it."""
    height, width = canvas.shape[:2]
    sh, sw = small.shape[:2]
    for y0 in range(0, height, BAND):
        y1 = min(y0 + BAND, height)
        up = _pil_resize(small, width, y1 - y0, (0, y0 * sh / height, sw, y1 * sh / height))
        if grown is None:
            canvas[y0:y1] = up
        else:
            m = grown[y0:y1, :, None].astype(np.float32) / 255.0
            canvas[y0:y1] = np.rint(canvas[y0:y1] * (1 - m) + up * m)


def _match_copy(source: np.ndarray | None, width: int, height: int
                ) -> tuple[np.ndarray | None, int]:
    """The source reduced to at most MATCH_SIDE (what ``_encode`` matches colours on; None
    without a source), and the factor it is reduced by."""
    f = max(1, math.ceil(max(width, height) / MATCH_SIDE))
    return (np.asarray(Image.fromarray(source).reduce(f)) if source is not None else None), f


def _to8(rgb: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def run(req: SubmitRequest, native: int, seed: int, denoise: Denoise,
        cancelled: Callable[[], bool],
        preview: Callable[[np.ndarray], None] | None, upscaler: Any = None,
        compose: tuple[int, int] | None = None) -> pixels.EncodedPatch:
    """One variation of a job at full resolution (see the module's docstring); ``compose``
    the composition pass's size (paths.compose_size), None without one."""
    params = req.params
    region = Region(req)
    width, height = region.width, region.height
    kind = req.kind
    tile, overlap = tile_side(req, native)
    grown = region.grown8() if kind == "inpaint" else None

    source = region.rgb8() if region.image is not None else None
    canvas = source if source is not None else np.full((height, width, 3), 128, np.uint8)
    small_source, match_scale = _match_copy(source, width, height)

    if compose is not None:   # the composition pass: the layout
        small, scale = _compose(req, region, canvas, source, grown, compose, seed, denoise,
                                upscaler)
        strength = params["refine_strength"]
    else:   # low strength: the tiles refine the source, over its own colours (no VAE pass
        # shifted them, nothing at the model's size blurred its edges)
        small = _pil_resize(canvas, max(1, round(width / COLOUR_SCALE)),
                            max(1, round(height / COLOUR_SCALE)))
        scale, strength = COLOUR_SCALE, params["strength"]
    if cancelled():
        return _empty(req)

    # refine at 1:1, tile after tile: each tile's detail over the reference's colours
    tiles = [t for t in grid(width, height, tile, overlap)
             if grown is None or grown[t.y:t.y + t.height, t.x:t.x + t.width].any()]
    if not _refine(canvas, small, scale, tiles, strength, grown, seed,
                   "inpaint" if kind == "inpaint" else "img2img", denoise, cancelled, preview):
        return _empty(req)
    return _encode(req, region, canvas, small_source, match_scale)


def reduced(req: SubmitRequest, size: tuple[int, int], seed: int, denoise: Denoise,
            cancelled: Callable[[], bool]) -> pixels.EncodedPatch:
    """Image to image or inpainting at low strength on a region too large for one call
    (paths.WHOLE_MAX_PIXELS): one call on the region (and its grown selection) reduced to
    ``size``; what it changed (its result minus its input, coarser
    than :data:`CHANGE_SCALE`) is carried up to full resolution, band by band, over the
    source, whose finer detail stays its own: no tiles, no grid, memory flat."""
    region = Region(req)
    width, height = region.width, region.height
    canvas = region.rgb8()
    small_source, match_scale = _match_copy(canvas, width, height)
    rw, rh = size
    small = _pil_resize(canvas, rw, rh).astype(np.float32) / 255.0
    grown = region.grown8() if req.kind == "inpaint" else None
    mask = _pil_resize(grown, rw, rh).astype(np.float32) / 255.0 if grown is not None else None
    del grown
    out = denoise(small, mask, rw, rh, req.params["strength"], seed, req.kind, None)
    change = _low_pass(out - small, CHANGE_SCALE)
    if cancelled():
        return _empty(req)
    for y0, y1 in region.bands():
        up = upsample_rows(change, y0, y1, 0, width, (width / rw, height / rh),
                           Image.Resampling.BICUBIC)
        canvas[y0:y1] = _to8(canvas[y0:y1].astype(np.float32) / 255.0 + up)
    return _encode(req, region, canvas, small_source, match_scale)


def _compose(req: SubmitRequest, region: Region, canvas: np.ndarray,
             source: np.ndarray | None, grown: np.ndarray | None, size: tuple[int, int],
             seed: int, denoise: Denoise, upscaler: Any) -> tuple[np.ndarray, float]:
    """The composition pass at ``size``, upscaled into ``canvas`` (over the source); returns
    it (the tiles' colours) and the scale below which the tiles keep their own detail (at
    least COLOUR_SCALE: every pass through a VAE shifts colours a little)."""
    width, height = region.width, region.height
    mw, mh = size
    image = (_pil_resize(canvas, mw, mh).astype(np.float32) / 255.0
             if source is not None else None)
    mask = _pil_resize(grown, mw, mh).astype(np.float32) / 255.0 if grown is not None else None
    strength = 1.0 if req.kind == "txt2img" else req.params["strength"]
    small_f = denoise(image, mask, mw, mh, strength, seed, req.kind, None)
    if mask is not None and image is not None and req.params["colour_match"] == "on":
        # inpainting pastes only the selection over the source: its colours are matched to
        # the ring of context the model saw (as the scaled path does), before upscaling
        small_f = seams.match_edges(small_f, image, mask)
    small = _to8(small_f)
    if upscaler is not None:   # an upscaler model's ×2/×4 first; Lanczos the rest of the way
        small = upscalers.upscale(upscaler, small)
    _upscale_into(canvas, small, grown)
    return small, max(COLOUR_SCALE, math.sqrt(width * height / (mw * mh)))


def _refine(canvas: np.ndarray, small: np.ndarray, scale: float, tiles: list[Tile],
            strength: float, grown: np.ndarray | None, seed: int, kind: str, denoise: Denoise,
            cancelled: Callable[[], bool], preview: Callable[[np.ndarray], None] | None
            ) -> bool:
    """Refine ``canvas`` in place, tile after tile; each keeps its detail finer than
    ``scale`` over the colours of ``small`` (the canvas's reference at a lower resolution).
    Returns False when cancelled."""
    height, width = canvas.shape[:2]
    sh, sw = small.shape[:2]
    every = max(1, math.ceil(len(tiles) / 8))
    for k, t in enumerate(tiles):
        ys, xs = slice(t.y, t.y + t.height), slice(t.x, t.x + t.width)
        tw, th = -(-t.width // 8) * 8, -(-t.height // 8) * 8   # the model's multiple of 8
        before = canvas[ys, xs].astype(np.float32) / 255.0
        mask = None
        if grown is not None:
            mask = pixels.resize(grown[ys, xs, None].astype(np.float32) / 255.0, tw, th)[..., 0]
        out = denoise(pixels.resize(before, tw, th), mask, tw, th, strength,
                      (seed + 1_000_003 * (k + 1)) % 2**32, kind,
                      (t.x, t.y, t.width, t.height))
        out = pixels.resize(out, t.width, t.height)
        box = (t.x * sw / width, t.y * sh / height, (t.x + t.width) * sw / width,
               (t.y + t.height) * sh / height)
        colours = _pil_resize(small, t.width, t.height, box).astype(np.float32) / 255.0
        out = colours + out - _low_pass(out, scale)
        if grown is not None:   # outside what inpainting repaints, the canvas stays
            m = grown[ys, xs, None].astype(np.float32) / 255.0
            out = out * m + before * (1 - m)
        w = ramp(t)
        canvas[ys, xs] = _to8(before * (1 - w) + out * w)
        if preview is not None and (k % every == every - 1 or k == len(tiles) - 1):
            preview(_preview(canvas))
        if cancelled():
            return False
    return True


def upscale(req: SubmitRequest, native: int, seed: int, denoise: Denoise,
            cancelled: Callable[[], bool],
            preview: Callable[[np.ndarray], None] | None, upscaler: Any = None
            ) -> pixels.EncodedPatch:
    """An upscale job: the region ``req.scale`` times larger (an upscaler model, then
    Lanczos), refined tile by tile at ``refine_strength`` unless ``refine`` is off. The
    tiles invent only detail finer than :data:`COLOUR_SCALE` (or the factor): shapes and
    colours stay the source's. The patch covers the whole enlarged region from (0, 0),
    its alpha the source's, enlarged."""
    region = Region(req)
    width, height = req.result_size
    source = region.rgb8()
    small = upscalers.upscale(upscaler, source) if upscaler is not None else source
    canvas = np.empty((height, width, 3), np.uint8)
    _upscale_into(canvas, small, None)
    if cancelled():
        return _empty(req)
    if req.params["refine"] == "on":
        tiles = grid(width, height, *tile_side(req, native))
        if not _refine(canvas, small, max(COLOUR_SCALE, float(req.scale)), tiles,
                       req.params["refine_strength"], None, seed, "img2img", denoise,
                       cancelled, preview):
            return _empty(req)
    return _encode_upscaled(req, region, canvas)


def _encode_upscaled(req: SubmitRequest, region: Region, canvas: np.ndarray
                     ) -> pixels.EncodedPatch:
    """The enlarged canvas in the client's format, band by band, with the source's alpha
    enlarged by the same Lanczos filter (an opaque source stays exactly opaque)."""
    height, width = canvas.shape[:2]
    alpha8 = np.empty((region.height, region.width), np.uint8)
    for y0, y1 in region.bands():
        alpha8[y0:y1] = np.rint(region.opacity(y0, y1) * 255.0)
    opaque = bool((alpha8 == 255).all())
    channels, depth = FORMATS[req.result_format]
    row_bytes = width * channels * depth
    out = bytearray(height * row_bytes)
    for y0 in range(0, height, BAND):
        y1 = min(y0 + BAND, height)
        if opaque:
            alpha = np.ones((y1 - y0, width), np.float32)
        else:
            box = (0, y0 / req.scale, region.width, y1 / req.scale)
            alpha = _pil_resize(alpha8, width, y1 - y0, box).astype(np.float32) / 255.0
        rgba = np.concatenate([canvas[y0:y1].astype(np.float32) / 255.0, alpha[..., None]],
                              axis=2)
        rgba = pixels.transparent_black(rgba, req.result_format)
        out[y0 * row_bytes:y1 * row_bytes] = pixels.encode_frame(rgba, req.result_format)
    return pixels.EncodedPatch(0, 0, width, height, req.result_format, out)


def _low_pass(rgb: np.ndarray, scale: float) -> np.ndarray:
    """What of ``rgb`` a picture ``scale`` times smaller holds (the composition's share)."""
    height, width = rgb.shape[:2]
    if scale <= 1.0:
        return rgb
    small = pixels.resize(rgb, max(1, round(width / scale)), max(1, round(height / scale)))
    return pixels.resize(small, width, height)


def _preview(canvas: np.ndarray, side: int = 128) -> np.ndarray:
    height, width = canvas.shape[:2]
    scale = min(1.0, side / max(height, width))
    rgb = _pil_resize(canvas, max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = rgb.astype(np.float32) / 255.0
    return np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2)


def _empty(req: SubmitRequest) -> pixels.EncodedPatch:
    return pixels.EncodedPatch(req.offset[0], req.offset[1], 0, 0, req.result_format, b"")


def _encode(req: SubmitRequest, region: Region, canvas: np.ndarray,
            small_source: np.ndarray | None, match_scale: int) -> pixels.EncodedPatch:
    """The canvas cut to the patch's alpha in the client's format, band by band, with the
    colour offset (measured on a reduced copy) added inside the patch."""
    height, width = canvas.shape[:2]
    # pass 1: the alpha's extent, and a reduced copy of it for colour matching (a reduced
    # pixel belongs to the patch if any of its pixels does)
    f = match_scale
    rows = np.zeros(height, bool)
    cols = np.zeros(width, bool)
    sh, sw = -(-height // f), -(-width // f)
    small_alpha = np.zeros((sh, sw), np.float32)
    for y0, y1 in region.bands(f):
        alpha = region.masks(y0, y1)[1]
        rows[y0:y1] = alpha.any(axis=1)
        cols |= alpha.any(axis=0)
        reduced = _reduce_blocks(alpha, f, sw, np.max)
        small_alpha[y0 // f:y0 // f + len(reduced)] = reduced
    if not rows.any():
        return _empty(req)
    offset = None
    if small_source is not None and req.params["colour_match"] == "on":
        small = np.asarray(Image.fromarray(canvas).reduce(f)).astype(np.float32) / 255.0
        offset = seams.edge_offset(small, small_source.astype(np.float32) / 255.0,
                                   small_alpha, max(2, seams.RING // f))
    # pass 2: the patch
    y_lo, y_hi = int(np.flatnonzero(rows)[0]), int(np.flatnonzero(rows)[-1]) + 1
    x_lo, x_hi = int(np.flatnonzero(cols)[0]), int(np.flatnonzero(cols)[-1]) + 1
    channels, depth = FORMATS[req.result_format]
    out = bytearray((y_hi - y_lo) * (x_hi - x_lo) * channels * depth)
    row_bytes = (x_hi - x_lo) * channels * depth
    for y0, y1 in region.bands():
        y0, y1 = max(y0, y_lo), min(y1, y_hi)
        if y0 >= y1:
            continue
        alpha = region.masks(y0, y1)[1][:, x_lo:x_hi]
        rgb = canvas[y0:y1, x_lo:x_hi].astype(np.float32) / 255.0
        if offset is not None:
            rgb = np.clip(rgb + upsample_rows(offset, y0, y1, x_lo, x_hi, f)
                          * (alpha[..., None] > 0), 0.0, 1.0)
        rgba = pixels.transparent_black(np.concatenate([rgb, alpha[..., None]], axis=2),
                                         req.result_format)
        out[(y0 - y_lo) * row_bytes:(y1 - y_lo) * row_bytes] = pixels.encode_frame(
            rgba, req.result_format)
    return pixels.EncodedPatch(req.offset[0] + x_lo, req.offset[1] + y_lo, x_hi - x_lo,
                                y_hi - y_lo, req.result_format, out)


def upsample_rows(small: np.ndarray, y0: int, y1: int, x0: int, x1: int,
                  scale: float | tuple[float, float],
                  resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Rows y0..y1, columns x0..x1 of ``small`` (float, reduced ``scale`` times, or (across,
    down) times) upsampled to the region's size (each band alone, matching the
    whole-image upsampling)."""
    sx, sy = scale if isinstance(scale, tuple) else (scale, scale)
    box = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(small[..., c]), "F")
                                .resize((x1 - x0, y1 - y0), resample, box=box))
                     for c in range(3)], axis=-1)

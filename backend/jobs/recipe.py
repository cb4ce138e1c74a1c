"""One job, start to finish: the recipe the worker runs for every submit.

1. decode the frames; 2. build the soft alpha and the model's mask; 3. scale the region to
the model's native size; 4. denoise once per variation (progress + cancel every step);
5. scale back, cut the patch to its alpha, encode it in the client's format.
Regions well above the model's size, and upscale jobs, go through ``tiling`` instead of 3-5.
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from paintbridge.plugin import controls as controls_module
from paintbridge.plugin.protocol import SubmitRequest

from ..models.adapters import JobLora, LoraError
from ..models.embeddings import EmbeddingEntry
from ..models.registry import LCM_DEFAULTS, LoadedModel
from ..models.upscalers import UpscalerError, Upscalers
from . import differential, failpoints, pixels, preprocess, schedulers, seams, tiling

#: model defaults when neither the request nor the model's paintbridge.json says
FALLBACK_STEPS = 20
FALLBACK_GUIDANCE = 7.0
PREVIEWS_PER_RUN = 8     # decoded previews per variation, when the client asks for them
PREVIEW_SIDE = 128       # longest side of a preview frame


class BadInput(Exception):
    """Input that passed the protocol checks but cannot be edited (an empty mask)."""


class JobCancelled(Exception):
    """Raised from the step callback: diffusers stops at once, nothing is decoded or sent."""


class StageFailed(Exception):
    """Whatever a stage raised (``__cause__``), with the stage in words for the message."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@dataclass
class PatchResult:
    patch: pixels.EncodedPatch
    seed: int


ProgressFn = Callable[[int, int, "np.ndarray | None"], None]


@dataclass
class JobControl:
    """One ``params.controls`` item with its ControlNet loaded."""

    item: dict[str, Any]
    net: Any


def control_maps(req: SubmitRequest) -> list[np.ndarray]:
    """Each control frame through its preprocessor, at the region's size: (h, w, 3)."""
    maps = []
    for item, spec, data in zip(req.params["controls"] or [], req.controls, req.control_data,
                                strict=True):
        maps.append(preprocess.run(controls_module.preprocessor(item),
                                   preprocess.decode(data, spec)))
    return maps


@dataclass
class Prepared:
    """A job's inputs, decoded and checked, before any model work."""

    rgb: np.ndarray | None        # (h, w, 3) region pixels, or None for txt2img
    alpha: np.ndarray             # (h, w) soft alpha of the patch
    model_mask: np.ndarray        # (h, w) what the model repaints (1 = repaint)


def prepare(req: SubmitRequest) -> Prepared:
    """Steps 1-2: frames -> float arrays; selection -> patch alpha and model mask.

    Transparent pixels of the image are areas to fill (outpainting): the model sees them
    pre-filled with the colours around them (:func:`seams.fill`), and the patch is opaque
    wherever they lie inside the grown selection, so no see-through edge is left."""
    width, height = req.size
    rgb = None
    opacity = None
    if req.image is not None:
        rgba = pixels.decode_frame(req.image_data, req.image)
        rgb, opacity = rgba[..., :3], rgba[..., 3]
        if bool((opacity < 1).any()):
            rgb = seams.fill(rgb, opacity)
        else:
            opacity = None
    if req.mask is not None:
        selection = pixels.decode_frame(req.mask_data, req.mask)[..., 0]
        if not bool((selection > 0).any()):
            raise BadInput("the mask selects nothing")
    else:
        selection = np.ones((height, width), np.float32)
    grown = pixels.grow(selection, req.params["grow"])
    alpha = pixels.feather_inward(grown, req.params["feather"])
    if opacity is not None:
        alpha = pixels.cover(alpha, grown, opacity)
    if req.kind == "inpaint":
        model_mask = grown
    else:  # img2img reworks the whole region; txt2img generates all of it
        model_mask = np.ones((height, width), np.float32)
    return Prepared(rgb, alpha, model_mask)


def seeds_for(params: dict[str, Any]) -> list[int]:
    base = params["seed"] if params["seed"] is not None else secrets.randbelow(2**32)
    return [(base + i) % 2**32 for i in range(params["count"])]


#: stages that run our code, not the model's: a failure there is an internal error
OUR_STAGES = ("reading the frames", "preprocessing the controls", "encoding the result")


class _Stages:
    """Where the job is, so that a failure says "while denoising" rather than only what broke."""

    def __init__(self) -> None:
        self.now = "reading the frames"


class EmbeddingError(Exception):
    """An embedding named in the prompt that this model cannot take."""


def run(req: SubmitRequest, model: LoadedModel, cancel: threading.Event,
        progress: ProgressFn, loras: Sequence[JobLora] = (),
        embeddings: Sequence[EmbeddingEntry] = (),
        upscalers: Upscalers | None = None,
        controls: Sequence[JobControl] = ()) -> list[PatchResult]:
    """The whole recipe; raises JobCancelled, BadInput, LoraError, EmbeddingError or
    StageFailed (from what broke)."""
    stages = _Stages()
    try:
        model.adapters.use(list(loras))   # exactly these LoRAs, or none
        if embeddings:
            try:
                req.params["prompt"], req.params["negative_prompt"] = model.embeddings.rewrite(
                    list(embeddings), req.params["prompt"], req.params["negative_prompt"])
            except ValueError as exc:
                raise EmbeddingError(str(exc)) from None
        return _run(req, model, cancel, progress, stages, upscalers, list(controls))
    except (JobCancelled, BadInput, LoraError, EmbeddingError, UpscalerError):
        raise
    except Exception as exc:
        raise StageFailed(stages.now) from exc


def _run(req: SubmitRequest, model: LoadedModel, cancel: threading.Event,
         progress: ProgressFn, stages: _Stages, upscalers: Upscalers | None = None,
         controls: list[JobControl] | None = None) -> list[PatchResult]:
    # 1-2. inputs
    failpoints.hit("decode", req.params["prompt"])
    upscaling = req.kind == "upscale"
    # live jobs are drafts: always at the model's size
    full_res = upscaling or (tiling.applies(req, model.native_size) and not req.live)
    work_kind = "img2img" if upscaling else req.kind   # what the model's pipelines run
    prep = None
    if not full_res:
        prep = prepare(req)
    elif req.mask is not None and not (pixels.frame_array(req.mask_data, req.mask) > 0).any():
        raise BadInput("the mask selects nothing")
    controls = controls or []
    stages.now = "preprocessing the controls"
    maps = control_maps(req) if controls else []
    lines = [preprocess.keeps_lines(c.item["type"], controls_module.preprocessor(c.item))
             for c in controls]
    controlnet = None
    if controls:
        from diffusers import MultiControlNetModel

        nets = [c.net for c in controls]
        controlnet = nets[0] if len(nets) == 1 else MultiControlNetModel(nets)
    stages.now = "preparing the model's inputs"
    params = req.params
    defaults = model.entry.defaults
    sampler = params["sampler"]
    if sampler == "default":
        sampler = defaults.get("sampler", "default")
    if sampler == "lcm" and defaults.get("sampler") != "lcm":
        defaults = {**defaults, **LCM_DEFAULTS}   # LCM's few steps, not the model's many
    steps = params["steps"] or int(defaults.get("steps", FALLBACK_STEPS))
    guidance = params["guidance"]
    if guidance is None:
        guidance = float(defaults.get("guidance", FALLBACK_GUIDANCE))

    pipes: dict[str, Any] = {}

    def pipe_for(kind: str) -> Any:
        if kind not in pipes:
            pipes[kind] = model.pipeline(kind, controlnet)
            pipes[kind].scheduler = schedulers.make(sampler, model.scheduler)
        return pipes[kind]

    stages.now = "encoding the prompt"
    with torch.inference_mode():
        texts = model.prompts.embeds(pipe_for(work_kind), params["prompt"],
                                     params["negative_prompt"] or None, guidance,
                                     model.adapters.state)
    seeds = seeds_for(params)
    width, height = req.size
    mw, mh = pixels.model_size(width, height, model.native_size)
    # progress totals: every denoising pass of every variation, tiles included
    if upscaling:
        per_seed = tiling.upscale_steps(req, model.native_size, steps)
    elif full_res:
        per_seed = tiling.variation_steps(req, model.native_size, steps)
    else:
        per_seed = steps if req.kind == "txt2img" else tiling.pass_steps(steps,
                                                                       params["strength"])
    done = [0]
    total = per_seed * len(seeds)

    def denoise(image: np.ndarray | None, mask: np.ndarray | None, w: int, h: int,
                strength: float, seed: int, kind: str,
                box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """One pipeline call at model size w × h for ``box`` of the region (None: all of
        it): (h, w, 3) float32 pixels."""
        pipe = pipe_for(kind)
        task = model.task(kind)
        # at least one step: a few-step job's refinement (2 steps × 0.35) must still run
        n = steps if int(steps * strength) >= 1 else math.ceil(1 / strength)
        args: dict[str, Any] = {**texts, "num_inference_steps": n,
                                "guidance_scale": guidance, "output_type": "np"}
        image_t = _to_tensor(image) if image is not None else torch.full((1, 3, h, w), 0.5)
        freeze = None
        if (params["soft_edges"] == "on" and image is not None and mask is not None
                and kind == "inpaint" and differential.Freeze.applies(pipe)):
            soft = differential.latent_map(mask, pipe.vae_scale_factor)
            if differential.is_soft(soft):   # a hard selection runs as it always did
                freeze = differential.Freeze(pipe.vae, image_t, soft, seed + 7)
                if pipe.unet.config.in_channels == 4:   # the pipeline's blend must let it
                    mask = (mask > differential.EPSILON).astype(np.float32)
        if task == "inpaint":  # an inpainting model runs img2img and txt2img this way too
            mask_t = (_to_tensor(mask[..., None]) if mask is not None
                      else torch.ones((1, 1, h, w)))
            args.update(image=image_t, mask_image=mask_t, height=h, width=w,
                        strength=strength)
        elif task == "img2img":
            args.update(image=image_t, strength=strength)
        else:
            args.update(height=h, width=w)
        if controls:
            x, y, bw, bh = box or (0, 0, width, height)
            hints = [_to_tensor(preprocess.fit(m[y:y + bh, x:x + bw], w, h, keep))
                     for m, keep in zip(maps, lines, strict=True)]
            items = [c.item for c in controls]
            one = len(items) == 1
            # the text-to-image ControlNet pipeline calls its control image "image"
            args["image" if task == "txt2img" else "control_image"] = \
                hints[0] if one else hints
            for arg, key in (("controlnet_conditioning_scale", "strength"),
                             ("control_guidance_start", "start"),
                             ("control_guidance_end", "end")):
                values = [float(i[key]) for i in items]
                args[arg] = values[0] if one else values
        expected = steps if kind == "txt2img" else tiling.pass_steps(steps, strength)
        before = done[0]

        def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict:
            if cancel.is_set():
                raise JobCancelled
            failpoints.hit("denoise", req.params["prompt"])
            if freeze is not None:
                kw["latents"] = freeze(p, i, kw["latents"])
            n = p.num_timesteps
            preview = None
            if (req.preview and not full_res
                    and (i % max(1, n // PREVIEWS_PER_RUN) == 0 or i == n - 1)):
                preview = _preview(p, kw["latents"])
            progress(min(total, before + min(i + 1, expected)), total, preview)
            if i == n - 1:  # after the last step the pipeline turns latents into pixels
                stages.now = "decoding the latents"
                failpoints.hit("latents", req.params["prompt"])
            return kw

        if cancel.is_set():
            raise JobCancelled
        generator = torch.Generator("cpu").manual_seed(seed)
        stages.now = "encoding the image"
        # the UNet's first call is where denoising begins: no pipeline callback says so
        hook = pipe.unet.register_forward_pre_hook(lambda *_: setattr(stages, "now",
                                                                     "denoising"))
        try:
            with torch.inference_mode():
                out = pipe(**args, generator=generator, callback_on_step_end=on_step).images[0]
        finally:
            hook.remove()
        if cancel.is_set():
            raise JobCancelled
        done[0] = before + expected
        stages.now = "refining at full resolution" if full_res else "encoding the result"
        return np.asarray(out, np.float32)

    upscaler = None
    if full_res and params.get("upscaler"):
        if upscalers is None:
            raise UpscalerError("this daemon has no upscalers")
        stages.now = "loading the upscaler"
        upscaler = upscalers.get(params["upscaler"])
    results: list[PatchResult] = []
    for index, seed in enumerate(seeds):
        if full_res:
            def show(preview: np.ndarray) -> None:
                progress(done[0], total, preview)

            patch = (tiling.upscale if upscaling else tiling.run)(
                req, model.native_size, seed, denoise, cancel.is_set,
                show if req.preview else None, upscaler)
            if cancel.is_set():
                raise JobCancelled
            stages.now = "encoding the result"
            failpoints.hit("encode", req.params["prompt"])
            results.append(PatchResult(patch, seed))
            done[0] = (index + 1) * per_seed   # inpainting skips the tiles it leaves alone
            progress(done[0], total, None)
            continue
        # scaled: the region at the model's size, then back
        assert prep is not None
        image = pixels.resize(prep.rgb, mw, mh) if prep.rgb is not None else None
        mask = pixels.resize(prep.model_mask[..., None], mw, mh)[..., 0]
        strength = params["strength"] if req.kind != "txt2img" else 1.0
        out = denoise(image, mask, mw, mh, strength, seed, req.kind, None)
        stages.now = "encoding the result"
        failpoints.hit("encode", req.params["prompt"])
        rgb = pixels.resize(out, width, height)
        if prep.rgb is not None and params["colour_match"] == "on":
            rgb = seams.match_edges(rgb, prep.rgb, prep.alpha)
        patch = pixels.make_patch(rgb, prep.alpha, req.offset, req.result_format)
        results.append(PatchResult(patch, seed))
    return results


def _preview(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    """The current latents decoded by the model's VAE: what the image looks like so far."""
    vae = pipe.vae
    with torch.inference_mode():
        x = vae.decode(latents[:1].to(vae.dtype) / vae.config.scaling_factor).sample
    rgb = ((x[0].float().permute(1, 2, 0) + 1) / 2).clamp(0, 1).nan_to_num(0.5).cpu().numpy()
    h, w = rgb.shape[:2]
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    rgb = pixels.resize(rgb, max(1, round(w * scale)), max(1, round(h * scale)))
    return np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=2)


def _to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()

"""One job, start to finish: the recipe the worker runs for every submit.

``run`` reads as its steps (``_Recipe.run``): 1. check the inputs; 2. the LoRAs and the
embeddings' words; 3. the control maps; 4. encode the prompt; 5. the progress plan; 6. the
upscaler; 7. each variation: denoise (progress and cancel every step), decode, compose.
The scaled path (the region at the model's size and back) is here; regions well above the
model's size, and upscale jobs, are painted by ``tiling`` through the same ``denoise``.
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
from . import differential, failpoints, paths, pixels, preprocess, schedulers, seams, tiling

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
    path: str = "scaled"   # which way it was painted (paths.Plan.path)


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


@dataclass(frozen=True)
class Sampling:
    """The sampler, steps and guidance a job runs with: the request's, else the model's
    (its paintbridge.json), else the fallbacks."""

    sampler: str
    steps: int
    guidance: float

    @classmethod
    def resolve(cls, params: dict[str, Any], defaults: dict[str, Any]) -> Sampling:
        sampler = params["sampler"]
        if sampler == "default":
            sampler = defaults.get("sampler", "default")
        if sampler == "lcm" and defaults.get("sampler") != "lcm":
            defaults = {**defaults, **LCM_DEFAULTS}   # LCM's few steps, not the model's many
        steps = params["steps"] or int(defaults.get("steps", FALLBACK_STEPS))
        guidance = params["guidance"]
        if guidance is None:
            guidance = float(defaults.get("guidance", FALLBACK_GUIDANCE))
        return cls(sampler, steps, guidance)


def run(req: SubmitRequest, model: LoadedModel, cancel: threading.Event,
        progress: ProgressFn, loras: Sequence[JobLora] = (),
        embeddings: Sequence[EmbeddingEntry] = (),
        upscalers: Upscalers | None = None,
        controls: Sequence[JobControl] = (),
        whole_max_pixels: int = paths.WHOLE_MAX_PIXELS) -> list[PatchResult]:
    """The whole recipe; raises JobCancelled, BadInput, LoraError, EmbeddingError or
    StageFailed (from what broke). The request is read, never written."""
    stages = _Stages()
    try:
        return _Recipe(req, model, cancel, progress, stages, list(controls),
                       whole_max_pixels).run(
            list(loras), list(embeddings), upscalers)
    except (JobCancelled, BadInput, LoraError, EmbeddingError, UpscalerError):
        raise
    except Exception as exc:
        raise StageFailed(stages.now) from exc


#: the paths that make one pipeline call for the whole region (paths.plan)
ONE_CALL = ("scaled", "whole")
#: ... and the paths that make one pipeline call in all (previews come from its steps)
SINGLE_CALL = (*ONE_CALL, "reduced")


def _pad(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """(h, w, c) grown to (height, width) by repeating its last row and column."""
    h, w = array.shape[:2]
    return np.pad(array, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


class _Recipe:
    """One job on one loaded model. :meth:`run` is the recipe, step by step; :meth:`denoise`
    is one pipeline call, which the tiles (``tiling.Denoise``) make as often as they need."""

    def __init__(self, req: SubmitRequest, model: LoadedModel, cancel: threading.Event,
                 progress: ProgressFn, stages: _Stages, controls: list[JobControl],
                 whole_max_pixels: int = paths.WHOLE_MAX_PIXELS) -> None:
        self.req, self.model, self.cancel, self.stages = req, model, cancel, stages
        self._progress = progress
        self.controls = controls
        self.sampling = Sampling.resolve(req.params, model.entry.defaults)
        self.plan = paths.plan(req, model.native_size, self.sampling.steps, whole_max_pixels)
        self.pipes: dict[str, Any] = {}
        self.controlnet: Any = None
        self.maps: list[np.ndarray] = []
        self.keeps_lines: list[bool] = []
        self.texts: dict[str, Any] = {}
        self.done = 0      # denoising steps behind us, every variation and tile counted
        self.total = 0

    def run(self, loras: list[JobLora], embeddings: list[EmbeddingEntry],
            upscalers: Upscalers | None) -> list[PatchResult]:
        req, params = self.req, self.req.params
        # 1. check the inputs (the scaled path decodes them whole; tiles band by band)
        failpoints.hit("decode", params["prompt"])
        prep = prepare(req) if self.plan.path in ONE_CALL else None
        if prep is None and req.mask is not None \
                and not (pixels.frame_array(req.mask_data, req.mask) > 0).any():
            raise BadInput("the mask selects nothing")
        # 2. the adapters: exactly these LoRAs (or none); the embeddings' words in the prompt
        self.model.adapters.use(loras)
        prompt, negative = self._prompts(embeddings)
        # 3. the control maps and their ControlNets
        self.stages.now = "preprocessing the controls"
        self._prepare_controls()
        # 4. encode the prompt
        self.stages.now = "encoding the prompt"
        work_kind = "img2img" if self.plan.path == "upscale" else req.kind
        with torch.inference_mode():
            self.texts = self.model.prompts.embeds(
                self._pipe(work_kind), prompt, negative or None, self.sampling.guidance,
                self.model.adapters.state)
        # 5. the progress plan: every denoising pass of every variation, tiles included
        seeds = seeds_for(params)
        self.total = self.plan.steps_per_variation * len(seeds)
        # 6. the upscaler model, for full-resolution jobs that name one
        upscaler = self._upscaler(upscalers)
        # 7. each variation: denoise, decode, compose into a patch
        results = []
        for index, seed in enumerate(seeds):
            if prep is not None:
                patch = self._scaled(prep, seed)
            else:
                patch = self._full_resolution(seed, upscaler)
                # inpainting skips the tiles it leaves alone: the bar ends where it should
                self.done = (index + 1) * self.plan.steps_per_variation
                self._progress(self.done, self.total, None)
            results.append(PatchResult(patch, seed, self.plan.path))
        return results

    # ---------------------------------------------------------------- the steps' helpers

    def _prompts(self, embeddings: list[EmbeddingEntry]) -> tuple[str, str]:
        params = self.req.params
        prompt, negative = params["prompt"], params["negative_prompt"]
        if not embeddings:
            return prompt, negative
        self.stages.now = "loading the embeddings"
        try:
            prompt, negative = self.model.embeddings.rewrite(embeddings, prompt, negative)
        except ValueError as exc:
            raise EmbeddingError(str(exc)) from None
        return prompt, negative

    def _prepare_controls(self) -> None:
        if not self.controls:
            return
        self.maps = control_maps(self.req)
        self.keeps_lines = [preprocess.keeps_lines(c.item["type"],
                                                   controls_module.preprocessor(c.item))
                            for c in self.controls]
        from diffusers import MultiControlNetModel

        nets = [c.net for c in self.controls]
        self.controlnet = nets[0] if len(nets) == 1 else MultiControlNetModel(nets)

    def _pipe(self, kind: str) -> Any:
        """The model's pipeline for a kind (with the job's ControlNets), with a fresh
        scheduler of the job's sampler."""
        if kind not in self.pipes:
            pipe = self.model.pipeline(kind, self.controlnet)
            pipe.scheduler = schedulers.make(self.sampling.sampler, self.model.scheduler)
            self.pipes[kind] = pipe
        return self.pipes[kind]

    def _upscaler(self, upscalers: Upscalers | None) -> Any:
        if self.plan.path in SINGLE_CALL or not self.req.params.get("upscaler"):
            return None
        if upscalers is None:
            raise UpscalerError("this daemon has no upscalers")
        self.stages.now = "loading the upscaler"
        return upscalers.get(self.req.params["upscaler"])

    def _scaled(self, prep: Prepared, seed: int) -> pixels.EncodedPatch:
        """One pipeline call for the whole region, cut to its alpha: at the model's size and
        back (``scaled``), or at the region's own size, padded to the model's multiple of 8
        and cropped (``whole``: no resampling at all)."""
        req, params = self.req, self.req.params
        width, height = req.size
        if self.plan.path == "whole":
            mw, mh = -(-width // 8) * 8, -(-height // 8) * 8
            image = _pad(prep.rgb, mw, mh) if prep.rgb is not None else None
            mask = _pad(prep.model_mask[..., None], mw, mh)[..., 0]
        else:
            mw, mh = pixels.model_size(width, height, self.model.native_size)
            image = pixels.resize(prep.rgb, mw, mh) if prep.rgb is not None else None
            mask = pixels.resize(prep.model_mask[..., None], mw, mh)[..., 0]
        strength = params["strength"] if req.kind != "txt2img" else 1.0
        out = self.denoise(image, mask, mw, mh, strength, seed, req.kind, None)
        self.stages.now = "encoding the result"
        failpoints.hit("encode", params["prompt"])
        rgb = (out[:height, :width] if self.plan.path == "whole"
               else pixels.resize(out, width, height))
        if prep.rgb is not None and params["colour_match"] == "on":
            rgb = seams.match_edges(rgb, prep.rgb, prep.alpha)
        return pixels.make_patch(rgb, prep.alpha, req.offset, req.result_format)

    def _full_resolution(self, seed: int, upscaler: Any) -> pixels.EncodedPatch:
        """The region at 1:1 in tiles (or enlarged, for an upscale): tiling's own recipe."""
        def show(preview: np.ndarray) -> None:
            self._progress(self.done, self.total, preview)

        patch = tiling.paint(self.plan, self.req, self.model.native_size, seed, self.denoise,
                             self.cancel.is_set, show if self.req.preview else None, upscaler)
        if self.cancel.is_set():
            raise JobCancelled
        self.stages.now = "encoding the result"
        failpoints.hit("encode", self.req.params["prompt"])
        return patch

    # ---------------------------------------------------------------- one pipeline call

    def denoise(self, image: np.ndarray | None, mask: np.ndarray | None, w: int, h: int,
                strength: float, seed: int, kind: str,
                box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """One pipeline call at model size w × h for ``box`` of the region (None: all of
        it): (h, w, 3) float32 pixels."""
        pipe = self._pipe(kind)
        steps = self.sampling.steps
        image_t = _to_tensor(image) if image is not None else torch.full((1, 3, h, w), 0.5)
        freeze, mask = self._soft_selection(pipe, image_t, image, mask, seed, kind)
        args = self._call_args(kind, image_t, mask, w, h, strength, box)
        expected = steps if kind == "txt2img" else paths.pass_steps(steps, strength)
        if self.cancel.is_set():
            raise JobCancelled
        generator = torch.Generator("cpu").manual_seed(seed)
        self.stages.now = "encoding the image"
        # the UNet's first call is where denoising begins: no pipeline callback says so
        hook = pipe.unet.register_forward_pre_hook(
            lambda *_: setattr(self.stages, "now", "denoising"))
        try:
            with torch.inference_mode():
                out = pipe(**args, generator=generator,
                           callback_on_step_end=self._on_step(freeze, expected)).images[0]
        finally:
            hook.remove()
        if self.cancel.is_set():
            raise JobCancelled
        self.done += expected
        self.stages.now = ("refining at full resolution" if self.plan.path not in SINGLE_CALL
                           else "encoding the result")
        return np.asarray(out, np.float32)

    def _soft_selection(self, pipe: Any, image_t: torch.Tensor, image: np.ndarray | None,
                        mask: np.ndarray | None, seed: int, kind: str
                        ) -> tuple[differential.Freeze | None, np.ndarray | None]:
        """Differential diffusion for a soft selection (and the mask the pipeline's own
        blend must get for it); a hard selection runs as it always did."""
        if not (self.req.params["soft_edges"] == "on" and image is not None
                and mask is not None and kind == "inpaint" and differential.Freeze.applies(pipe)):
            return None, mask
        soft = differential.latent_map(mask, pipe.vae_scale_factor)
        if not differential.is_soft(soft):
            return None, mask
        freeze = differential.Freeze(pipe.vae, image_t, soft, seed + 7)
        if pipe.unet.config.in_channels == 4:   # the pipeline's blend must let it
            mask = (mask > differential.EPSILON).astype(np.float32)
        return freeze, mask

    def _call_args(self, kind: str, image_t: torch.Tensor, mask: np.ndarray | None, w: int,
                   h: int, strength: float, box: tuple[int, int, int, int] | None
                   ) -> dict[str, Any]:
        steps = self.sampling.steps
        # at least one step: a few-step job's refinement (2 steps × 0.35) must still run
        n = steps if int(steps * strength) >= 1 else math.ceil(1 / strength)
        args: dict[str, Any] = {**self.texts, "num_inference_steps": n,
                                "guidance_scale": self.sampling.guidance, "output_type": "np"}
        task = self.model.task(kind)
        if task == "inpaint":  # an inpainting model runs img2img and txt2img this way too
            mask_t = (_to_tensor(mask[..., None]) if mask is not None
                      else torch.ones((1, 1, h, w)))
            args.update(image=image_t, mask_image=mask_t, height=h, width=w,
                        strength=strength)
        elif task == "img2img":
            args.update(image=image_t, strength=strength)
        else:
            args.update(height=h, width=w)
        if self.controls:
            args.update(self._control_args(task, w, h, box))
        return args

    def _control_args(self, task: str, w: int, h: int, box: tuple[int, int, int, int] | None
                      ) -> dict[str, Any]:
        """The ControlNet arguments: each map's part under ``box``, at the call's size."""
        width, height = self.req.size
        x, y, bw, bh = box or (0, 0, width, height)
        hints = [_to_tensor(preprocess.fit(m[y:y + bh, x:x + bw], w, h, keep))
                 for m, keep in zip(self.maps, self.keeps_lines, strict=True)]
        items = [c.item for c in self.controls]
        one = len(items) == 1
        # the text-to-image ControlNet pipeline calls its control image "image"
        args: dict[str, Any] = {"image" if task == "txt2img" else "control_image":
                                hints[0] if one else hints}
        for arg, key in (("controlnet_conditioning_scale", "strength"),
                         ("control_guidance_start", "start"),
                         ("control_guidance_end", "end")):
            values = [float(i[key]) for i in items]
            args[arg] = values[0] if one else values
        return args

    def _on_step(self, freeze: differential.Freeze | None, expected: int
                 ) -> Callable[[Any, int, Any, dict[str, Any]], dict]:
        """The pipeline's step callback: cancel, soft selection, progress and previews."""
        before = self.done
        prompt = self.req.params["prompt"]
        previews = self.req.preview and self.plan.path in SINGLE_CALL

        def on_step(p: Any, i: int, t: Any, kw: dict[str, Any]) -> dict:
            if self.cancel.is_set():
                raise JobCancelled
            failpoints.hit("denoise", prompt)
            if freeze is not None:
                kw["latents"] = freeze(p, i, kw["latents"])
            n = p.num_timesteps
            preview = None
            if previews and (i % max(1, n // PREVIEWS_PER_RUN) == 0 or i == n - 1):
                preview = _preview(p, kw["latents"])
            self._progress(min(self.total, before + min(i + 1, expected)), self.total, preview)
            if i == n - 1:  # after the last step the pipeline turns latents into pixels
                self.stages.now = "decoding the latents"
                failpoints.hit("latents", prompt)
            return kw

        return on_step


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

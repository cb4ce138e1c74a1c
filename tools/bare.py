"""The reference no one here wrote: the bare diffusers call of a model, on a picture at its
own size, and the measures a result is judged by against it (bench/fidelity.py,
bench/overhead.py, tests/test_fidelity.py).

A 9-channel inpainting model with a full mask is image to image; with a mask, inpainting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tools import quality

EMBEDDED = Path(__file__).resolve().parents[1] / "backend" / "default_model"
#: the targets of "do no harm": PSNR within this many dB of the bare call, edges at least
#: this fraction of its steepness, texture on flat areas at most this many times its own
#: (or of half a level: both at zero is no grid)
PSNR_MARGIN_DB, EDGE_KEPT, FLAT_MAX, FLAT_FLOOR = 1.0, 0.9, 1.5, 0.5


def load(model_dir: Path = EMBEDDED, dtype: str = "float32",
         channels_last_unet: bool = False) -> Any:
    """The folder as diffusers loads it, on the CPU (``channels_last_unet``: as the
    daemon's registry lays it out; its VAE stays plain on the CPU)."""
    import diffusers
    import torch

    pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(
        str(model_dir), torch_dtype=getattr(torch, dtype), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False, local_files_only=True)
    pipe.to("cpu")
    if channels_last_unet:
        pipe.unet.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe: Any, picture: np.ndarray, strength: float, *, seed: int, steps: int,
         guidance: float, prompt: str = "", mask: np.ndarray | None = None) -> np.ndarray:
    """One pipeline call on the whole picture (uint8 (h, w, 3|4)), at its own size;
    ``mask`` uint8 (h, w) or None (all of it: image to image). Returns (h, w, 3) in 0..1."""
    import torch

    height, width = picture.shape[:2]
    image = torch.from_numpy(picture[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None]
    mask_t = (torch.ones((1, 1, height, width)) if mask is None
              else torch.from_numpy(mask.astype(np.float32) / 255)[None, None])
    with torch.inference_mode():
        out = pipe(prompt=prompt, image=image, mask_image=mask_t, height=height, width=width,
                   strength=strength, num_inference_steps=steps, guidance_scale=guidance,
                   output_type="np",
                   generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.clip(out, 0, 1)


def measures(result: np.ndarray, source: np.ndarray) -> dict[str, float]:
    """What an artist sees, against the source: PSNR, SSIM, edges kept, texture on flat
    areas (a grid shows here), colour drift."""
    return {"psnr": quality.psnr(result, source), "ssim": quality.ssim(result, source),
            "edges": quality.edge_steepness(result, source),
            "flat": quality.flat_texture(result, source),
            "drift": quality.colour_drift(result, source)}


def failures(ours: dict[str, float], bare: dict[str, float]) -> list[str]:
    """The targets ``ours`` misses against ``bare`` (both from :func:`measures`)."""
    missed = []
    if ours["psnr"] < bare["psnr"] - PSNR_MARGIN_DB:
        missed.append(f"PSNR {ours['psnr']:.1f} < {bare['psnr']:.1f} - {PSNR_MARGIN_DB:g} dB")
    if ours["edges"] < EDGE_KEPT * bare["edges"]:
        missed.append(f"edges {ours['edges']:.2f} < {EDGE_KEPT:g} x {bare['edges']:.2f}")
    if ours["flat"] > FLAT_MAX * max(bare["flat"], FLAT_FLOOR):
        missed.append(f"flat texture {ours['flat']:.2f} > {FLAT_MAX:g} x "
                      f"max({bare['flat']:.2f}, {FLAT_FLOOR:g})")
    return missed

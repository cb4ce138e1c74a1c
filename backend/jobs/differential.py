"""Soft selections: a partly selected pixel changes partly (differential diffusion).

A pipeline's mask is all or nothing (diffusers binarizes it at one half), so without this a
soft selection edge is either repainted in full or left alone, and the layer's alpha then
blends two different pictures there: a ghost. Here a latent pixel whose selection value is
``m`` takes part only in the last ``m`` of the schedule: until then, after every step, it
is set back to the source noised to the next step's level (Levin and Fried, "Differential
Diffusion", 2023). It runs in the pipeline's step callback, after the pipeline's own mask
blending, so it works the same for 4-channel and 9-channel (inpainting) UNets and needs
no pipeline of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: a mask value this close to 0 or 1 counts as not soft
EPSILON = 1.0 / 255.0
#: a latent cell whose pixels' selection differs by more than this holds an edge, not a
#: gradual change
STEEP = 0.5
SNAP = 0.1


def is_soft(mask: np.ndarray | None) -> bool:
    """Whether a (h, w) mask has partly selected pixels."""
    return mask is not None and bool(((mask > EPSILON) & (mask < 1.0 - EPSILON)).any())


def latent_map(mask: np.ndarray, factor: int) -> np.ndarray:
    """The selection at the latents' resolution: a latent cell that a steep edge crosses
    (its pixels differ by more than :data:`STEEP`: a hard selection, or the few soft
    pixels that scaling leaves on one) is all or nothing by its mean, as diffusers makes its
    own mask; a cell inside a gradual edge takes the mean of its pixels. So only a
    selection that is soft across more than a couple of cells changes gradually, and a
    hard one runs as it does without this (values within :data:`SNAP` of 0 or 1, which
    scaling's ringing leaves beside an edge, are 0 or 1)."""
    m = torch.from_numpy(np.ascontiguousarray(mask, np.float32))[None, None]
    mean = F.avg_pool2d(m, factor)
    steep = F.max_pool2d(m, factor) + F.max_pool2d(-m, factor) > STEEP
    out = torch.where(steep, (mean >= 0.5).float(), mean)
    out = torch.where(out < SNAP, 0.0, torch.where(out > 1.0 - SNAP, 1.0, out))
    return out[0, 0].numpy()


class Freeze:
    """The per-step reset of the pixels whose turn has not come yet, for one pipeline call.

    ``image``: (1, 3, h, w) in [0, 1], the source at model size; ``soft``: the selection
    at the latents' size (:func:`latent_map`), 1 = change as much as the job's strength
    allows, 0 = never."""

    def __init__(self, vae: Any, image: torch.Tensor, soft: np.ndarray, seed: int) -> None:
        dtype = vae.dtype
        device = next(vae.parameters()).device
        with torch.inference_mode():
            x0 = vae.encode((image * 2 - 1).to(device, dtype)).latent_dist.mean
        self.x0 = x0 * vae.config.scaling_factor
        m = torch.from_numpy(np.ascontiguousarray(soft, np.float32))[None, None]
        if m.shape[-2:] != self.x0.shape[-2:]:
            raise ValueError(f"soft map {tuple(m.shape[-2:])} for latents "
                             f"{tuple(self.x0.shape[-2:])}")
        self.m = m.to(device, dtype)
        generator = torch.Generator("cpu").manual_seed(seed)
        self.noise = torch.randn(self.x0.shape, generator=generator).to(device, dtype)

    @staticmethod
    def applies(pipe: Any) -> bool:
        """Second-order schedulers visit each timestep twice: the step count would lie."""
        return getattr(pipe.scheduler, "order", 1) == 1

    def __call__(self, pipe: Any, i: int, latents: torch.Tensor) -> torch.Tensor:
        """Latents after step ``i`` of the ``pipe.num_timesteps`` this call runs: a pixel
        keeps its step only in the last ``m·n`` steps."""
        n = pipe.num_timesteps
        frozen = (self.m * n < n - i).to(latents.dtype)
        if i + 1 < n:
            timesteps = pipe.scheduler.timesteps
            t_next = timesteps[len(timesteps) - n + i + 1:][:1]
            target = pipe.scheduler.add_noise(self.x0, self.noise, t_next)
        else:
            target = self.x0
        return frozen * target.to(latents.dtype) + (1 - frozen) * latents

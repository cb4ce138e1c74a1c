"""The text encoder's outputs for recent prompts, per loaded model.

Live painting sends the same prompt many times a second with only the pixels changed; a
batch of variations encodes it once per seed. The pipeline's own ``encode_prompt`` computes
what is kept, and the pipeline gets it back as ``prompt_embeds``, so a cached job is bit for
bit the job without the cache. The key holds everything that changes the encoder's output:
both texts (embedding names already rewritten to their per-file tokens), whether guidance
needs the negative side, and the active LoRAs with their weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

#: prompts kept per model
SIZE = 8


class PromptCache:
    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._kept: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()
        self.hits = self.misses = 0

    def embeds(self, pipe: Any, prompt: str, negative: str | None, guidance: float,
               adapters: Hashable) -> dict[str, Any]:
        """The pipeline call's ``prompt_embeds`` (and negative/pooled) arguments."""
        cfg = guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
        key = (prompt, negative, cfg, adapters)
        kept = self._kept.get(key)
        if kept is not None:
            self.hits += 1
            self._kept.move_to_end(key)
            return kept
        self.misses += 1
        kept = encode(pipe, prompt, negative, cfg)
        self._kept[key] = kept
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)
        return kept


def encode(pipe: Any, prompt: str, negative: str | None, cfg: bool) -> dict[str, Any]:
    """What the pipeline would compute from the texts, as its call's keyword arguments."""
    device = pipe._execution_device
    if "text_encoder_2" in pipe.components:   # SDXL: two encoders and pooled outputs
        pe, ne, pooled, neg_pooled = pipe.encode_prompt(
            prompt=prompt, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=cfg, negative_prompt=negative)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne,
                "pooled_prompt_embeds": pooled, "negative_pooled_prompt_embeds": neg_pooled}
    pe, ne = pipe.encode_prompt(prompt, device, 1, cfg, negative)
    return {"prompt_embeds": pe, "negative_prompt_embeds": ne}

"""Component builders for the default model: offline CLIP tokenizer, VAE, UNet, text encoder.

The shapes are chosen for a 2-core CPU: a 64x64 image becomes a 16x16x4 latent (VAE scale 4),
so the UNet works at the same 16x16 size that the feasibility spike found affordable.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .data import SIZE, WORDS

VAE_SCALE = 4
LATENT = SIZE // VAE_SCALE
TEXT_DIM = 64
MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-printable-unicode table (same as the real CLIP tokenizer)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one lower-case ASCII word (end-of-word marker on the last symbol)."""
    toks = list(word[:-1]) + [word[-1] + "</w>"]
    while len(toks) > 1:
        adjacent = zip(toks, toks[1:], strict=False)
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(adjacent)]
        best, i = min(pairs)
        if best == 1 << 30:
            break
        a, b = toks[i], toks[i + 1]
        merged, j = [], 0
        while j < len(toks):
            if j < len(toks) - 1 and toks[j] == a and toks[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(toks[j])
                j += 1
        toks = merged
    return toks


def build_tokenizer_files(folder: Path, words: list[str] | tuple[str, ...] = WORDS) -> None:
    """Write vocab.json + merges.txt so that each word in ``words`` is exactly one token.

    Any other text still tokenizes (byte-level fallback), so unknown prompts never fail.
    """
    chars = list(_bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    changed = True
    while changed:
        changed = False
        for w in words:
            toks = _bpe(w, ranks)
            if len(toks) > 1:
                pair = (toks[0], toks[1])
                ranks[pair] = len(merges)
                merges.append(pair)
                changed = True
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """Load the offline tokenizer the same way the pipeline will (``from_pretrained``)."""
    return CLIPTokenizer.from_pretrained(
        str(folder), model_max_length=MAX_TOKENS, pad_token="<|endoftext|>"
    )


def make_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=TEXT_DIM * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=TEXT_DIM,
    )
    return CLIPTextModel(cfg)


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=SIZE,
        scaling_factor=1.0,
    )


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(64, 96, 96),
        layers_per_block=1,
        norm_num_groups=16,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=4,
    )


def make_scheduler(clip_range: float) -> DDIMScheduler:
    """DDIM on a cosine schedule predicting x0 ("sample"), the target the spike found learnable."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        clip_sample=True,
        clip_sample_range=clip_range,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="trailing",
    )

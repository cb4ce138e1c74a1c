"""Tiny, seeded, *real* diffusers SD pipelines for tests and benchmarks.

Why: the daemon must be exercised end to end (diffusers folders, original single files,
img2img/inpaint, SD1 and SDXL) on a CPU-only machine with no model hub. These pipelines
have the exact architecture *shape* of SD1.x / SDXL (same block ordering, 8x VAE, standard
CLIP vocabulary and 77-token context, SDXL's 10+ layer OpenCLIP encoder) so diffusers'
own ``infer_diffusers_model_type`` classifies their single files as ``v1``,
``inpainting``, ``xl_base`` and ``xl_inpaint``, while being small enough that a 20-step
64x64 call takes a fraction of a second. Weights are random but seeded, hence reproducible.

Tokenizers are the real CLIP BPE vocabulary shipped in ``backend/configs/clip-tokenizer``.
"""

from __future__ import annotations

import functools
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from paintbridge.backend.models.shipped_configs import CONFIG_ROOT

KINDS = ("v1", "inpainting", "xl_base", "xl_inpaint")

CLIP_TOKENIZER_DIR = CONFIG_ROOT / "clip-tokenizer"

# Standard CLIP ids (vocab of 49408; "!" is id 0, SDXL's tokenizer_2 pads with it).
VOCAB_SIZE = 49408
BOS_ID = 49406
EOS_ID = 49407
MAX_POSITIONS = 77
SD_PAD_TOKEN = "<|endoftext|>"
SDXL_PAD_TOKEN_2 = "!"

# Native resolution: unet.sample_size (8) * vae scale factor (8) = 64 px.
SAMPLE_SIZE = 8

# Identical to the SD1.5 / SDXL scheduler configs except for the class.
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}

_PIPELINE_CLASS = {
    "v1": "StableDiffusionPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "xl_inpaint": "StableDiffusionXLInpaintPipeline",
}


def pipeline_class(kind: str) -> type:
    """The diffusers pipeline class used for ``kind``."""
    import diffusers

    _check_kind(kind)
    return getattr(diffusers, _PIPELINE_CLASS[kind])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; expected one of {KINDS}")


@functools.lru_cache(maxsize=4)
def load_clip_tokenizer(pad_token: str = SD_PAD_TOKEN, directory: str | None = None) -> Any:
    """Load the shipped CLIP tokenizer offline (cached: parsing 49k merges takes a while).

    ``from_pretrained`` is used because ``CLIPTokenizer(vocab_file=...)`` is silently
    ignored by transformers 5, and ``model_max_length`` must be given for a bare vocab folder.
    """
    from transformers import CLIPTokenizer

    path = Path(directory) if directory else CLIP_TOKENIZER_DIR
    if not (path / "vocab.json").is_file():
        raise FileNotFoundError(f"CLIP tokenizer files missing in {path}")
    tok = CLIPTokenizer.from_pretrained(
        str(path), model_max_length=MAX_POSITIONS, pad_token=pad_token, local_files_only=True
    )
    if len(tok) != VOCAB_SIZE:
        raise ValueError(f"{path}: expected {VOCAB_SIZE} tokens, got {len(tok)}")
    return tok


def tokenizers_for(kind: str) -> dict[str, Any]:
    """Tokenizer kwargs to pass to ``from_single_file``/``from_pretrained`` for ``kind``."""
    _check_kind(kind)
    toks = {"tokenizer": load_clip_tokenizer(SD_PAD_TOKEN)}
    if kind.startswith("xl"):
        toks["tokenizer_2"] = load_clip_tokenizer(SDXL_PAD_TOKEN_2)
    return toks


def _seeded(seed: int, offset: int) -> None:
    torch.manual_seed(seed * 1000 + offset)


def _scheduler(cls: type) -> Any:
    """``cls`` with the standard SD values it accepts (PNDM has no ``clip_sample``)."""
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in SCHEDULER_CONFIG.items() if k in params})


def _text_encoder(hidden: int, layers: int, act: str, pad_id: int, projection: int | None) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        hidden_act=act,
        layer_norm_eps=1e-5,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=pad_id,
        projection_dim=projection or hidden,
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(cfg).eval()


def _vae(scaling_factor: float) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        sample_size=SAMPLE_SIZE * 8,
        scaling_factor=scaling_factor,
    ).eval()


def _sd1_unet(in_channels: int, cross_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=SAMPLE_SIZE,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        norm_num_groups=32,
        cross_attention_dim=cross_dim,
        attention_head_dim=8,
    ).eval()


def _sdxl_unet(in_channels: int, cross_dim: int, pooled_dim: int) -> Any:
    from diffusers import UNet2DConditionModel

    time_dim = 8
    return UNet2DConditionModel(
        sample_size=SAMPLE_SIZE,
        in_channels=in_channels,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=2,
        norm_num_groups=32,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=cross_dim,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # 6 micro-conditioning ids (orig size, crop, target size) + pooled CLIP-G output.
        projection_class_embeddings_input_dim=6 * time_dim + pooled_dim,
    ).eval()


def build_tiny_pipeline(kind: str, seed: int = 0) -> Any:
    """Build a tiny random pipeline of ``kind`` (``v1``/``inpainting``/``xl_base``/``xl_inpaint``).

    Same ``seed`` -> bit-identical weights: the RNG is reseeded before each component.
    """
    from diffusers import EulerDiscreteScheduler, PNDMScheduler

    _check_kind(kind)
    cls = pipeline_class(kind)
    in_channels = 9 if kind.endswith("inpaint") or kind == "inpainting" else 4
    with torch.device("cpu"):
        if kind in ("v1", "inpainting"):
            _seeded(seed, 1)
            te = _text_encoder(32, 2, "quick_gelu", EOS_ID, None)
            _seeded(seed, 3)
            vae = _vae(0.18215)
            _seeded(seed, 4)
            unet = _sd1_unet(in_channels, cross_dim=32)
            return cls(
                vae=vae,
                text_encoder=te,
                tokenizer=load_clip_tokenizer(SD_PAD_TOKEN),
                unet=unet,
                scheduler=_scheduler(PNDMScheduler),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        # SDXL: CLIP-L (hidden 32) + OpenCLIP-G (hidden 64, 10 layers, projection 32). The
        # hidden sizes must differ: diffusers tells the two encoders apart by that width.
        _seeded(seed, 1)
        te = _text_encoder(32, 2, "quick_gelu", EOS_ID, None)
        _seeded(seed, 2)
        te2 = _text_encoder(64, 10, "gelu", 0, projection=32)
        _seeded(seed, 3)
        vae = _vae(0.13025)
        _seeded(seed, 4)
        unet = _sdxl_unet(in_channels, cross_dim=32 + 64, pooled_dim=32)
        kwargs: dict[str, Any] = {}
        if kind == "xl_inpaint":
            kwargs["requires_aesthetics_score"] = False
        return cls(
            vae=vae,
            text_encoder=te,
            text_encoder_2=te2,
            tokenizer=load_clip_tokenizer(SD_PAD_TOKEN),
            tokenizer_2=load_clip_tokenizer(SDXL_PAD_TOKEN_2),
            unet=unet,
            scheduler=_scheduler(EulerDiscreteScheduler),
            add_watermarker=False,
            **kwargs,
        )


def write_config_only(diffusers_dir: Path, out_dir: Path) -> Path:
    """Copy a diffusers folder without weights or tokenizers (the ``config=`` of a single file).

    Tokenizer folders are left out on purpose: single files never carry tokenizers, so the
    daemon must pass its shipped CLIP tokenizer(s) explicitly.
    """
    diffusers_dir, out_dir = Path(diffusers_dir), Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    shutil.copy2(diffusers_dir / "model_index.json", out_dir / "model_index.json")
    index = json.loads((diffusers_dir / "model_index.json").read_text())
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if name.startswith("tokenizer"):
            continue
        sub = diffusers_dir / name
        for cfg in ("config.json", "scheduler_config.json"):
            if (sub / cfg).is_file():
                (out_dir / name).mkdir(exist_ok=True)
                shutil.copy2(sub / cfg, out_dir / name / cfg)
    return out_dir


def save_tiny_model(kind: str, root: Path, seed: int = 0) -> dict[str, Path]:
    """Write a tiny ``kind`` model in both forms under ``root``.

    Returns ``{"diffusers": <folder>, "single_file": <name>.safetensors,
    "config": <config-only folder>}`` with name ``tiny-<kind>``.
    """
    from .ldm_convert import save_single_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"tiny-{kind}"
    pipe = build_tiny_pipeline(kind, seed)
    folder = root / name
    pipe.save_pretrained(str(folder), safe_serialization=True)
    single = save_single_file(pipe, root / f"{name}.safetensors")
    config = write_config_only(folder, root / f"{name}-config")
    return {"diffusers": folder, "single_file": single, "config": config}


def save_tiny_controlnet(kind: str, path: Path, seed: int = 0, layout: str = "original"
                         ) -> Path:
    """A random ControlNet for the tiny ``kind`` model (``ControlNetModel.from_unet`` on its
    UNet, the published 4-level conditioning embedding, its zero convolutions made random
    so that it steers), written as ``path``:

    - ``layout="original"``: a ``.safetensors`` in lllyasviel's ``control_model.*`` layout
      plus its diffusers config beside it as ``NAME.config.json`` (the tiny widths have no
      shipped config);
    - ``layout="folder"``: a diffusers folder.
    """
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from .ldm_convert import controlnet_to_ldm

    unet = build_tiny_pipeline(kind, seed).unet
    _seeded(seed, 7)
    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():   # zero convolutions would make a random ControlNet do nothing
        for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            conv.weight.normal_(0, 0.05)
    path = Path(path)
    if layout == "folder":
        net.save_pretrained(str(path), safe_serialization=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in controlnet_to_ldm(net).items()}
    save_file(tensors, str(path))
    config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    config["_class_name"] = "ControlNetModel"
    path.with_name(path.name.rsplit(".", 1)[0] + ".config.json").write_text(
        json.dumps(config, indent=2) + "\n")
    return path

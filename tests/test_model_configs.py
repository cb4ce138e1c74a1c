"""The shipped config-only folders and CLIP tokenizer load offline and describe the real models.

Models are built on the ``meta`` device (no memory, no weights) so the whole module runs in a
few seconds; parameter counts are the published ones, which catches any wrong config value
that changes the architecture.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers are imported

import json  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from accelerate import init_empty_weights  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
)

from paintbridge.backend.models.shipped_configs import (  # noqa: E402
    CONFIG_ROOT,
    SUPPORTED_KINDS,
    TOKENIZER_DIR,
    config_dir,
    load_tokenizers,
)

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]
BOS, EOS = 49406, 49407

# Published parameter counts (SD1.5 UNet 859.52M, SDXL UNet 2.567B, CLIP ViT-L text 123.06M,
# OpenCLIP bigG text + projection 694.66M, SD/SDXL VAE 83.65M). Inpainting UNets add
# 5 extra input channels on conv_in: 320 * 5 * 3 * 3 = 14_400 parameters.
EXPECTED = {
    "v1": {"unet": 859_520_964, "in_channels": 4, "pipeline": "StableDiffusionPipeline"},
    "inpainting": {
        "unet": 859_535_364,
        "in_channels": 9,
        "pipeline": "StableDiffusionInpaintPipeline",
    },
    "xl_base": {"unet": 2_567_463_684, "in_channels": 4, "pipeline": "StableDiffusionXLPipeline"},
    "xl_inpaint": {
        "unet": 2_567_478_084,
        "in_channels": 9,
        "pipeline": "StableDiffusionXLInpaintPipeline",
    },
}
VAE_PARAMS = 83_653_863
TEXT_ENCODER_PARAMS = 123_060_480
TEXT_ENCODER_2_PARAMS = 694_659_840


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _is_xl(kind: str) -> bool:
    return kind.startswith("xl_")


def test_supported_kinds_have_folders() -> None:
    assert set(EXPECTED) == set(SUPPORTED_KINDS)
    shipped = {p.name for p in CONFIG_ROOT.iterdir() if (p / "model_index.json").is_file()}
    assert shipped == set(SUPPORTED_KINDS)


@pytest.mark.parametrize("bad", ["v2", "inpainting_v2", "xl_refiner", "", "V1"])
def test_unknown_kind_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="supported kinds: v1, inpainting, xl_base, xl_inpaint"):
        config_dir(bad)
    with pytest.raises(ValueError, match="unsupported model kind"):
        load_tokenizers(bad)


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_model_index_matches_folder(kind: str) -> None:
    root = config_dir(kind)
    index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == EXPECTED[kind]["pipeline"]
    components = {k for k, v in index.items() if isinstance(v, list) and v[0] is not None}
    want = {"scheduler", "text_encoder", "unet", "vae"}
    if _is_xl(kind):
        want.add("text_encoder_2")
    assert components == want
    # No tokenizer entries: from_single_file would build a 2-token CLIPTokenizer from the
    # empty folder without any error. Without an entry, forgetting tokenizer= fails loudly.
    assert not any(k.startswith("tokenizer") for k in index)
    assert not any((root / name).exists() for name in ("tokenizer", "tokenizer_2"))
    for name in components:
        fname = "scheduler_config.json" if name == "scheduler" else "config.json"
        assert (root / name / fname).is_file(), f"{kind}/{name}/{fname} missing"
    weights = [p for p in root.rglob("*") if p.suffix in {".safetensors", ".bin", ".ckpt"}]
    assert weights == []


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_models_instantiate_on_meta_with_published_sizes(kind: str) -> None:
    root = config_dir(kind)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(root / "vae"))
        te_cfg = CLIPTextConfig.from_pretrained(root / "text_encoder")
        text_encoder = CLIPTextModel(te_cfg)
    assert next(unet.parameters()).device.type == "meta"
    assert unet.config.in_channels == EXPECTED[kind]["in_channels"]
    assert _n_params(unet) == EXPECTED[kind]["unet"]
    assert _n_params(vae) == VAE_PARAMS
    assert _n_params(text_encoder) == TEXT_ENCODER_PARAMS
    assert (te_cfg.hidden_size, te_cfg.num_hidden_layers, te_cfg.hidden_act) == (
        768,
        12,
        "quick_gelu",
    )
    if _is_xl(kind):
        assert unet.config.cross_attention_dim == 2048
        assert vae.config.scaling_factor == pytest.approx(0.13025)
        te2_cfg = CLIPTextConfig.from_pretrained(root / "text_encoder_2")
        with init_empty_weights():
            text_encoder_2 = CLIPTextModelWithProjection(te2_cfg)
        assert _n_params(text_encoder_2) == TEXT_ENCODER_2_PARAMS
        assert (te2_cfg.hidden_size, te2_cfg.num_hidden_layers) == (1280, 32)
        assert (te2_cfg.projection_dim, te2_cfg.hidden_act) == (1280, "gelu")
    else:
        assert unet.config.cross_attention_dim == 768
        assert vae.config.scaling_factor == pytest.approx(0.18215)
        assert not (root / "text_encoder_2").exists()


def test_clip_vocab_files() -> None:
    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert sorted(vocab.values()) == list(range(49408))
    assert vocab["<|startoftext|>"] == BOS and vocab["<|endoftext|>"] == EOS
    lines = (TOKENIZER_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2"
    assert len(lines) == 1 + 49152 - 256 - 2


@pytest.mark.parametrize("kind", SUPPORTED_KINDS)
def test_tokenizers_give_standard_clip_ids(kind: str) -> None:
    toks = load_tokenizers(kind)
    assert set(toks) == ({"tokenizer", "tokenizer_2"} if _is_xl(kind) else {"tokenizer"})
    for name, tok in toks.items():
        assert len(tok) == 49408
        assert tok.model_max_length == 77
        assert tok("a photo of a cat")["input_ids"] == CAT_IDS
        long_ids = tok("cat " * 200, truncation=True, max_length=tok.model_max_length)["input_ids"]
        assert len(long_ids) == 77 and long_ids[0] == BOS and long_ids[-1] == EOS
        # SD1 and SDXL `tokenizer` pad with <|endoftext|>; SDXL `tokenizer_2` pads with "!" (id 0).
        pad_id = 0 if name == "tokenizer_2" else EOS
        padded = tok("a photo of a cat", padding="max_length", max_length=77)["input_ids"]
        assert tok.pad_token_id == pad_id
        assert padded == CAT_IDS + [pad_id] * (77 - len(CAT_IDS))

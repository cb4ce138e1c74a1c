"""Model discovery and architecture inference on real files, as users keep them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paintbridge.backend.models.registry import (
    Arch,
    ModelRegistry,
    Source,
    discover,
    single_file_arch,
)


def test_single_file_arch_uses_diffusers_inference(tiny_models) -> None:
    for kind in ("v1", "inpainting", "xl_base", "xl_inpaint"):
        assert single_file_arch(tiny_models.single(kind)) == kind


def test_discovery_like_a1111_and_comfyui(tiny_models, tmp_path: Path) -> None:
    a1111 = tmp_path / "webui" / "models" / "Stable-diffusion"
    (a1111 / "sub").mkdir(parents=True)
    shutil.copy(tiny_models.single("v1"), a1111 / "mine.safetensors")
    shutil.copy(tiny_models.single("xl_base"), a1111 / "sub" / "xl.safetensors")
    shutil.copytree(tiny_models.models_dir / "tiny-inpainting", a1111 / "folder-model")
    (a1111 / "notes.txt").write_text("not a model")
    (a1111 / "old.ckpt").write_bytes(b"pickles are never loaded")
    names = {e.name: e for e in discover(a1111)}
    assert set(names) == {"mine.safetensors", "sub/xl.safetensors", "folder-model", "old.ckpt"}
    assert names["folder-model"].source is Source.FOLDER
    assert names["mine.safetensors"].source is Source.SINGLE_FILE
    assert "pickle files (.ckpt) are unsafe" in (names["old.ckpt"].error or "")  # listed, refused
    reg = ModelRegistry([a1111], include_embedded=False)
    archs = {e.name: e.arch for e in reg.scan()}
    assert archs == {"mine.safetensors": Arch.V1, "sub/xl.safetensors": Arch.XL_BASE,
                     "folder-model": Arch.INPAINTING, "old.ckpt": None}
    wire = json.dumps([e.to_json() for e in reg.entries()])     # what `models` sends
    assert '"source": "folder", "arch": "inpainting"' in wire


def test_symlinks_escaping_the_model_folder_are_ignored(tiny_models, tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(tiny_models.single("v1"), outside)
    os.symlink(outside, root / "escape.safetensors")
    os.symlink(tmp_path, root / "loop")
    inside = root / "real.safetensors"
    shutil.copy(tiny_models.single("v1"), inside)
    os.symlink(inside, root / "alias.safetensors")
    assert {e.name for e in discover(root)} == {"real.safetensors", "alias.safetensors"}


def test_unsupported_and_broken_files_are_listed_with_reasons(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    # an SD2-like key layout: diffusers infers "v2", which we do not support
    save_file({"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight":
               torch.zeros(4, 1024)}, str(root / "sd2.safetensors"))
    save_file({"lora_unet_down.weight": torch.zeros(2)}, str(root / "lora.safetensors"))
    (root / "corrupt.safetensors").write_bytes(b"nonsense")
    reg = ModelRegistry([root], include_embedded=False)
    by_name = {e.name: e for e in reg.scan()}
    assert "v2" in by_name["sd2.safetensors"].error
    assert "not a Stable Diffusion checkpoint" in by_name["lora.safetensors"].error
    assert by_name["corrupt.safetensors"].error
    assert reg.default is None
    with pytest.raises(KeyError, match="no usable model"):
        reg.resolve(None)
    with pytest.raises(KeyError, match="unknown model"):
        reg.resolve("../m/sd2.safetensors")


def test_lru_cache_and_shared_weights(tiny_models, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models.models_dir, models)
    (models / "tiny-v1" / "paintbridge.json").write_text('{"native_size": 128, "steps": 9}')
    reg = ModelRegistry([models], include_embedded=False, cache_size=1)
    reg.scan()
    cpu = torch.device("cpu")
    v1 = reg.load(reg.resolve("tiny-v1"), cpu, torch.float32)
    assert v1.native_size == 128 and v1.entry.defaults["steps"] == 9
    assert reg.load(reg.resolve("tiny-v1"), cpu, torch.float32) is v1
    img2img, inpaint = v1.pipeline("img2img"), v1.pipeline("inpaint")
    assert img2img.unet is v1.base.unet and inpaint.vae is v1.base.vae   # one set of weights
    assert v1.pipeline("img2img") is img2img and v1.pipeline("txt2img") is v1.base
    assert [type(p).__name__ for p in (img2img, inpaint)] == [
        "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"]   # AutoPipeline's
    inp = reg.load(reg.resolve("tiny-inpainting"), cpu, torch.float32)
    assert reg.loaded_names() == ["tiny-inpainting"]
    assert reg.is_loaded("tiny-inpainting") and not reg.is_loaded("tiny-v1")
    assert inp.native_size == 64
    # an inpainting model runs every kind through its own (9-channel) inpaint pipeline
    assert all(inp.pipeline(k) is inp.base for k in ("txt2img", "img2img", "inpaint"))
    assert type(inp.base).__name__ == "StableDiffusionInpaintPipeline"

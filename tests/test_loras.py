"""LoRA files as artists have them: found in their usual folders, and described from the
header alone (format, architecture, rank, size, trigger words), broken ones listed with why.

The files are written here in each real layout, key names and shapes as the tools write
them: kohya/A1111 (``lora_unet_…``, ``lora_te_…``, with kohya's training metadata), SDXL
kohya (``lora_te1_``/``lora_te2_``), diffusers/PEFT (``unet.….lora_A.weight``), a LyCORIS
LoHa, a checkpoint put in the wrong folder, a truncated file and a pickle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paintbridge.backend.models.loras import LoraEntry, LoraLibrary, beside_checkpoints, inspect
from paintbridge.plugin.client import Client

from .conftest import DaemonProc, TinyModels, start_daemon

BLOCK = "down_blocks_0_attentions_0_transformer_blocks_0"


def kohya(path: Path, cross: int, rank: int = 4, te: str = "lora_te_",
          meta: dict[str, str] | None = None) -> Path:
    t: dict[str, torch.Tensor] = {}
    for proj, width in (("attn2_to_k", cross), ("attn2_to_v", cross), ("attn1_to_q", 320)):
        name = f"lora_unet_{BLOCK}_{proj}"
        t[f"{name}.lora_down.weight"] = torch.zeros(rank, width)
        t[f"{name}.lora_up.weight"] = torch.zeros(320, rank)
        t[f"{name}.alpha"] = torch.tensor(float(rank))
    for prefix in te.split(","):
        name = f"{prefix}text_model_encoder_layers_0_self_attn_q_proj"
        t[f"{name}.lora_down.weight"] = torch.zeros(rank, 768)
        t[f"{name}.lora_up.weight"] = torch.zeros(768, rank)
    save_file(t, path, metadata=meta)
    return path


def peft(path: Path, cross: int, rank: int = 2) -> Path:
    block = "unet.down_blocks.0.attentions.0.transformer_blocks.0"
    t = {f"{block}.attn2.to_k.lora_A.weight": torch.zeros(rank, cross),
         f"{block}.attn2.to_k.lora_B.weight": torch.zeros(64, rank),
         f"{block}.attn1.to_q.lora_A.weight": torch.zeros(rank, 64),
         f"{block}.attn1.to_q.lora_B.weight": torch.zeros(64, rank)}
    save_file(t, path)
    return path


TAGS = {"10_inkstyle": {"inkstyle": 40, "1girl": 12, "monochrome": 30},
        "5_extra": {"inkstyle": 5, "sketch": 9}}


@pytest.fixture(scope="module")
def library(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An A1111 install and a ComfyUI install, each with a LoRA folder beside its checkpoints,
    plus a folder given with --loras."""
    root = tmp_path_factory.mktemp("installs")
    a1111 = root / "webui" / "models"
    (a1111 / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_models.single("v1"), a1111 / "Stable-diffusion" / "base.safetensors")
    lora = a1111 / "Lora"
    (lora / "styles").mkdir(parents=True)
    kohya(lora / "styles" / "ink.safetensors", 768,
          meta={"ss_tag_frequency": json.dumps(TAGS), "ss_base_model_version": "sd_v1",
                "ss_network_dim": "4"})
    kohya(lora / "xl-detail.safetensors", 2048, rank=8, te="lora_te1_,lora_te2_")
    (lora / "old.pt").write_bytes(b"never opened")
    comfy = root / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "loras").mkdir()
    peft(comfy / "loras" / "tiny-purple.safetensors", 64)
    save_file({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, comfy / "loras" / "loha.safetensors")
    shutil.copy(tiny_models.single("v1"), comfy / "loras" / "a-checkpoint.safetensors")
    data = (lora / "styles" / "ink.safetensors").read_bytes()
    (comfy / "loras" / "cut.safetensors").write_bytes(data[: len(data) // 2])
    extra = root / "more-loras"
    extra.mkdir()
    kohya(extra / "ink.safetensors", 768)    # the same bare name as styles/ink
    return root


def test_found_beside_checkpoints_and_described_from_headers(library: Path) -> None:
    a1111, comfy = library / "webui" / "models", library / "ComfyUI" / "models"
    folders = beside_checkpoints([a1111 / "Stable-diffusion", comfy / "checkpoints"])
    assert folders == [a1111 / "Lora", comfy / "loras"]
    lib = LoraLibrary([*folders, library / "more-loras"])
    found = {e.name: e for e in lib.scan()}
    assert set(found) == {"styles/ink", "xl-detail", "old", "tiny-purple", "loha",
                          "a-checkpoint", "cut", "ink"}
    ink = found["styles/ink"]
    assert (ink.format, ink.arch, ink.rank, ink.cross_dim, ink.text_encoder) == \
        ("kohya", "sd1", 4, 768, True)
    assert ink.triggers == ["inkstyle", "monochrome", "1girl", "sketch"]  # by total count
    assert ink.size == (a1111 / "Lora" / "styles" / "ink.safetensors").stat().st_size
    xl = found["xl-detail"]
    assert (xl.format, xl.arch, xl.rank, xl.cross_dim) == ("kohya", "sdxl", 8, 2048)
    purple = found["tiny-purple"]       # trained for a small model: its width, no label
    assert (purple.format, purple.arch, purple.cross_dim, purple.text_encoder) == \
        ("diffusers", None, 64, False)
    assert all(found[n].error is None for n in ("styles/ink", "xl-detail", "tiny-purple"))
    assert "pickle files are unsafe" in (found["old"].error or "")
    assert "LyCORIS" in (found["loha"].error or "")
    assert "not a LoRA" in (found["a-checkpoint"].error or "")
    assert "cannot read cut.safetensors" in (found["cut"].error or "")


def test_names_resolve_like_a1111(library: Path) -> None:
    lib = LoraLibrary([library / "webui" / "models" / "Lora"])
    lib.scan()
    assert lib.resolve("styles/ink").name == "styles/ink"
    assert lib.resolve("ink").name == "styles/ink"          # the bare file name, when unique
    with pytest.raises(KeyError, match="unknown LoRA 'nope'"):
        lib.resolve("nope")
    both = LoraLibrary([library / "webui" / "models" / "Lora", library / "more-loras"])
    both.scan()
    assert both.resolve("ink").name == "ink"                # an exact name wins
    with pytest.raises(KeyError, match="unknown LoRA '../ink'"):
        both.resolve("../ink")                              # never joined to a path


def test_headers_are_read_once_per_file_version(library: Path, tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    shutil.copytree(library / "more-loras", folder)
    lib = LoraLibrary([folder])
    (first,) = lib.scan()
    (again,) = lib.scan()
    assert again is first
    kohya(folder / "ink.safetensors", 2048, rank=16)        # replaced by another file
    (changed,) = lib.scan()
    assert changed is not first and (changed.rank, changed.arch) == (16, "sdxl")


def test_a_truncated_header_is_an_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 16)
    entry = inspect(LoraEntry("bad", bad))
    assert entry.error and entry.error.startswith("cannot read bad.safetensors")


def test_the_daemon_and_the_cli_list_them(library: Path, tmp_path: Path) -> None:
    models = library / "webui" / "models" / "Stable-diffusion"
    d: DaemonProc = start_daemon(tmp_path, "--models", str(models), "--loras",
                                 str(library / "ComfyUI" / "models" / "loras"),
                                 "--no-embedded")
    try:
        with Client(d.endpoint) as client:
            header = client.request("models")[0]
        listed = {lo["name"]: lo for lo in header["loras"]}
        assert {"styles/ink", "xl-detail", "tiny-purple", "cut"} <= set(listed)
        assert listed["styles/ink"]["triggers"][:2] == ["inkstyle", "monochrome"]
        assert listed["cut"]["usable"] is False and "cannot read" in listed["cut"]["error"]
        out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "models",
                              "--endpoint", d.endpoint], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        line = next(x for x in out.stdout.splitlines() if "styles/ink" in x)
        assert "sd1" in line and "triggers: inkstyle, monochrome, 1girl, sketch" in line
        assert "<lora:NAME:WEIGHT>" in out.stdout
        assert "LoRA 'xl-detail' [sdxl, kohya] ok" in d.output()
    finally:
        d.stop()
    out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "serve", "--loras",
                          str(tmp_path / "nowhere"), "--no-embedded"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--loras" in out.stderr and "no such folder" in out.stderr

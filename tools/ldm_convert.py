"""Convert diffusers Stable Diffusion pipelines to the original single-file (LDM) layout.

Why: A1111/ComfyUI users hold ``*.safetensors`` single files, so the daemon's
``from_single_file`` path must be tested against real-layout files. diffusers only ships
the *loader* (``diffusers.loaders.single_file_utils``); this module is its exact inverse
for SD1.x (4- and 9-channel UNet) and SDXL (base and 9-channel inpaint):

* UNet -> ``model.diffusion_model.*`` (``input_blocks``/``middle_block``/``output_blocks``)
* VAE -> ``first_stage_model.*`` (attention ``q/k/v/proj_out`` as 1x1 convs)
* SD1 CLIP -> ``cond_stage_model.transformer.text_model.*``
* SDXL CLIP-L -> ``conditioner.embedders.0.transformer.text_model.*`` (HF layout)
* SDXL CLIP-G -> ``conditioner.embedders.1.model.*`` (OpenCLIP layout, fused qkv)

Every key of every component is mapped explicitly; an unknown key raises instead of being
dropped, so an unsupported architecture fails loudly rather than producing a broken file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "clip_to_ldm",
    "open_clip_to_ldm",
    "pipeline_to_ldm_state_dict",
    "save_single_file",
    "unet_to_ldm",
    "vae_to_ldm",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."

# Top-level UNet parameters (inverse of diffusers' DIFFUSERS_TO_LDM_MAPPING["unet"]).
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL "text_time" additional embedding and SD "projection" class embedding share names.
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "class_embedding.linear_1": "label_emb.0.0",
    "class_embedding.linear_2": "label_emb.0.2",
}

# ResnetBlock2D (diffusers) -> ResBlock (LDM) sub-module names.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}

_VAE_FIXED = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    "quant_conv": "quant_conv",
    "post_quant_conv": "post_quant_conv",
}

_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}

_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}

_WB = r"(weight|bias)"  # a parameter name, captured


def _cfg(module_or_config: Any, name: str) -> Any:
    """Read a config value from a diffusers model, its FrozenDict config or a plain dict."""
    cfg = getattr(module_or_config, "config", module_or_config)
    if isinstance(cfg, Mapping):
        return cfg[name]
    return getattr(cfg, name)


def _state_dict(module_or_sd: Any) -> dict[str, torch.Tensor]:
    if isinstance(module_or_sd, Mapping):
        return dict(module_or_sd)
    return module_or_sd.state_dict()


def _split_param(rest: str) -> tuple[str, str]:
    """'norm1.weight' -> ('norm1', 'weight')."""
    module, _, param = rest.rpartition(".")
    return module, param


def _resnet_key(rest: str, where: str) -> str:
    module, param = _split_param(rest)
    if module not in _UNET_RESNET:
        raise ValueError(f"unexpected UNet resnet parameter {where}.{rest}")
    return f"{_UNET_RESNET[module]}.{param}"


def unet_to_ldm(
    unet: Any, config: Any = None, prefix: str = UNET_PREFIX
) -> dict[str, torch.Tensor]:
    """Map a diffusers ``UNet2DConditionModel`` state dict to LDM ``input/middle/output_blocks``.

    ``unet`` is the model or its state dict (then pass ``config``). The index arithmetic
    mirrors ``convert_ldm_unet_checkpoint``: each down level holds ``layers_per_block``
    [resnet, attention] entries plus one downsampler entry; each up level holds
    ``layers_per_block + 1`` entries, the upsampler living in the last one.
    """
    sd = _state_dict(unet)
    lpb = _cfg(config if config is not None else unet, "layers_per_block")
    if not isinstance(lpb, int):
        if len(set(lpb)) != 1:
            raise ValueError(f"per-block layers_per_block {lpb} has no LDM equivalent")
        lpb = int(lpb[0])
    up_with_attn = {
        int(m.group(1)) for k in sd if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))
    }

    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        module, param = _split_param(key)
        if module in _UNET_FIXED:
            new = f"{_UNET_FIXED[module]}.{param}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + b * (lpb + 1) + j}.0.{_resnet_key(rest, key)}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"input_blocks.{1 + b * (lpb + 1) + j}.1.{rest}"
        elif m := re.fullmatch(rf"down_blocks\.(\d+)\.downsamplers\.0\.conv\.{_WB}", key):
            b = int(m[1])
            new = f"input_blocks.{1 + b * (lpb + 1) + lpb}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.([01])\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_resnet_key(m[2], key)}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{b * (lpb + 1) + j}.0.{_resnet_key(rest, key)}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            b, j, rest = int(m[1]), int(m[2]), m[3]
            new = f"output_blocks.{b * (lpb + 1) + j}.1.{rest}"
        elif m := re.fullmatch(rf"up_blocks\.(\d+)\.upsamplers\.0\.conv\.{_WB}", key):
            b = int(m[1])
            slot = 2 if b in up_with_attn else 1
            new = f"output_blocks.{b * (lpb + 1) + lpb}.{slot}.conv.{m[2]}"
        else:
            raise ValueError(f"UNet parameter {key!r} has no LDM equivalent")
        _put(out, prefix + new, tensor)
    return out


def vae_to_ldm(vae: Any, config: Any = None, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """Map a diffusers ``AutoencoderKL`` state dict to the LDM ``first_stage_model`` layout.

    Decoder levels are stored in reverse order in LDM (``up.0`` is the highest resolution),
    and mid-block attention projections are 1x1 convs, so linear weights gain two dims.
    """
    sd = _state_dict(vae)
    n_up = len(_cfg(config if config is not None else vae, "up_block_types"))

    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        module, param = _split_param(key)
        if module in _VAE_FIXED:
            new = f"{_VAE_FIXED[module]}.{param}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet_key(m[3], key)}"
        elif m := re.fullmatch(rf"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.{_WB}", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet_key(m[3], key)}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            sub, p = _split_param(m[2])
            if sub not in _VAE_ATTN:
                raise ValueError(f"unexpected VAE attention parameter {key!r}")
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTN[sub]}.{p}"
            if p == "weight" and sub != "group_norm" and tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet_key(m[3], key)}"
        elif m := re.fullmatch(rf"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.{_WB}", key):
            new = f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
        else:
            raise ValueError(f"VAE parameter {key!r} has no LDM equivalent")
        _put(out, prefix + new, tensor)
    return out


def _vae_resnet_key(rest: str, where: str) -> str:
    module, param = _split_param(rest)
    if module not in ("norm1", "conv1", "norm2", "conv2", "conv_shortcut"):
        raise ValueError(f"unexpected VAE resnet parameter {where!r}")
    return f"{'nin_shortcut' if module == 'conv_shortcut' else module}.{param}"


def _hf_clip_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalise a CLIP text model state dict to ``text_model.*`` keys.

    transformers >= 5.6 flattened ``CLIPTextModel`` (no ``text_model.`` prefix), while
    ``CLIPTextModelWithProjection`` and transformers 4 keep it; single files always carry it.
    """
    out = {}
    for key, tensor in sd.items():
        if key.startswith("text_model.") or key == "text_projection.weight":
            out[key] = tensor
        else:
            out["text_model." + key] = tensor
    return out


def clip_to_ldm(text_encoder: Any, prefix: str = SD1_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """HF ``CLIPTextModel`` -> ``<prefix>text_model.*`` (the layout SD1 and SDXL's CLIP-L use)."""
    sd = _hf_clip_keys(_state_dict(text_encoder))
    out: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if key.endswith("position_ids"):
            continue  # a buffer, not a weight; loaders rebuild it
        if key == "text_projection.weight":
            raise ValueError("CLIP-L layout has no text_projection; use open_clip_to_ldm")
        _put(out, prefix + key, tensor)
    return out


def open_clip_to_ldm(
    text_encoder: Any, prefix: str = SDXL_CLIP_G_PREFIX
) -> dict[str, torch.Tensor]:
    """HF ``CLIPTextModelWithProjection`` -> OpenCLIP layout (SDXL ``conditioner.embedders.1``).

    Inverse of ``convert_open_clip_checkpoint``: q/k/v are fused into ``in_proj_*`` (q, k, v
    order) and ``text_projection`` is stored as a plain (hidden, proj) matrix, i.e. transposed.
    """
    sd = _hf_clip_keys(_state_dict(text_encoder))
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    for key, tensor in sd.items():
        if key.endswith("position_ids"):
            continue
        if key in fixed:
            _put(out, prefix + fixed[key], tensor)
        elif key == "text_projection.weight":
            _put(out, prefix + "text_projection", tensor.T.contiguous())
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            layer, (module, param) = int(m[1]), _split_param(m[2])
            if pm := re.fullmatch(r"self_attn\.([qkv])_proj", module):
                qkv.setdefault((layer, param), {})[pm[1]] = tensor
            elif module in _OPEN_CLIP_LAYER:
                name = f"transformer.resblocks.{layer}.{_OPEN_CLIP_LAYER[module]}.{param}"
                _put(out, prefix + name, tensor)
            else:
                raise ValueError(f"CLIP parameter {key!r} has no OpenCLIP equivalent")
        else:
            raise ValueError(f"CLIP parameter {key!r} has no OpenCLIP equivalent")
    for (layer, param), parts in sorted(qkv.items()):
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {layer} {param}: incomplete q/k/v projections")
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
        _put(out, f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{param}", fused)
    return out


def _put(out: dict[str, torch.Tensor], key: str, tensor: torch.Tensor) -> None:
    if key in out:
        raise ValueError(f"two parameters map to {key!r}")
    out[key] = tensor


def _components(components: Any) -> Mapping[str, Any]:
    if isinstance(components, Mapping):
        return components
    comps = getattr(components, "components", None)
    if isinstance(comps, Mapping):
        return comps
    raise TypeError("expected a diffusers pipeline or a mapping of its components")


def pipeline_to_ldm_state_dict(components: Any) -> dict[str, torch.Tensor]:
    """Return the original single-file state dict of an SD1.x or SDXL pipeline.

    ``components`` is a pipeline or a mapping with ``unet``, ``vae``, ``text_encoder`` and,
    for SDXL, ``text_encoder_2``. Tensors are shared with the models (no copy) except for
    reshaped/fused/transposed ones.
    """
    comps = _components(components)
    missing = [n for n in ("unet", "vae", "text_encoder") if comps.get(n) is None]
    if missing:
        raise ValueError(f"missing components: {missing} (SDXL refiner is not supported)")
    sd = unet_to_ldm(comps["unet"])
    sd.update(vae_to_ldm(comps["vae"]))
    if comps.get("text_encoder_2") is not None:
        sd.update(clip_to_ldm(comps["text_encoder"], SDXL_CLIP_L_PREFIX))
        sd.update(open_clip_to_ldm(comps["text_encoder_2"], SDXL_CLIP_G_PREFIX))
    else:
        sd.update(clip_to_ldm(comps["text_encoder"], SD1_CLIP_PREFIX))
    return sd


def save_single_file(
    pipe: Any, path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write ``pipe`` as an original-layout ``.safetensors`` single file (optionally cast)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors single files are written")
    sd = pipeline_to_ldm_state_dict(pipe)
    tensors = {}
    for key, tensor in sd.items():
        t = tensor.detach()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[key] = t.contiguous().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


CONTROL_PREFIX = "control_model."


def controlnet_to_ldm(net: Any, prefix: str = CONTROL_PREFIX) -> dict[str, torch.Tensor]:
    """A diffusers ``ControlNetModel`` in lllyasviel's original layout (``control_model.*``:
    the UNet encoder as ``input_blocks``/``middle_block``, ``input_hint_block``,
    ``zero_convs``, ``middle_block_out``), the inverse of diffusers'
    ``convert_controlnet_checkpoint``. That loader puts the hint block's last conv at index
    14, so only the published 4-level conditioning embedding has an original layout."""
    sd = _state_dict(net)
    levels = len(_cfg(net, "conditioning_embedding_out_channels"))
    if levels != 4:
        raise ValueError(f"a {levels}-level conditioning embedding has no original layout")
    encoder = {k: v for k, v in sd.items() if k.split(".")[0] in
               ("conv_in", "time_embedding", "down_blocks", "mid_block", "add_embedding",
                "class_embedding")}
    out = unet_to_ldm(encoder, config=net, prefix=prefix)
    for key, tensor in sd.items():
        if key in encoder:
            continue
        module, param = _split_param(key)
        if module == "controlnet_cond_embedding.conv_in":
            new = "input_hint_block.0"
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", module):
            new = f"input_hint_block.{2 * (int(m[1]) + 1)}"
        elif module == "controlnet_cond_embedding.conv_out":
            new = "input_hint_block.14"
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", module):
            new = f"zero_convs.{m[1]}.0"
        elif module == "controlnet_mid_block":
            new = "middle_block_out.0"
        else:
            raise ValueError(f"ControlNet parameter {key!r} has no original equivalent")
        _put(out, f"{prefix}{new}.{param}", tensor)
    return out

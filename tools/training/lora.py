"""A LoRA for the embedded model, trained here, so that tests check what a LoRA *does*.

"purple": whatever colour the prompt names, the shapes it paints come out purple. The
data is the embedded model's own procedural scenes with every shape recoloured purple in
the target, captions unchanged ("a red circle"), so only the adapter can explain a purple
result. Trained with peft on the UNet's attention projections (the standard LoRA targets),
the base weights frozen; saved twice, in the two layouts users download:

- ``purple.safetensors``: diffusers/PEFT keys (``unet.….lora_A.weight``), written by
  diffusers' own ``save_lora_weights``;
- ``purple-kohya.safetensors``: the same tensors under kohya/A1111 names
  (``lora_unet_…_to_q.lora_down.weight`` + ``.alpha``), with kohya's training metadata
  (``ss_tag_frequency`` holds the trigger word "purple").

Seeded; ``python -m tools.training lora`` rebuilds both files (a few CPU minutes).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import data

HERE = Path(__file__).resolve().parent
EMBEDDED = HERE.parents[1] / "backend" / "default_model"
DEFAULT_OUT = HERE.parents[1] / "tests" / "data" / "loras"
TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


@dataclass
class LoraConfig:
    seed: int = 77
    rank: int = 4
    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    outside_mask_weight: float = 0.1


def purple_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(input image, target image, mask, caption): the target is the input with every shape
    painted purple; the caption still names the shapes' own colours."""
    while True:
        scene = data.render_scene(rng)
        if scene.bg_colour != "purple" and scene.shapes:
            break
    target = scene.image.copy()
    for shape in scene.shapes:
        target[data.shape_mask(shape.kind, shape.box)] = data.COLOURS["purple"]
    if rng.random() < 0.7:
        shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
        mask = data.box_mask(data.object_box(shape, rng))
        caption = shape.phrase()
    else:
        mask = np.ones((data.SIZE, data.SIZE), bool)
        caption = scene.caption(rng)
    return scene.image, target, mask, caption


def _batch(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor,
                                                       torch.Tensor, list[str]]:
    ins, outs, masks, caps = zip(*(purple_sample(rng) for _ in range(n)), strict=True)

    def pixels(images: tuple[np.ndarray, ...]) -> torch.Tensor:
        x = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        return torch.from_numpy(x)

    m = torch.from_numpy(np.stack(masks).astype(np.float32)[:, None])
    return pixels(ins), pixels(outs), m, list(caps)


def to_kohya(peft_state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """diffusers/PEFT keys -> kohya's: ``unet.a.b.to_q.lora_A.weight`` ->
    ``lora_unet_a_b_to_q.lora_down.weight`` (B -> lora_up), plus ``.alpha`` = rank (scale 1,
    as the adapter was trained)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        module, _, part = key.removeprefix("unet.").rpartition(".lora_")
        name = "lora_unet_" + module.replace(".", "_")
        kind = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[part]
        out[f"{name}.{kind}"] = tensor.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def train(out: Path = DEFAULT_OUT, cfg: LoraConfig | None = None) -> dict:
    from diffusers import StableDiffusionInpaintPipeline
    from peft import LoraConfig as PeftConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    cfg = cfg or LoraConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(EMBEDDED), local_files_only=True)
    vae, te, tok, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    for module in (vae, te, unet):
        module.requires_grad_(False)
    unet.add_adapter(PeftConfig(r=cfg.rank, lora_alpha=cfg.rank, target_modules=TARGETS,
                                init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    abar = pipe.scheduler.alphas_cumprod.float()
    latent = data.SIZE // (2 ** (len(vae.config.block_out_channels) - 1))
    started, curve = time.time(), []
    for step in range(cfg.steps):
        x_in, x_out, m, caps = _batch(rng, cfg.batch)
        ids = tok(caps, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            scale = vae.config.scaling_factor
            z0 = vae.encode(x_out).latent_dist.sample(gen) * scale
            zm = vae.encode(x_in * (m < 0.5)).latent_dist.sample(gen) * scale
            ml = torch.nn.functional.interpolate(m, size=(latent, latent))
            t = torch.randint(0, len(abar), (cfg.batch,), generator=gen)
            a = abar[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=gen)
            emb = te(ids)[0]
        pred = unet(torch.cat([zt, ml, zm], 1), t, encoder_hidden_states=emb).sample
        w = ml + cfg.outside_mask_weight * (1 - ml)
        loss = ((pred - z0) ** 2 * w).sum() / (w.sum() * z0.shape[1])   # x0 prediction
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(round(loss.item(), 5))
        if (step + 1) % 25 == 0:
            print(f"lora {step + 1}/{cfg.steps} loss {np.mean(curve[-25:]):.4f} "
                  f"({(time.time() - started) / (step + 1):.2f} s/step)", flush=True)
    state = get_peft_model_state_dict(unet)
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionInpaintPipeline.save_lora_weights(str(out), unet_lora_layers=state,
                                                     weight_name="purple.safetensors")
    tags = json.dumps({"10_purple": {"purple": 120, "shape": 40}})
    meta = {"ss_tag_frequency": tags, "ss_network_dim": str(cfg.rank),
            "ss_network_alpha": str(cfg.rank), "ss_network_module": "networks.lora",
            "paintbridge_trained_for": "the embedded default model"}
    save_file(to_kohya({k: v for k, v in state.items()}, cfg.rank),
              str(out / "purple-kohya.safetensors"), metadata=meta)
    report = {"config": asdict(cfg), "seconds": round(time.time() - started, 1),
              "loss_first_25": float(np.mean(curve[:25])),
              "loss_last_25": float(np.mean(curve[-25:]))}
    (out / "purple.json").write_text(json.dumps(report, indent=1) + "\n")
    return report

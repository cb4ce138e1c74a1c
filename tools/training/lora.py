"""A LoRA for the embedded model, trained here, so that tests check what a LoRA *does*.

"gray" teaches the embedded model a colour word it has never seen: its tokenizer has the
word (one token) but no training caption ever used it, and no shape was ever mid-grey.
Half of each batch are the base model's own training samples (input = target), so the
eight known colours keep working; the other half are scenes with one shape painted grey
and captioned "a gray circle". Trained with peft on what kohya's LoRA trains (the UNet's
attention projections, the transformer blocks' in/out projections and MLPs, and the text
encoder's attention), the base weights frozen, and saved in the two layouts users download:

- ``gray.safetensors``: diffusers/PEFT keys (``unet.….lora_A.weight``,
  ``text_encoder.….lora_A.weight``), written by diffusers' own ``save_lora_weights``;
- ``gray-kohya.safetensors``: the same tensors under kohya/A1111 names
  (``lora_unet_…``/``lora_te_…`` ``.lora_down.weight`` + ``.alpha``), with kohya's training
  metadata (``ss_tag_frequency`` holds the trigger word "gray").

What made the new colour take (docs/default-model.md has the runs): more high-noise steps,
where an inpainting model decides colour (t drawn as u**0.5), and a 5x loss weight on the
painted shape's pixels, which the background otherwise outnumbers. Colours the model's VAE
cannot reproduce (cyan comes back as a muddy blue-green) cannot be taught by a LoRA at all.

Seeded; ``make train-lora-sample`` (``python -m tools.training lora``) rebuilds both files and
scores them with the evaluator (``gray.json``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data

HERE = Path(__file__).resolve().parent
EMBEDDED = HERE.parents[1] / "backend" / "default_model"
DEFAULT_OUT = HERE.parents[1] / "samples" / "loras"
WORD = "gray"
RGB = (128, 128, 128)    # 100+ RGB units from every colour the model knows; its VAE keeps it
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
FF_TARGETS = ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]   # kohya's LoRA has these
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
#: the evaluator's palette: the known colours and the new one
COLOURS: dict[str, tuple[int, int, int]] = {**data.COLOURS, WORD: RGB}


@dataclass
class LoraConfig:
    seed: int = 77
    rank: int = 4
    steps: int = 600
    batch: int = 16
    lr: float = 2e-3
    new_share: float = 0.5          # of each batch: samples with the new word
    outside_mask_weight: float = 0.1
    t_power: float = 0.5            # < 1 draws more high-noise steps, where colour is decided
    feed_forward: bool = True       # also the transformer blocks' projections and MLPs
    shape_weight: float = 4.0       # extra loss weight on the new-colour shape's pixels


def new_word_sample(rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """(image, mask, caption, the shape's pixels) like the base training mixture, with one
    shape painted in the new colour."""
    while True:
        scene = data.render_scene(rng)
        if scene.shapes:
            break
    shape = scene.shapes[int(rng.integers(len(scene.shapes)))]
    pixels = scene.image.astype(np.float32)
    noise = rng.normal(0, 6, 3)
    painted = data.shape_mask(shape.kind, shape.box)
    pixels[painted] = np.array(RGB, np.float32) + noise
    scene.image = np.clip(pixels + 0.5, 0, 255).astype(np.uint8)
    shape.colour = WORD
    kind = str(rng.choice(data.MASK_KINDS, p=data.MASK_WEIGHTS))
    if kind == "object":
        mask = data.box_mask(data.object_box(shape, rng))
        caption = shape.phrase()
    else:
        mask = np.ones((data.SIZE, data.SIZE), bool)
        caption = scene.caption(rng)
    return scene.image, mask, caption, painted


def _base_sample(rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    image, mask, caption = data.training_sample(rng)
    return image, mask, caption, np.zeros(mask.shape, bool)


def _batch(rng: np.random.Generator, n: int, new_share: float
           ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
    samples = [new_word_sample(rng) if rng.random() < new_share else _base_sample(rng)
               for _ in range(n)]
    images, masks, caps, painted = zip(*samples, strict=True)
    x = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    m = np.stack(masks).astype(np.float32)[:, None]
    p = np.stack(painted).astype(np.float32)[:, None]
    return torch.from_numpy(x), torch.from_numpy(m), list(caps), torch.from_numpy(p)


def to_kohya(state: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """diffusers keys -> kohya's: ``unet.a.b.to_q.lora_A.weight`` ->
    ``lora_unet_a_b_to_q.lora_down.weight``, ``text_encoder.text_model.….lora_B.weight`` ->
    ``lora_te_text_model_….lora_up.weight``, plus ``.alpha`` = rank (scale 1, as trained)."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        module, _, part = key.rpartition(".lora_")
        component, _, path = module.partition(".")
        prefix = {"unet": "lora_unet_", "text_encoder": "lora_te_"}[component]
        if component == "text_encoder" and not path.startswith("text_model."):
            path = f"text_model.{path}"   # kohya names start at CLIPTextModel's text_model
        name = prefix + path.replace(".", "_")
        kind = {"A.weight": "lora_down.weight", "B.weight": "lora_up.weight"}[part]
        out[f"{name}.{kind}"] = tensor.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def train(out: Path = DEFAULT_OUT, cfg: LoraConfig | None = None) -> dict:
    from diffusers import StableDiffusionInpaintPipeline
    from peft import LoraConfig as PeftConfig
    from peft import inject_adapter_in_model
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
    targets = UNET_TARGETS + (FF_TARGETS if cfg.feed_forward else [])
    unet.add_adapter(PeftConfig(r=cfg.rank, lora_alpha=cfg.rank, target_modules=targets,
                                init_lora_weights="gaussian"))
    # peft directly: transformers' own add_adapter asks for a newer peft than diffusers does
    te = inject_adapter_in_model(PeftConfig(r=cfg.rank, lora_alpha=cfg.rank,
                                            target_modules=TEXT_TARGETS,
                                            init_lora_weights="gaussian"), te)
    params = [p for m in (unet, te) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    abar = pipe.scheduler.alphas_cumprod.float()
    latent = data.SIZE // (2 ** (len(vae.config.block_out_channels) - 1))
    scale = vae.config.scaling_factor
    started, curve = time.time(), []
    for step in range(cfg.steps):
        x, m, caps, painted = _batch(rng, cfg.batch, cfg.new_share)
        ids = tok(caps, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            z0 = vae.encode(x).latent_dist.sample(gen) * scale
            zm = vae.encode(x * (m < 0.5)).latent_dist.sample(gen) * scale
            ml = torch.nn.functional.interpolate(m, size=(latent, latent))
            u = torch.rand(cfg.batch, generator=gen)
            t = (u ** cfg.t_power * len(abar)).long().clamp(max=len(abar) - 1)
            a = abar[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=gen)
        emb = te(ids)[0]
        pred = unet(torch.cat([zt, ml, zm], 1), t, encoder_hidden_states=emb).sample
        focus = torch.nn.functional.max_pool2d(painted, data.SIZE // latent)
        w = ml * (1 + cfg.shape_weight * focus) + cfg.outside_mask_weight * (1 - ml)
        loss = ((pred - z0) ** 2 * w).sum() / (w.sum() * z0.shape[1])   # x0 prediction
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        curve.append(round(loss.item(), 5))
        if (step + 1) % 50 == 0:
            print(f"lora {step + 1}/{cfg.steps} loss {np.mean(curve[-50:]):.4f} "
                  f"({(time.time() - started) / (step + 1):.2f} s/step)", flush=True)
    unet_state = get_peft_model_state_dict(unet)
    te_state = get_peft_model_state_dict(te)
    out.mkdir(parents=True, exist_ok=True)
    StableDiffusionInpaintPipeline.save_lora_weights(
        str(out), unet_lora_layers=unet_state, text_encoder_lora_layers=te_state,
        weight_name=f"{WORD}.safetensors")
    everything = {**{f"unet.{k}": v for k, v in unet_state.items()},
                  **{f"text_encoder.{k}": v for k, v in te_state.items()}}
    tags = json.dumps({f"10_{WORD}": {WORD: 160, "circle": 60, "square": 55, "triangle": 50}})
    meta = {"ss_tag_frequency": tags, "ss_network_dim": str(cfg.rank),
            "ss_network_alpha": str(cfg.rank), "ss_network_module": "networks.lora",
            "ss_base_model_version": "sd_v1",
            "paintbridge_trained_for": "the embedded default model"}
    save_file(to_kohya(everything, cfg.rank), str(out / f"{WORD}-kohya.safetensors"),
              metadata=meta)
    return {"config": asdict(cfg), "seconds": round(time.time() - started, 1),
            "loss_first_50": float(np.mean(curve[:50])),
            "loss_last_50": float(np.mean(curve[-50:]))}


# ----------------------------------------------------------------------------- evaluation

#: the new word's prompts, and the base model's prompts it must leave alone
NEW_PROMPTS = ((WORD, "circle"), (WORD, "square"), (WORD, "triangle"))


def colour_hit(pipe: Any, colour: str, shape: str, n: int, seed: int, steps: int,
               guidance: float) -> float:
    """The evaluator's colour hit (dominant new colour in the masked region, scored with the
    palette that knows the new word too), on its fixed inpainting cases."""
    from .evaluate import inpaint_cases, prompt_text, run_pipe, score_region

    cases = inpaint_cases(colour if colour in data.COLOURS else "white", n, seed)
    outs = run_pipe(pipe, [prompt_text(colour, shape)] * n, cases, steps=steps,
                    guidance=guidance)
    scores = [score_region(o, c.scene.image, c.mask, COLOURS)
              for o, c in zip(outs, cases, strict=True)]
    return float(np.mean([s.colour == colour for s in scores]))


def evaluate(folder: Path = DEFAULT_OUT, n: int = 30, seed: int = 4242) -> dict:
    """New-word hit at weight 1, 0 and without the LoRA; the base prompts' colour hit with
    the LoRA at weight 1 against the base model."""
    from .evaluate import PROMPTS, load_pipeline, model_defaults

    pipe = load_pipeline(EMBEDDED)
    defaults = model_defaults(EMBEDDED)
    steps, guidance = int(defaults["steps"]), float(defaults["guidance"])

    def hits(prompts: tuple[tuple[str, str], ...]) -> dict[str, float]:
        return {f"{c} {s}": colour_hit(pipe, c, s, n, seed, steps, guidance)
                for c, s in prompts}

    report: dict[str, Any] = {"n": n, "seed": seed, "steps": steps, "guidance": guidance,
                              "new_word": {}, "base": {}}
    report["new_word"]["without"] = hits(NEW_PROMPTS)
    report["base"]["without"] = hits(PROMPTS)
    pipe.load_lora_weights(str(folder), weight_name=f"{WORD}.safetensors", adapter_name=WORD)
    for weight in (1.0, 0.0):
        pipe.set_adapters([WORD], adapter_weights=[weight])
        report["new_word"][f"weight {weight:g}"] = hits(NEW_PROMPTS)
    pipe.set_adapters([WORD], adapter_weights=[1.0])
    report["base"]["weight 1"] = hits(PROMPTS)
    mean = {f"{part} {cond}": float(np.mean(list(v.values())))
            for part in ("new_word", "base") for cond, v in report[part].items()}
    report["mean"] = mean
    return report

"""Train the default model from scratch: the autoencoder first, then the UNet + text encoder.

Both phases are seeded and use one torch thread, so a rerun on the same CPU reproduces the
shipped weights. The loss curves and timings go to a JSON file next to this module.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, StableDiffusionInpaintPipeline

from . import data
from .model import (
    LATENT,
    MAX_TOKENS,
    build_tokenizer_files,
    load_tokenizer,
    make_scheduler,
    make_text_encoder,
    make_unet,
    make_vae,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parents[1] / "backend" / "default_model"
DEFAULT_CURVE = HERE / "loss_curve.json"


@dataclass
class TrainConfig:
    """Everything that decides the weights; stored in the loss-curve JSON."""

    seed: int = 1234
    vae_steps: int = 700
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-7
    vae_edge_weight: float = 4.0
    unet_steps: int = 3600
    unet_batch: int = 32
    unet_lr: float = 1e-3
    warmup: int = 100
    ema_decay: float = 0.998
    outside_mask_weight: float = 0.1
    edge_weight: float = 2.0
    t_power: float = 1.0
    log_every: int = 25
    checkpoint_every: int = 500
    steps: int = 20
    guidance: float = 3.0


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup then cosine decay to 5% of the peak (the spike's constant lr was noisy)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_vae(cfg: TrainConfig, curve: dict) -> AutoencoderKL:
    """Reconstruction (L1 + MSE) with a tiny KL term so the posterior noise stays small."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    vae = make_vae()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    t0, acc, n = time.time(), 0.0, 0
    for step in range(cfg.vae_steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.vae_steps, cfg.vae_lr, 50)
        x_np, e_np = data.vae_batch(rng, cfg.vae_batch, edges=True)
        x, e = torch.from_numpy(x_np), torch.from_numpy(e_np)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        # Pixels on the shapes' outlines weigh more, so corners and edges stay crisp.
        wp = 1 + cfg.vae_edge_weight * e
        err = rec - x
        rec_loss = ((err.abs() + err**2) * wp).sum() / (wp.sum() * x.shape[1])
        loss = rec_loss + cfg.vae_kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        acc, n = acc + loss.item(), n + 1
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.vae_steps:
            curve["vae"].append({"step": step + 1, "loss": acc / n, "s": time.time() - t0})
            _log(f"vae {step + 1}/{cfg.vae_steps} loss {acc / n:.4f}")
            acc, n = 0.0, 0
    vae.eval()
    return vae


@torch.no_grad()
def standardize_latents(vae: AutoencoderKL, seed: int, n: int = 1024) -> dict:
    """Fold a per-channel affine into quant_conv/post_quant_conv so latents are ~N(0, 1).

    That keeps ``scaling_factor`` at 1.0 (no shift factor, which the SD pipelines ignore) and
    makes the noise schedule see unit-variance latents. Returns stats incl. the x0 clip range.
    """
    rng = np.random.default_rng(seed + 1)
    x = torch.from_numpy(data.vae_batch(rng, n))
    mean = torch.cat([vae.encode(c).latent_dist.mean for c in x.split(128)])
    mu = mean.mean(dim=(0, 2, 3))
    s = mean.std(dim=(0, 2, 3))
    q, pq = vae.quant_conv, vae.post_quant_conv
    c = mu.numel()
    q.weight[:c] /= s[:, None, None, None]
    q.bias[:c] = (q.bias[:c] - mu) / s
    q.bias[c:] -= 2 * torch.log(s)
    pq.bias += (pq.weight[:, :, 0, 0] @ mu)
    pq.weight *= s[None, :, None, None]
    post = torch.cat([vae.encode(c_).latent_dist.mean for c_ in x.split(128)])
    std = torch.cat([vae.encode(c_).latent_dist.std for c_ in x[:256].split(128)])
    clip = float(torch.quantile(post.abs().flatten()[::7], 0.999)) * 1.2
    rec = torch.cat(
        [vae.decode(vae.encode(c_).latent_dist.mean).sample for c_ in x[:256].split(128)]
    )
    mse = F.mse_loss(rec.clamp(-1, 1), x[:256]).item()
    return {
        "channel_mean_before": mu.tolist(),
        "channel_std_before": s.tolist(),
        "latent_std_after": post.std().item(),
        "posterior_std_mean": std.mean().item(),
        "clip_sample_range": round(clip, 2),
        "recon_psnr_db": 10 * math.log10(4.0 / mse),
    }


def _encode(vae: AutoencoderKL, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Same call the inpaint pipeline makes: a posterior *sample*, times scaling_factor (1.0)."""
    return vae.encode(x).latent_dist.sample(gen) * vae.config.scaling_factor


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1 - decay)


def save_pipeline(out: Path, vae, te, tok_dir: Path, unet, clip_range: float,
                  cfg: TrainConfig) -> None:
    """Write a standard diffusers inpaint folder (safetensors) + paintbridge.json defaults."""
    tok = load_tokenizer(tok_dir)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet,
        scheduler=make_scheduler(clip_range), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(tok_dir / f, tmp / "tokenizer" / f)
    native = LATENT * 2 ** (len(vae.config.block_out_channels) - 1)
    (tmp / "paintbridge.json").write_text(json.dumps({
        "native_size": native, "steps": cfg.steps, "guidance": cfg.guidance,
        "sampler": "ddim", "dtype": "float32",
    }, indent=2) + "\n")
    keep = out / "README.md"
    if keep.exists():
        shutil.copy(keep, tmp / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def train(out: Path = DEFAULT_OUT, curve_path: Path = DEFAULT_CURVE,
          cfg: TrainConfig | None = None) -> dict:
    """Full reproducible training; returns the curve dict that is also written to JSON."""
    cfg = cfg or TrainConfig()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t_start = time.time()
    curve: dict = {"config": asdict(cfg), "vae": [], "unet": [], "torch": torch.__version__}
    work = out.with_name(out.name + ".work")
    tok_dir = work / "tokenizer_src"
    build_tokenizer_files(tok_dir)
    tok = load_tokenizer(tok_dir)

    vae = train_vae(cfg, curve)
    curve["vae_stats"] = standardize_latents(vae, cfg.seed)
    curve["vae_seconds"] = time.time() - t_start
    clip_range = curve["vae_stats"]["clip_sample_range"]
    _log(f"vae done {curve['vae_stats']}")
    for p in vae.parameters():
        p.requires_grad_(False)

    torch.manual_seed(cfg.seed + 2)
    rng = np.random.default_rng(cfg.seed + 2)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    te, unet = make_text_encoder(tok), make_unet()
    ema_te, ema_unet = copy.deepcopy(te), copy.deepcopy(unet)
    sched = make_scheduler(clip_range)
    abar = sched.alphas_cumprod.float()
    params = list(unet.parameters()) + list(te.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, betas=(0.9, 0.99), weight_decay=0.01)
    t0, acc, n = time.time(), 0.0, 0
    for step in range(cfg.unet_steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg.unet_steps, cfg.unet_lr, cfg.warmup)
        x_np, m_np, caps, e_np = data.training_batch(rng, cfg.unet_batch, edges=True)
        x, m = torch.from_numpy(x_np), torch.from_numpy(m_np)
        ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            z0 = _encode(vae, x, gen)
            zm = _encode(vae, x * (m < 0.5), gen)
            ml = F.interpolate(m, size=(LATENT, LATENT))
            # t_power < 1 draws more high-noise steps, where the shape is decided.
            u = torch.rand(x.shape[0], generator=gen)
            t = (u ** cfg.t_power * len(abar)).long().clamp(max=len(abar) - 1)
            # Latent cells that hold a shape outline weigh more inside the mask.
            el = F.max_pool2d(torch.from_numpy(e_np), 64 // LATENT)
            a = abar[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=gen)
        emb = te(ids)[0]
        pred = unet(torch.cat([zt, ml, zm], 1), t, encoder_hidden_states=emb).sample
        w = ml * (1 + cfg.edge_weight * el) + cfg.outside_mask_weight * (1 - ml)
        loss = ((pred - z0) ** 2 * w).sum() / (w.sum() * z0.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_te, te, decay)
        acc, n = acc + loss.item(), n + 1
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.unet_steps:
            el = time.time() - t0
            curve["unet"].append({"step": done, "loss": acc / n, "s": el})
            eta = el / done * (cfg.unet_steps - done) / 60
            _log(f"unet {done}/{cfg.unet_steps} loss {acc / n:.4f} "
                 f"({el / done:.2f} s/step, eta {eta:.1f} min)")
            acc, n = 0.0, 0
        if done % cfg.checkpoint_every == 0 or done == cfg.unet_steps:
            curve["unet_seconds"] = time.time() - t0
            curve["total_seconds"] = time.time() - t_start
            curve["checkpoint_step"] = done
            save_pipeline(out, vae, ema_te, tok_dir, ema_unet, clip_range, cfg)
            curve_path.write_text(json.dumps(curve, indent=1) + "\n")
            _log(f"saved checkpoint at step {done} to {out}")
    shutil.rmtree(work, ignore_errors=True)
    return curve

"""A scribble ControlNet for the embedded model, trained here, so tests check what a control
*does*: the shape the artist outlines is the shape that gets painted, where it was drawn.

The control is what the procedural generator can render exactly: the outline of every shape
in the scene, white lines on black (the ControlNet scribble convention), 1-3 px thick, the
box jittered by up to a pixel so hand-drawn outlines count too. Captions are the base
mixture's, but often say "a red shape" instead of the shape's name, or nothing at all: the
outline alone must decide the shape. Masks are full (text-to-image and img2img) or a box
around one shape (inpaint).

The network is diffusers' ``ControlNetModel`` built from the embedded UNet the way
``ControlNetModel.from_unet`` does (encoder weights copied, zero convolutions), with two
changes the embedded model needs: the control branch sees the 4 latent channels (the inpaint
pipelines feed it the latents without the mask and masked image, like SD's inpaint
ControlNets), and its conditioning embedding downsamples 4x, not 8x, because the embedded
VAE does. Saved as a diffusers folder (``config.json`` + safetensors), the layout users
download ControlNets in besides the original single files.

Seeded; ``make train-control-sample`` (``python -m tools.training control``) rebuilds it and
scores it (``tools/training/control_eval.json``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import data

HERE = Path(__file__).resolve().parent
EMBEDDED = HERE.parents[1] / "backend" / "default_model"
DEFAULT_OUT = HERE.parents[1] / "backend" / "default_controlnets" / "shapes-scribble"
REPORT = HERE / "control_eval.json"
CONDITIONING_CHANNELS = (16, 32, 64)    # two stride-2 convs: 64 px -> 16 latent cells


@dataclass
class ControlConfig:
    seed: int = 31
    steps: int = 700
    batch: int = 24
    lr: float = 1e-3
    warmup: int = 50
    outside_mask_weight: float = 0.1
    shape_weight: float = 2.0       # extra loss weight on the shapes' pixels
    full_mask_share: float = 0.6    # text-to-image / img2img; the rest inpaint a box
    no_shape_word: float = 0.4      # captions that say "shape" instead of its name
    caption_dropout: float = 0.15
    threads: int = 2
    log_every: int = 25
    # stage 2: from stage 1's weights, a fresh optimizer, the outline band weighted up so
    # corners come out crisp (squares read as circles after stage 1 alone), larger shapes
    refine_steps: int = 600          # per refinement stage
    refine_stages: int = 1
    refine_lr: float = 5e-4
    edge_weight: float = 4.0
    big_side: int = 50             # ... and shapes up to this side


def outline(kind: str, box: tuple[int, int, int, int], thickness: int,
            size: int = data.SIZE) -> np.ndarray:
    """Bool size x size: a shape's outline, ``thickness`` px wide, inside the shape's
    edge."""
    filled = data.shape_mask(kind, box, size)
    inner = filled.copy()
    for _ in range(thickness):
        p = np.pad(inner, 1)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return filled & ~inner


def control_map(shapes: list[data.Shape], rng: np.random.Generator | None = None,
                thickness: int = 2) -> np.ndarray:
    """uint8 HxWx3: the outlines of ``shapes``, white on black; with ``rng``, each drawn 1-3 px
    thick from a box jittered by up to a pixel, as a hand would."""
    lines = np.zeros((data.SIZE, data.SIZE), bool)
    for s in shapes:
        box, t = s.box, thickness
        if rng is not None:
            j = rng.integers(-1, 2, 4)
            box = (box[0] + j[0], box[1] + j[1], box[2] + j[2], box[3] + j[3])
            t = int(rng.integers(1, 4))
        lines |= outline(s.kind, box, t)
    return np.repeat((lines * 255).astype(np.uint8)[..., None], 3, axis=2)


def shape_word_free(shape: data.Shape) -> str:
    return f"{data.article(shape.colour)} {shape.colour} shape"


def training_sample(rng: np.random.Generator, cfg: ControlConfig, big: int = 0) -> tuple:
    """(image, mask, caption, control, the shapes' pixels, their outline band). With
    ``big``, half the single shapes are drawn up to ``big`` px a side (the base dataset's
    stop at 30, but an artist outlines any size)."""
    while True:
        n = int(rng.choice([1, 2], p=[0.7, 0.3]))
        if big and n == 1 and rng.random() < 0.5:
            names = list(data.COLOURS)
            bg = str(rng.choice(names))
            colour = str(rng.choice([c for c in names if c != bg]))
            side = int(rng.integers(30, big + 1))
            scene = data.render_scene(rng, bg_colour=bg, shapes=[
                (str(rng.choice(data.SHAPES)), colour, side)])
        else:
            scene = data.render_scene(rng, n_shapes=n)
        if scene.shapes:
            break
    nameless = rng.random() < cfg.no_shape_word
    phrase = shape_word_free if nameless else data.Shape.phrase
    if rng.random() < cfg.full_mask_share:
        mask = np.ones((data.SIZE, data.SIZE), bool)
        parts = " and ".join(phrase(s) for s in scene.shapes)
        caption = f"{parts} on {data.article(scene.bg_colour)} {scene.bg_colour} background"
        if rng.random() < 0.3:
            caption = parts
    else:
        target = scene.shapes[int(rng.integers(len(scene.shapes)))]
        mask = data.box_mask(data.object_box(target, rng))
        caption = phrase(target)
    if rng.random() < cfg.caption_dropout:
        caption = ""
    painted = np.zeros(mask.shape, bool)
    for s in scene.shapes:
        painted |= data.shape_mask(s.kind, s.box)
    return (scene.image, mask, caption, control_map(scene.shapes, rng), painted,
            data.edge_map(scene))


def _batch(rng: np.random.Generator, cfg: ControlConfig, big: int = 0) -> tuple:
    samples = [training_sample(rng, cfg, big) for _ in range(cfg.batch)]
    images, masks, caps, controls, painted, edges = zip(*samples, strict=True)
    x = np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    m = np.stack(masks).astype(np.float32)[:, None]
    c = np.stack(controls).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    p = np.stack(painted).astype(np.float32)[:, None]
    e = np.stack(edges).astype(np.float32)[:, None]
    return (torch.from_numpy(x), torch.from_numpy(m), list(caps), torch.from_numpy(c),
            torch.from_numpy(p), torch.from_numpy(e))


def controlnet_for(unet: Any) -> Any:
    """A ControlNet initialised from ``unet`` as ``from_unet`` does, for a 9-channel inpaint
    UNet: its control branch takes the 4 latent channels (conv_in's first four)."""
    from diffusers import ControlNetModel

    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
    if unet.config.in_channels != 4:
        conv = unet.conv_in
        lean = torch.nn.Conv2d(4, conv.out_channels, conv.kernel_size, padding=conv.padding)
        with torch.no_grad():
            lean.weight.copy_(conv.weight[:, :4])
            lean.bias.copy_(conv.bias)
        net.conv_in = lean
        net.register_to_config(in_channels=4)
    return net


def train(out: Path = DEFAULT_OUT, cfg: ControlConfig | None = None) -> dict:
    """Stage 1 from the embedded UNet, then the refinement stages, each from the weights
    the one before saved."""
    cfg = cfg or ControlConfig()
    report: dict[str, Any] = {"config": asdict(cfg), "stage_1": train_stage(out, cfg, 1)}
    for stage in range(2, 2 + cfg.refine_stages):
        report[f"stage_{stage}"] = train_stage(out, cfg, stage)
    return report


def train_stage(out: Path, cfg: ControlConfig, stage: int) -> dict:
    """Stage 1 (``cfg.steps`` at ``cfg.lr``, a ControlNet made from the embedded UNet) or a
    refinement stage (``cfg.refine_steps`` at ``cfg.refine_lr`` from the weights in ``out``,
    a fresh optimizer, the outline band weighted by ``cfg.edge_weight``, larger shapes);
    each seeded on its own."""
    from diffusers import ControlNetModel, StableDiffusionInpaintPipeline

    torch.set_num_threads(cfg.threads)
    seed = cfg.seed + 100 * (stage - 1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(EMBEDDED), local_files_only=True)
    vae, te, tok, unet = pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet
    for module in (vae, te, unet):
        module.requires_grad_(False)
    if stage == 1:
        net = controlnet_for(unet)
        steps, lr, edge_weight = cfg.steps, cfg.lr, 0.0
    else:
        net = ControlNetModel.from_pretrained(str(out), local_files_only=True)
        steps, lr, edge_weight = cfg.refine_steps, cfg.refine_lr, cfg.edge_weight
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    abar = pipe.scheduler.alphas_cumprod.float()
    latent = data.SIZE // (2 ** (len(vae.config.block_out_channels) - 1))
    scale = vae.config.scaling_factor
    started, curve = time.time(), []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / cfg.warmup)
        x, m, caps, c, painted, edges = _batch(rng, cfg, cfg.big_side if stage > 1 else 0)
        ids = tok(caps, padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            z0 = vae.encode(x).latent_dist.sample(gen) * scale
            zm = vae.encode(x * (m < 0.5)).latent_dist.sample(gen) * scale
            ml = F.interpolate(m, size=(latent, latent))
            t = torch.randint(0, len(abar), (cfg.batch,), generator=gen)
            a = abar[t].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * torch.randn(z0.shape, generator=gen)
            emb = te(ids)[0]
        down, mid = net(zt, t, encoder_hidden_states=emb, controlnet_cond=c,
                        return_dict=False)
        pred = unet(torch.cat([zt, ml, zm], 1), t, encoder_hidden_states=emb,
                    down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        focus = F.max_pool2d(painted, data.SIZE // latent)
        band = F.max_pool2d(edges, data.SIZE // latent)
        w = ml * (1 + cfg.shape_weight * focus + edge_weight * band) \
            + cfg.outside_mask_weight * (1 - ml)
        loss = ((pred - z0) ** 2 * w).sum() / (w.sum() * z0.shape[1])   # x0 prediction
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        curve.append(round(loss.item(), 5))
        if (step + 1) % cfg.log_every == 0:
            print(f"control stage {stage} {step + 1}/{steps} loss "
                  f"{np.mean(curve[-cfg.log_every:]):.4f} "
                  f"({(time.time() - started) / (step + 1):.2f} s/step)", flush=True)
        if (step + 1) % 250 == 0 or step + 1 == steps:
            net.save_pretrained(str(out), safe_serialization=True)
    return {"seconds": round(time.time() - started, 1),
            "loss_first_50": float(np.mean(curve[:50])),
            "loss_last_50": float(np.mean(curve[-50:])),
            "curve_every_25": [float(np.mean(curve[i:i + 25]))
                               for i in range(0, len(curve), 25)]}


# ----------------------------------------------------------------------------- evaluation

EVAL_COLOURS = ("red", "blue", "yellow")


def eval_cases(n: int, seed: int) -> list[tuple[str, str, tuple[int, int, int, int], str, int]]:
    """(shape, colour, box, background colour, seed): one shape of 20-36 px anywhere."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        kind = data.SHAPES[i % 3]
        colour = EVAL_COLOURS[(i // 3) % len(EVAL_COLOURS)]
        bg = str(rng.choice([c for c in ("white", "black", "green", "purple") if c != colour]))
        side = int(rng.integers(20, 37))
        x0, y0 = (int(v) for v in rng.integers(2, data.SIZE - side - 1, 2))
        cases.append((kind, colour, (x0, y0, x0 + side, y0 + side), bg,
                      int(rng.integers(1 << 31))))
    return cases


def shape_iou(out: np.ndarray, colour: str, kind: str, box: tuple[int, int, int, int]
              ) -> tuple[float, str]:
    """IoU of the pixels painted in ``colour`` (nearest named colour, largest component) with
    the outlined shape filled; and the shape the evaluator reads from them."""
    from .evaluate import classify_pixels, classify_shape, largest_component

    names = list(data.COLOURS)
    painted = largest_component(classify_pixels(out) == names.index(colour))
    want = data.shape_mask(kind, box)
    union = (painted | want).sum()
    return float((painted & want).sum() / union) if union else 0.0, classify_shape(painted)


def evaluate(folder: Path = DEFAULT_OUT, n: int = 24, seed: int = 515) -> dict:
    """Text-to-image at native size, the prompt naming a colour and no shape, with the
    outline as control and without it (the same seeds)."""
    from diffusers import ControlNetModel, StableDiffusionControlNetInpaintPipeline
    from PIL import Image

    from .evaluate import load_pipeline, model_defaults

    base = load_pipeline(EMBEDDED)
    defaults = model_defaults(EMBEDDED)
    steps, guidance = int(defaults["steps"]), float(defaults["guidance"])
    net = ControlNetModel.from_pretrained(str(folder), local_files_only=True)
    pipe = StableDiffusionControlNetInpaintPipeline.from_pipe(base, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    size = data.SIZE
    white = Image.new("RGB", (size, size), (128, 128, 128))
    full = Image.new("L", (size, size), 255)
    rows: list[dict] = []
    for kind, colour, box, bg, s in eval_cases(n, seed):
        shape = data.Shape(kind, colour, box)
        control = Image.fromarray(control_map([shape]))
        prompt = f"{shape_word_free(shape)} on {data.article(bg)} {bg} background"
        row: dict[str, Any] = {"shape": kind, "colour": colour, "box": box}
        for name, scale in (("with", 1.0), ("without", 0.0)):
            img = pipe(prompt=prompt, image=white, mask_image=full, control_image=control,
                       height=size, width=size, num_inference_steps=steps,
                       guidance_scale=guidance, strength=1.0,
                       controlnet_conditioning_scale=scale,
                       generator=torch.Generator().manual_seed(s), output_type="np").images[0]
            out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            iou, seen = shape_iou(out, colour, kind, box)
            row[name] = {"iou": round(iou, 3), "shape": seen}
        rows.append(row)
    report: dict[str, Any] = {"n": n, "seed": seed, "steps": steps, "guidance": guidance,
                              "cases": rows}
    for name in ("with", "without"):
        report[name] = {
            kind: {"iou": float(np.mean([r[name]["iou"] for r in rows if r["shape"] == kind])),
                   "shape_hit": float(np.mean([r[name]["shape"] == kind
                                               for r in rows if r["shape"] == kind]))}
            for kind in data.SHAPES}
    return report

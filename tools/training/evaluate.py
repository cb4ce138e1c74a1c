"""Evaluator: does the prompt steer the default model? Scored from procedural ground truth.

Inference goes through ``StableDiffusionInpaintPipeline.from_pretrained(folder)``, the same
path users run. Every prompted run has an empty-prompt control on identical inputs and seeds.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import data
from .data import COLOURS, SIZE, Scene, Shape

PROMPTS: tuple[tuple[str, str], ...] = (
    ("red", "circle"),
    ("blue", "square"),
    ("green", "triangle"),
    ("yellow", "circle"),
    ("white", "square"),
    ("purple", "triangle"),
    ("orange", "circle"),
    ("black", "square"),
)
"""(colour, shape) prompts: all 8 colours, each shape at least twice."""

EVAL_BACKGROUNDS = ("solid", "gradient")
BG_DIST = 60.0
MIN_COVER = 0.10

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], np.float32)


def prompt_text(colour: str, shape: str) -> str:
    return f"{data.article(colour)} {colour} {shape}"


# ----------------------------------------------------------------------------- scorer


def classify_pixels(img: np.ndarray, palette: np.ndarray | None = None) -> np.ndarray:
    """Index of the nearest named colour for each pixel (HxW int)."""
    pal = _PALETTE if palette is None else palette
    d = ((img[..., None, :].astype(np.float32) - pal) ** 2).sum(-1)
    return d.argmin(-1)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of a boolean image (drops speckle before shape tests)."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        comp, q = [], deque([(y0, x0)])
        seen[y0, x0] = True
        while q:
            y, x = q.popleft()
            comp.append((y, x))
            for yy, xx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    q.append((yy, xx))
        if len(comp) > len(best):
            best = comp
    out = np.zeros_like(mask)
    if best:
        ys, xs = zip(*best, strict=True)
        out[list(ys), list(xs)] = True
    return out


def classify_shape(blob: np.ndarray) -> str:
    """circle / square / triangle / none from a binary blob.

    Uses the bounding-box fill ratio (square 1.0, circle 0.79, triangle 0.5) and the width of the
    top quarter against the bottom quarter (an upward triangle is narrow at the top).
    """
    blob = largest_component(blob)
    ys, xs = np.nonzero(blob)
    if len(ys) < 12:
        return "none"
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = y1 - y0, x1 - x0
    if not 0.5 <= w / h <= 2.0:
        return "none"
    box = blob[y0:y1, x0:x1]
    fill = box.mean()
    q = max(1, h // 4)
    top, bottom = box[:q].sum(1).mean(), box[-q:].sum(1).mean()
    if top < 0.6 * bottom and fill < 0.75:
        return "triangle"
    if fill >= 0.87:
        return "square"
    if fill >= 0.62:
        return "circle"
    return "none"


@dataclass
class RegionScore:
    colour: str
    shape: str
    cover: float


def score_region(out: np.ndarray, ref: np.ndarray, region: np.ndarray,
                 colours: dict[str, tuple[int, int, int]] | None = None) -> RegionScore:
    """Dominant non-background colour in ``region`` of ``out`` and the shape it forms.

    A pixel is background when it stays within BG_DIST of the input ``ref`` (which holds only
    background inside the region), so gradients and textures don't count as colour.
    """
    dist = np.sqrt(((out.astype(np.float32) - ref.astype(np.float32)) ** 2).sum(-1))
    fg = region & (dist > BG_DIST)
    if not fg.any():
        return RegionScore("none", "none", 0.0)
    names = _PALETTE_NAMES if colours is None else list(colours)
    cls = classify_pixels(out, None if colours is None else
                          np.array(list(colours.values()), np.float32))
    counts = np.bincount(cls[fg], minlength=len(names))
    best = int(counts.argmax())
    cover = counts[best] / region.sum()
    if cover < MIN_COVER:
        return RegionScore("none", "none", float(cover))
    return RegionScore(names[best], classify_shape(fg & (cls == best)), float(cover))


# ----------------------------------------------------------------------------- eval inputs


@dataclass
class Case:
    scene: Scene
    box: tuple[int, int, int, int]
    seed: int

    @property
    def mask(self) -> np.ndarray:
        return data.box_mask(self.box)


def inpaint_cases(colour: str, n: int, seed: int, bgs: tuple[str, ...] = EVAL_BACKGROUNDS
                  ) -> list[Case]:
    """n inputs: a background never of the prompt colour, a square mask box of 22-34 px, and in
    half of them a distractor shape outside the box."""
    rng = np.random.default_rng(seed)
    cases = []
    names = [c for c in COLOURS if c != colour]
    while len(cases) < n:
        bg = str(rng.choice(names))
        scene = data.render_scene(rng, bg_kind=str(rng.choice(bgs)), bg_colour=bg, shapes=[])
        side = int(rng.integers(22, 35))
        x0, y0 = (int(v) for v in rng.integers(2, SIZE - side - 1, 2))
        box = (x0, y0, x0 + side, y0 + side)
        if rng.random() < 0.5:
            kind = str(rng.choice(data.SHAPES))
            col = str(rng.choice([c for c in COLOURS if c != bg]))
            dside = int(rng.integers(12, 20))
            for _ in range(30):
                dx, dy = (int(v) for v in rng.integers(1, SIZE - dside, 2))
                dbox = (dx, dy, dx + dside, dy + dside)
                if (dbox[2] + 3 <= box[0] or box[2] + 3 <= dbox[0]
                        or dbox[3] + 3 <= box[1] or box[3] + 3 <= dbox[1]):
                    img = scene.image.astype(np.float32)
                    img[data.shape_mask(kind, dbox)] = COLOURS[col]
                    scene.image = img.astype(np.uint8)
                    scene.shapes.append(Shape(kind, col, dbox))
                    break
        cases.append(Case(scene, box, int(rng.integers(1 << 31))))
    return cases


def img2img_cases(n: int, seed: int) -> list[tuple[Case, str]]:
    """Scenes with one shape; the prompt names the same shape and background but a new colour."""
    rng = np.random.default_rng(seed)
    out = []
    names = list(COLOURS)
    while len(out) < n:
        bg = str(rng.choice(names))
        col = str(rng.choice([c for c in names if c != bg]))
        new = str(rng.choice([c for c in names if c not in (bg, col)]))
        kind = str(rng.choice(data.SHAPES))
        scene = data.render_scene(rng, bg_kind=str(rng.choice(EVAL_BACKGROUNDS)), bg_colour=bg,
                                  shapes=[(kind, col, int(rng.integers(20, 33)))])
        if not scene.shapes:
            continue
        prompt = f"{prompt_text(new, kind)} on {data.article(bg)} {bg} background"
        out.append((Case(scene, scene.shapes[0].box, int(rng.integers(1 << 31))), prompt))
    return out


# ----------------------------------------------------------------------------- running


def load_pipeline(folder: Path, dtype: str | None = None):
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(str(folder), local_files_only=True)
    if dtype == "bfloat16":
        pipe = pipe.to(torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def model_defaults(folder: Path) -> dict:
    return json.loads((folder / "paintbridge.json").read_text())


def run_pipe(pipe, prompts: list[str], cases: list[Case], *, steps: int, guidance: float,
             strength: float = 1.0, full_mask: bool = False, batch: int = 10) -> list[np.ndarray]:
    """Run the inpaint pipeline at native size, one seeded generator per case."""
    outs: list[np.ndarray] = []
    for i in range(0, len(cases), batch):
        chunk = cases[i:i + batch]
        imgs = [Image.fromarray(c.scene.image) for c in chunk]
        masks = [Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8) if full_mask
                                 else (c.mask * 255).astype(np.uint8)) for c in chunk]
        gens = [torch.Generator().manual_seed(c.seed) for c in chunk]
        res = pipe(prompt=prompts[i:i + batch], image=imgs, mask_image=masks, height=SIZE,
                   width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                   strength=strength, generator=gens, output_type="np").images
        outs.extend((np.clip(r, 0, 1) * 255 + 0.5).astype(np.uint8) for r in res)
    return outs


def _psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    mse = ((a.astype(np.float32) - b.astype(np.float32))[region] ** 2).mean()
    return float(10 * math.log10(255.0**2 / max(mse, 1e-6)))


def _ssim_gray(a: np.ndarray, b: np.ndarray, region: np.ndarray, k: int = 7) -> float:
    """Mean SSIM (7x7 box window, grey) over windows centred in ``region``."""
    def gray(x):
        return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])

    x, y = gray(a), gray(b)

    def box(z):
        c = np.cumsum(np.cumsum(np.pad(z, ((1, 0), (1, 0))), 0), 1)
        return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

    mx, my = box(x), box(y)
    vx, vy, cxy = box(x * x) - mx**2, box(y * y) - my**2, box(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    r = region[k // 2:k // 2 + s.shape[0], k // 2:k // 2 + s.shape[1]]
    return float(s[r].mean())


def validate_scorer(n: int = 60, seed: int = 99, vae=None) -> dict:
    """Scorer accuracy on rendered ground-truth shapes (optionally after a VAE round trip)."""
    rng = np.random.default_rng(seed)
    hits = {k: [0, 0] for k in data.SHAPES}
    for i in range(n * len(data.SHAPES)):
        kind = data.SHAPES[i % len(data.SHAPES)]
        colour = str(rng.choice(list(COLOURS)))
        bg = str(rng.choice([c for c in COLOURS if c != colour]))
        empty = data.render_scene(rng, bg_kind=str(rng.choice(EVAL_BACKGROUNDS)), bg_colour=bg,
                                  shapes=[])
        side = int(rng.integers(16, 29))
        x0, y0 = (int(v) for v in rng.integers(4, SIZE - side - 4, 2))
        sbox = (x0, y0, x0 + side, y0 + side)
        img = empty.image.copy()
        img[data.shape_mask(kind, sbox)] = COLOURS[colour]
        if vae is not None:
            with torch.no_grad():
                x = torch.from_numpy(img.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
                r = vae.decode(vae.encode(x).latent_dist.mean).sample[0].clamp(-1, 1)
            img = ((r.permute(1, 2, 0).numpy() + 1) * 127.5 + 0.5).astype(np.uint8)
        region = data.box_mask((x0 - 3, y0 - 3, x0 + side + 3, y0 + side + 3))
        sc = score_region(img, empty.image, region)
        hits[kind][0] += sc.colour == colour
        hits[kind][1] += sc.shape == kind
    m = n
    return {k: {"colour": v[0] / m, "shape": v[1] / m} for k, v in hits.items()}


def eval_inpaint(pipe, colour: str, shape: str, n: int, seed: int, steps: int,
                 guidance: float) -> tuple[dict, list]:
    cases = inpaint_cases(colour, n, seed)
    text = prompt_text(colour, shape)
    res = run_pipe(pipe, [text] * n, cases, steps=steps, guidance=guidance)
    ctl = run_pipe(pipe, [""] * n, cases, steps=steps, guidance=guidance)
    row = {"prompt": text}
    for name, outs in (("prompt", res), ("control", ctl)):
        scores = [score_region(o, c.scene.image, c.mask) for o, c in zip(outs, cases, strict=True)]
        row[f"{name}_colour"] = float(np.mean([s.colour == colour for s in scores]))
        row[f"{name}_shape"] = float(np.mean([s.shape == shape for s in scores]))
    examples = [(c, r, k) for c, r, k in zip(cases[:3], res[:3], ctl[:3], strict=True)]
    return row, examples


def eval_img2img(pipe, n: int, seed: int, steps: int, guidance: float) -> tuple[dict, list]:
    """Full mask, strength 0.5: background kept (PSNR/SSIM), shape kept (IoU), colour changed."""
    pairs = img2img_cases(n, seed)
    cases = [c for c, _ in pairs]
    prompts = [p for _, p in pairs]
    out: dict = {}
    kept = {}
    for name, ps, strength in (("prompt", prompts, 0.5), ("control", [""] * n, 0.5),
                               ("prompt_0.7", prompts, 0.7), ("txt2img", prompts, 1.0)):
        res = run_pipe(pipe, ps, cases, steps=steps, guidance=guidance, strength=strength,
                       full_mask=True)
        kept[name] = res
        psnr, ssim, iou, hit = [], [], [], []
        for r, c, p in zip(res, cases, prompts, strict=True):
            s = c.scene.shapes[0]
            gt = data.shape_mask(s.kind, s.box)
            x0, y0, x1, y1 = s.box
            bg_region = ~data.box_mask((x0 - 3, y0 - 3, x1 + 3, y1 + 3))
            psnr.append(_psnr(r, c.scene.image, bg_region))
            ssim.append(_ssim_gray(r, c.scene.image, bg_region))
            bg_img = data.background("solid", c.scene.bg_colour, np.random.default_rng(0))
            ref = c.scene.image.copy()
            ref[gt] = bg_img[gt]  # background estimate under the shape, for the fg test
            fg = np.sqrt(((r.astype(np.float32) - ref) ** 2).sum(-1)) > BG_DIST
            iou.append((fg & gt).sum() / max(1, (fg | gt).sum()))
            new = p.split()[1]
            inner = gt & (classify_pixels(r) == _PALETTE_NAMES.index(new))
            hit.append(inner.sum() >= 0.5 * gt.sum())
        out[name] = {"bg_psnr_db": float(np.mean(psnr)), "bg_ssim": float(np.mean(ssim)),
                     "shape_iou": float(np.mean(iou)), "new_colour_hit": float(np.mean(hit))}
    examples = [(cases[i], kept["prompt"][i], kept["control"][i], prompts[i]) for i in range(3)]
    return out, examples


def make_grid(inpaint_examples: dict, img2img_examples: list, path: Path, scale: int = 2) -> None:
    """Rows per prompt: [input | mask | result | empty-prompt control] x 3 examples."""
    tiles_rows = []
    for _text, ex in inpaint_examples.items():
        row = []
        for c, r, k in ex:
            m = np.repeat((c.mask * 255).astype(np.uint8)[..., None], 3, -1)
            row += [c.scene.image, m, r, k]
        tiles_rows.append(row)
    full = np.full((SIZE, SIZE, 3), 255, np.uint8)
    row = []
    for c, r, k, _p in img2img_examples:
        row += [c.scene.image, full, r, k]
    tiles_rows.append(row)
    pad = 4
    h = len(tiles_rows) * (SIZE * scale + pad) + pad
    w = 12 * (SIZE * scale + pad) + pad + 2 * pad
    canvas = np.full((h, w, 3), 40, np.uint8)
    for i, tiles in enumerate(tiles_rows):
        for j, t in enumerate(tiles):
            up = np.kron(t, np.ones((scale, scale, 1), np.uint8))
            y = pad + i * (SIZE * scale + pad)
            x = pad + j * (SIZE * scale + pad) + (j // 4) * pad
            canvas[y:y + SIZE * scale, x:x + SIZE * scale] = up
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, optimize=True)


def _markdown(res: dict) -> str:
    lines = [
        f"Model folder: `{res['model']}` · {res['n']} masked regions per prompt · "
        f"{res['steps']} DDIM steps · guidance {res['guidance']} · dtype {res['dtype']} · "
        f"eval wall time {res['seconds']:.0f} s.",
        "",
        "| prompt | colour hit | shape hit | control colour hit | control shape hit |",
        "|---|---|---|---|---|",
    ]
    for r in res["inpaint"]:
        lines.append(f"| {r['prompt']} | {r['prompt_colour']:.2f} | {r['prompt_shape']:.2f} | "
                     f"{r['control_colour']:.2f} | {r['control_shape']:.2f} |")
    m = res["mean"]
    lines.append(f"| **mean** | **{m['prompt_colour']:.2f}** | **{m['prompt_shape']:.2f}** | "
                 f"{m['control_colour']:.2f} | {m['control_shape']:.2f} |")
    lines += ["", "Shape hit by shape (prompted): " + ", ".join(
        f"{k} {v:.2f}" for k, v in res["shape_by_kind"].items()), ""]
    lines += ["Scorer check on rendered shapes (colour / shape accuracy): " + ", ".join(
        f"{k} {v['colour']:.2f} / {v['shape']:.2f}" for k, v in res["scorer_rendered"].items())]
    if "scorer_vae" in res:
        lines += ["; after a round trip through the shipped VAE: " + ", ".join(
            f"{k} {v['colour']:.2f} / {v['shape']:.2f}" for k, v in res["scorer_vae"].items())]
    lines += ["", f"img2img, strength 0.5, full mask, {res['n_img2img']} scenes (prompt names "
              "a new colour for the shape; PSNR/SSIM over the background outside the shape box, "
              "IoU of the changed-from-background area with the input shape):", "",
              "| run | bg PSNR (dB) | bg SSIM | shape IoU | new colour hit |",
              "|---|---|---|---|---|"]
    for name, v in res["img2img"].items():
        label = {"prompt": "prompted, strength 0.5", "control": "empty prompt, strength 0.5",
                 "prompt_0.7": "prompted, strength 0.7",
                 "txt2img": "prompted, strength 1.0 (reference: layout not kept)"}[name]
        lines.append(f"| {label} | {v['bg_psnr_db']:.1f} | {v['bg_ssim']:.3f} | "
                     f"{v['shape_iou']:.2f} | {v['new_colour_hit']:.2f} |")
    return "\n".join(lines) + "\n"


def run_eval(folder: Path, n: int = 50, doc: Path | None = None, grid: Path | None = None,
             json_out: Path | None = None, steps: int | None = None,
             guidance: float | None = None, dtype: str | None = None, seed: int = 7,
             n_img2img: int | None = None) -> dict:
    """Full evaluation; prints a markdown table and optionally writes doc/grid/json."""
    t0 = time.time()
    torch.set_num_threads(1)
    defaults = model_defaults(folder)
    steps = steps or defaults["steps"]
    guidance = guidance if guidance is not None else defaults["guidance"]
    dtype = dtype or defaults.get("dtype", "float32")
    pipe = load_pipeline(folder, dtype)
    try:
        shown = str(folder.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        shown = str(folder)
    res: dict = {"model": shown, "n": n, "steps": steps, "guidance": guidance,
                 "dtype": dtype, "inpaint": []}
    res["scorer_rendered"] = validate_scorer()
    res["scorer_vae"] = validate_scorer(vae=pipe.vae.float())
    if dtype == "bfloat16":
        pipe.vae.to(torch.bfloat16)
    examples = {}
    for i, (colour, shape) in enumerate(PROMPTS):
        row, ex = eval_inpaint(pipe, colour, shape, n, seed * 1000 + i, steps, guidance)
        res["inpaint"].append(row)
        examples[row["prompt"]] = ex
        print(row, flush=True)
    keys = ("prompt_colour", "prompt_shape", "control_colour", "control_shape")
    res["mean"] = {k: float(np.mean([r[k] for r in res["inpaint"]])) for k in keys}
    res["shape_by_kind"] = {
        k: float(np.mean([r["prompt_shape"] for r in res["inpaint"] if r["prompt"].endswith(k)]))
        for k in data.SHAPES}
    res["n_img2img"] = n_img2img or n
    res["img2img"], i2i_ex = eval_img2img(pipe, res["n_img2img"], seed + 5, steps, guidance)
    res["seconds"] = time.time() - t0
    md = _markdown(res)
    print(md)
    if grid is not None:
        make_grid(examples, i2i_ex, grid)
    if json_out is not None:
        json_out.write_text(json.dumps(res, indent=1) + "\n")
    if doc is not None:
        text = doc.read_text() if doc.exists() else ""
        begin, end = "<!-- eval:begin -->", "<!-- eval:end -->"
        if begin in text and end in text:
            text = text.split(begin)[0] + begin + "\n" + md + end + text.split(end, 1)[1]
        else:
            text += f"\n{begin}\n{md}{end}\n"
        doc.write_text(text)
    return res

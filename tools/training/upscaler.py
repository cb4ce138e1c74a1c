"""A small upscaler trained here, so that tests check what an upscaler model *does*.

Real-ESRGAN's Compact architecture (spandrel's SRVGGNetCompact, the family users download
as ``realesr-general-x4v3``), shrunk to 16 features and 4 convolutions, ×2. It learns to
undo a 2× downscale on pictures of flat shapes with sharp edges over thin lines
(``backend.quality.test_picture``): what Lanczos leaves soft. Held-out pictures score it
against Lanczos (PSNR and the fine-structure correlation); the file is written with
safetensors under the key names spandrel recognises, as users' files have them.

Seeded; ``python -m tools.training upscaler`` rebuilds ``samples/upscalers/pb-compact-x2``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
OUT = HERE.parents[1] / "samples" / "upscalers"
NAME = "pb-compact-x2"
CROP = 64


def _pictures(seeds: range, side: int = 256) -> list[np.ndarray]:
    from tools.quality import test_picture

    rng = np.random.default_rng(seeds.start)
    out = []
    for s in seeds:   # line spacing and width vary, so the net learns edges, not one grid
        pic = test_picture(side, seed=s)[..., :3]
        if rng.random() < 0.5:
            pic = np.ascontiguousarray(pic.transpose(1, 0, 2))
        out.append(pic)
    return out


def _downscale(hr: torch.Tensor) -> torch.Tensor:
    """What the upscaler is given: the picture at half size (bicubic, antialiased)."""
    h, w = hr.shape[-2:]
    return F.interpolate(hr, size=(h // 2, w // 2), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1)


def _lanczos(lr: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = lr.shape[:2]
    return np.asarray(Image.fromarray(lr).resize((w * 2, h * 2), Image.Resampling.LANCZOS))


def make_model() -> torch.nn.Module:
    from paintbridge.backend.models import upscalers

    spandrel = upscalers._spandrel()
    compact = spandrel.architectures.Compact.Compact
    return compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=2,
                   act_type="prelu")


def train(steps: int = 800, batch: int = 16, seed: int = 11) -> tuple[torch.nn.Module, list]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = [torch.from_numpy(p).permute(2, 0, 1).float() / 255.0 for p in _pictures(range(40))]
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    curve = []
    for step in range(steps):
        crops = []
        for _ in range(batch):
            pic = data[rng.integers(len(data))]
            y, x = (int(v) for v in rng.integers(0, pic.shape[-1] - CROP, 2))
            crops.append(pic[:, y:y + CROP, x:x + CROP])
        hr = torch.stack(crops)
        loss = F.l1_loss(model(_downscale(hr)), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            curve.append([step, round(float(loss), 5)])
    return model.eval(), curve


def evaluate(path: Path) -> dict[str, Any]:
    """The saved file through the daemon's own loader, against Lanczos, on held-out
    pictures."""
    from paintbridge.backend.models import upscalers
    from tools import quality

    model = upscalers.load(path)
    scores: dict[str, list[float]] = {"psnr_model": [], "psnr_lanczos": [],
                                      "detail_model": [], "detail_lanczos": []}
    for pic in _pictures(range(1000, 1008)):
        hr = torch.from_numpy(pic).permute(2, 0, 1)[None].float() / 255.0
        lr = np.rint(_downscale(hr)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        truth = pic / 255.0
        for label, up in (("model", upscalers.upscale(model, lr)), ("lanczos", _lanczos(lr))):
            scores[f"psnr_{label}"].append(quality.psnr(up / 255.0, truth))
            scores[f"detail_{label}"].append(quality.detail(up / 255.0, truth, radius=1))
    return {k: round(float(np.mean(v)), 4) for k, v in scores.items()}


def main(out: Path = OUT, steps: int = 800) -> dict[str, Any]:
    from safetensors.torch import save_file

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    model, curve = train(steps)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"architecture": "SRVGGNetCompact", "scale": "2",
                        "trained_by": "tools/training/upscaler.py"})
    result = {"steps": steps, "seconds": round(time.time() - t0, 1), "curve": curve,
              "eval": evaluate(path)}
    (out / f"{NAME}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result

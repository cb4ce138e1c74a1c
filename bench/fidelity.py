"""Do no harm: the daemon's image to image against the bare diffusers call of the same model
at full resolution, on the same picture, side by side in one run.

Why: low strength is how artists polish ("refine at 0.1–0.3"); at that strength a tool must
never make the picture worse than the model itself would. The reference is no code of ours:
the model's own pipeline (diffusers' inpainting pipeline of the embedded 9-channel model,
full mask = image to image), called once on the whole picture at its own size, same seed,
steps, guidance, scheduler and dtype. The daemon gets the same picture as one img2img job.

Measured against the source (tools/quality): PSNR and SSIM, edge steepness kept on the
source's edges, texture on the source's flat areas (a tile grid shows here), colour drift.
Pictures: flat coloured shapes (the embedded model's world) and a photo no one here took
(scikit-learn's sample ``china.jpg``). Targets, per case: PSNR within 1 dB of the bare
call, edges ≥ 0.9× its steepness, flat texture ≤ 1.5× its own. The pictures are saved side
by side (source | bare | daemon) under the results folder: look at them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from typing import Any  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402
from tools import quality  # noqa: E402

MODEL_DIR = common.REPO / "backend" / "default_model"
SEED, STEPS, GUIDANCE = 7, 20, 3.0
PROMPT = ""
PICTURES = {"shapes": quality.flat_shapes, "photo": quality.sample_photo}
STRENGTHS = (0.1, 0.3, 0.6)
#: (side, extra params): 512² and 1024² run whole (one call, as the bare call does); then
#: 1024² again in 256-px tiles (a tile size asked for means tiles: the path of regions
#: beyond 1024²), against the same bare call, which still fits here
CASES: tuple[tuple[int, dict[str, Any]], ...] = ((512, {}), (1024, {}),
                                                 (1024, {"tile_size": 256}))
#: strengths of the tiled rows: above COMPOSE_ABOVE a tiled job has a composition pass
TILED_STRENGTHS = (0.1, 0.3)
PSNR_MARGIN_DB, EDGE_KEPT, FLAT_MAX = 1.0, 0.9, 1.5


def load_bare() -> Any:
    import diffusers
    import torch

    pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(
        str(MODEL_DIR), torch_dtype=torch.float32, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def bare_call(pipe: Any, picture: np.ndarray, strength: float) -> np.ndarray:
    import torch

    side = picture.shape[0]
    image = torch.from_numpy(picture[..., :3].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        out = pipe(prompt=PROMPT, image=image, mask_image=torch.ones((1, 1, side, side)),
                   height=side, width=side, strength=strength, num_inference_steps=STEPS,
                   guidance_scale=GUIDANCE, output_type="np",
                   generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
    return np.clip(out, 0, 1)


def daemon_call(client: Client, picture: np.ndarray, strength: float,
                extra: dict[str, Any]) -> np.ndarray:
    side = picture.shape[0]
    job = client.wait(client.submit(JobRequest(
        "img2img", {"prompt": PROMPT, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
                    "strength": strength, **extra},
        image=Frame(side, side, "rgba8", picture.tobytes()))), timeout=1800)
    if job.state is not JobState.DONE:
        raise RuntimeError(f"job failed: {job.error_code} {job.error_message}")
    return quality.placed(job.patches[0], side, side)[..., :3]


def measures(result: np.ndarray, source: np.ndarray) -> dict[str, float]:
    return {"psnr": quality.psnr(result, source), "ssim": quality.ssim(result, source),
            "edges": quality.edge_steepness(result, source),
            "flat": quality.flat_texture(result, source),
            "drift": quality.colour_drift(result, source)}


def save_side_by_side(path: Path, *images: np.ndarray) -> None:
    from PIL import Image

    row = np.concatenate([np.rint(np.clip(i[..., :3], 0, 1) * 255).astype(np.uint8)
                          for i in images], axis=1)
    Image.fromarray(row).save(path)


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0])
    pictures_dir = args.out / "fidelity"
    pictures_dir.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)   # like with like: the daemon runs on one thread too
    pipe = load_bare()
    rows: list[Row] = []
    cases = []
    with common.daemon("--threads", "1") as d, Client(d.endpoint) as client:
        for side, extra in CASES[:1] if args.quick else CASES:
            for name, make in PICTURES.items():
                source8 = make(side)
                source = source8[..., :3].astype(np.float32) / 255
                for strength in TILED_STRENGTHS if extra else STRENGTHS:
                    bare = bare_call(pipe, source8, strength)
                    ours = daemon_call(client, source8, strength, extra)
                    b, o = measures(bare, source), measures(ours, source)
                    tag = "-tiled" if extra else ""
                    save_side_by_side(pictures_dir / f"{name}-{side}-{strength:g}{tag}.png",
                                      source, bare, ours)
                    ok = (o["psnr"] >= b["psnr"] - PSNR_MARGIN_DB
                          and o["edges"] >= EDGE_KEPT * b["edges"]
                          and o["flat"] <= FLAT_MAX * max(b["flat"], 0.5))
                    label = f"{name} {side}² s={strength:g}{' tiled' if extra else ''}"
                    rows.append(Row(f"{label}: PSNR dB daemon / bare",
                                    f"{o['psnr']:.1f} / {b['psnr']:.1f}",
                                    f">= bare-{PSNR_MARGIN_DB:g}", ok))
                    rows.append(Row(f"{label}: edges kept daemon / bare",
                                    f"{o['edges']:.2f} / {b['edges']:.2f}"))
                    rows.append(Row(f"{label}: flat texture daemon / bare",
                                    f"{o['flat']:.2f} / {b['flat']:.2f}"))
                    rows.append(Row(f"{label}: colour drift daemon / bare",
                                    f"{o['drift']:.1f} / {b['drift']:.1f}"))
                    cases.append({"picture": name, "side": side, "strength": strength,
                                  "daemon": o, "bare": b, "pass": ok})
                    print(label, "daemon", o, "bare", b, flush=True)
    common.print_table("fidelity: daemon vs the bare full-resolution call", rows)
    common.write_json(args.out, "fidelity", {"cases": cases, "machine": common.machine()},
                      rows)


if __name__ == "__main__":
    main()

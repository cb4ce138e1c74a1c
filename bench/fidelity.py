"""Do no harm: the daemon's image to image against the bare diffusers call of the same model
at full resolution, on the same picture, side by side in one run.

Why: low strength is how artists polish ("refine at 0.1–0.3"); at that strength a tool must
never make the picture worse than the model itself would. The reference is no code of ours:
the model's own pipeline (diffusers' inpainting pipeline of the embedded 9-channel model,
full mask = image to image), called once on the whole picture at its own size, same seed,
steps, guidance, scheduler and dtype. The daemon gets the same picture as one img2img job.
Inpainting at low strength (polishing a selection) is measured the same way inside the
selection, against the bare inpainting call pasted inside its mask.

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

from paintbridge.backend.jobs import seams  # noqa: E402
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402
from tools import bare, quality  # noqa: E402

SEED, STEPS, GUIDANCE = 7, 20, 3.0
PROMPT = ""
PICTURES = {"shapes": quality.flat_shapes, "photo": quality.sample_photo}
STRENGTHS = (0.1, 0.3, 0.6)
#: (side, the daemon's --whole-max-pixels, the path): 512² and 1024² run whole (one call,
#: as the bare call does); 1024² again with the line at 512², so it takes the path of
#: regions beyond the line (2048², 4096² at the default): reduced, one call at 512² whose
#: change is carried up over the source — against the bare call at 1024², which still
#: fits here. (The bare call at 2048² takes over ten minutes a case on one thread: the
#: VAE's attention is quadratic.)
CASES: tuple[tuple[int, int | None, str], ...] = (
    (512, None, "whole"), (1024, None, "whole"), (1024, 512 * 512, "reduced"))
#: ``--large``: 2048² at the default line (reduced: one call at 1024²) against the bare
#: call at 2048², which fits in memory here but takes over ten minutes: one case
LARGE: tuple[int, int | None, str, str, float] = (2048, None, "reduced", "shapes", 0.3)
#: peak memory: the daemon's own peak (VmHWM, reset before each job), reduced at 4096²
#: against one call at 1024² (target: at most 1.3 ×)
MEMORY_SIDES, MEMORY_STRENGTH, MEMORY_MAX = (1024, 4096), 0.3, 1.3


#: inpainting at low strength (polishing a selection: a centred square of half the side),
#: measured inside the selection's box, against the bare inpainting call pasted inside the
#: mask; (side, --whole-max-pixels, the path)
INPAINT_CASES: tuple[tuple[int, int | None, str], ...] = (
    (512, None, "whole"), (512, 256 * 256, "reduced"))
INPAINT_STRENGTHS = (0.3, 0.6)


def daemon_call(client: Client, picture: np.ndarray, strength: float,
                mask: np.ndarray | None = None) -> np.ndarray:
    """The daemon's result over the source (uint8 (h, w, 4)), (h, w, 3) in 0..1."""
    side = picture.shape[0]
    job = client.wait(client.submit(JobRequest(
        "inpaint" if mask is not None else "img2img",
        {"prompt": PROMPT, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE,
         "strength": strength},
        image=Frame(side, side, "rgba8", picture.tobytes()),
        mask=Frame(side, side, "gray8", mask.tobytes()) if mask is not None else None)),
        timeout=3600)
    if job.state is not JobState.DONE:
        raise RuntimeError(f"job failed: {job.error_code} {job.error_message}")
    patch = quality.placed(job.patches[0], side, side)
    return seams.composite(picture[..., :3].astype(np.float32) / 255, patch[..., :3],
                           patch[..., 3])


def peak_rss(pid: int, reset: bool = False) -> int:
    """The process's peak resident memory in bytes (VmHWM); ``reset`` starts it again
    from what it holds now (Linux's clear_refs 5)."""
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def save_side_by_side(path: Path, *images: np.ndarray) -> None:
    from PIL import Image

    row = np.concatenate([np.rint(np.clip(i[..., :3], 0, 1) * 255).astype(np.uint8)
                          for i in images], axis=1)
    Image.fromarray(row).save(path)


def quality_rows(args: Any, pipe: Any, pictures_dir: Path) -> tuple[list[Row], list[dict]]:
    rows: list[Row] = []
    cases: list[dict] = []
    references: dict[tuple[str, int, float], np.ndarray] = {}   # the bare call, once each
    runs = [(side, whole_max, path, tuple(PICTURES), STRENGTHS)
            for side, whole_max, path in (CASES[:1] if args.quick else CASES)]
    if args.large:
        side, whole_max, path, picture, strength = LARGE
        runs.append((side, whole_max, path, (picture,), (strength,)))
    for side, whole_max, path, names, strengths in runs:
        flags = ("--whole-max-pixels", str(whole_max)) if whole_max else ()
        with common.daemon("--threads", "1", *flags) as d, Client(d.endpoint) as client:
            for name in names:
                source8 = PICTURES[name](side)
                source = source8[..., :3].astype(np.float32) / 255
                for strength in strengths:
                    key = (name, side, strength)
                    if key not in references:
                        references[key] = bare.call(pipe, source8, strength, seed=SEED,
                                                    steps=STEPS, guidance=GUIDANCE,
                                                    prompt=PROMPT)
                    ref = references[key]
                    ours = daemon_call(client, source8, strength)
                    b, o = bare.measures(ref, source), bare.measures(ours, source)
                    missed = bare.failures(o, b)
                    tag = "" if path == "whole" else f"-{path}"
                    save_side_by_side(pictures_dir / f"{name}-{side}-{strength:g}{tag}.png",
                                      source, ref, ours)
                    label = f"{name} {side}² s={strength:g} {path}"
                    rows.append(Row(f"{label}: PSNR dB daemon / bare",
                                    f"{o['psnr']:.1f} / {b['psnr']:.1f}",
                                    "all targets", not missed))
                    rows.append(Row(f"{label}: edges kept daemon / bare",
                                    f"{o['edges']:.2f} / {b['edges']:.2f}"))
                    rows.append(Row(f"{label}: flat texture daemon / bare",
                                    f"{o['flat']:.2f} / {b['flat']:.2f}"))
                    rows.append(Row(f"{label}: colour drift daemon / bare",
                                    f"{o['drift']:.1f} / {b['drift']:.1f}"))
                    cases.append({"picture": name, "side": side, "strength": strength,
                                  "path": path, "daemon": o, "bare": b, "missed": missed})
                    print(label, "daemon", o, "bare", b, missed, flush=True)
    return rows, cases


def inpaint_rows(pipe: Any, pictures_dir: Path) -> tuple[list[Row], list[dict]]:
    rows: list[Row] = []
    cases: list[dict] = []
    for side, whole_max, path in INPAINT_CASES:
        lo, hi = side // 4, 3 * side // 4
        mask = np.zeros((side, side), np.uint8)
        mask[lo:hi, lo:hi] = 255
        inside = mask.astype(np.float32) / 255
        flags = ("--whole-max-pixels", str(whole_max)) if whole_max else ()
        with common.daemon("--threads", "1", *flags) as d, Client(d.endpoint) as client:
            for name, make in PICTURES.items():
                source8 = make(side)
                source = source8[..., :3].astype(np.float32) / 255
                for strength in INPAINT_STRENGTHS:
                    ref = bare.call(pipe, source8, strength, seed=SEED, steps=STEPS,
                                    guidance=GUIDANCE, prompt=PROMPT, mask=mask)
                    ref = seams.composite(source, ref, inside)
                    ours = daemon_call(client, source8, strength, mask)
                    b = bare.measures(ref[lo:hi, lo:hi], source[lo:hi, lo:hi])
                    o = bare.measures(ours[lo:hi, lo:hi], source[lo:hi, lo:hi])
                    missed = bare.failures(o, b)
                    save_side_by_side(pictures_dir / f"inpaint-{name}-{side}-{strength:g}-"
                                      f"{path}.png", source, ref, ours)
                    label = f"inpaint {name} {side}² s={strength:g} {path}"
                    rows.append(Row(f"{label}: PSNR dB / edges / flat, daemon | bare",
                                    f"{o['psnr']:.1f} / {o['edges']:.2f} / {o['flat']:.2f} | "
                                    f"{b['psnr']:.1f} / {b['edges']:.2f} / {b['flat']:.2f}",
                                    "all targets", not missed))
                    cases.append({"kind": "inpaint", "picture": name, "side": side,
                                  "strength": strength, "path": path, "daemon": o,
                                  "bare": b, "missed": missed})
                    print(label, "daemon", o, "bare", b, missed, flush=True)
    return rows, cases


def memory_rows() -> tuple[list[Row], dict[int, int]]:
    """One daemon; its peak reset before each job: whole at 1024², reduced at 4096²."""
    peaks: dict[int, int] = {}
    with common.daemon("--threads", "1") as d, Client(d.endpoint) as client:
        for side in MEMORY_SIDES:
            picture = quality.flat_shapes(side)
            peak_rss(d.proc.pid, reset=True)
            daemon_call(client, picture, MEMORY_STRENGTH)
            peaks[side] = peak_rss(d.proc.pid)
    small, large = MEMORY_SIDES
    grow = peaks[large] / peaks[small]
    rows = [Row(f"peak RSS during a job at {side}²", f"{peaks[side] / 2**20:.0f} MiB")
            for side in MEMORY_SIDES]
    rows.append(Row(f"peak {large}² (reduced) / {small}² (whole)", common.ratio(grow),
                    f"<= {MEMORY_MAX:g}x", grow <= MEMORY_MAX))
    return rows, peaks


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], options=lambda p: p.add_argument(
        "--large", action="store_true", help="also 2048² against the bare call at 2048² "
        "(one case, over ten minutes on one thread)"))
    pictures_dir = args.out / "fidelity"
    pictures_dir.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)   # like with like: the daemon runs on one thread too
    pipe = bare.load()
    rows, cases = quality_rows(args, pipe, pictures_dir)
    peaks: dict[int, int] = {}
    if not args.quick:
        more, inpaint_cases = inpaint_rows(pipe, pictures_dir)
        rows += more
        cases += inpaint_cases
        memory, peaks = memory_rows()
        rows += memory
    common.print_table("fidelity: daemon vs the bare full-resolution call", rows)
    common.write_json(args.out, "fidelity", {"cases": cases, "peak_rss": peaks,
                                             "machine": common.machine()}, rows)


if __name__ == "__main__":
    main()

"""Overhead: one inpaint job end to end through the daemon vs the bare diffusers call.

Why: everything paintbridge adds around the pipeline (protocol checks, queue, frame decode,
selection alpha, per-step progress events, patch encoding, ZeroMQ both ways) must cost next
to nothing next to the denoising itself. Both sides run the same tiny 9-channel model, at
the same size, steps, seed, guidance and scheduler, with one torch thread and the dtype the
daemon reports in ``hello``; runs are interleaved so both see the same machine load.

The daemon's colour matching (on by default) is off here: the bare call has none, so both
sides compute the same thing and the patch must be the bare output's exact pixels.

Tiny models make the fixed per-job costs look large (a 20-step call takes ~0.4 s), so
heavier settings (more steps, a bigger model size) are measured as well.

The target is checked on the median of per-pair ratios (each daemon job against the bare
call run right next to it), which cancels the load drift of a shared machine; the ratio of
the two medians is reported too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402
from tools import bare as reference  # noqa: E402

TARGET = 1.05
PROMPT = "a weathered stone wall with moss"
SEED = 1234
GUIDANCE = 7.0


@dataclass(frozen=True)
class Setting:
    label: str
    model: str
    side: int      # region side = model size (no scaling either way)
    steps: int
    reps: int
    quick_reps: int


SETTINGS = (
    Setting("64² 20 steps", "tiny-inpainting", 64, 20, 20, 4),
    Setting("64² 50 steps", "tiny-inpainting", 64, 50, 10, 2),
    Setting("128² 20 steps", "tiny-inpainting-128", 128, 20, 8, 2),
)


def inputs(side: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like region and a hard square selection in its middle."""
    pixels = common.photo_like(side, side, seed=side)
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4:3 * side // 4, side // 4:3 * side // 4] = 255
    return pixels, mask


def load_bare(model_dir: Path, dtype_name: str) -> Any:
    """The same folder, loaded as the daemon's registry loads it (dtype, channels_last)."""
    return reference.load(model_dir, dtype_name, channels_last_unet=True)


def bare_call(pipe: Any, pixels: np.ndarray, mask: np.ndarray, steps: int) -> np.ndarray:
    return reference.call(pipe, pixels, 1.0, seed=SEED, steps=steps, guidance=GUIDANCE,
                     prompt=PROMPT, mask=mask)


def daemon_job(client: Client, s: Setting, pixels: np.ndarray, mask: np.ndarray) -> Any:
    side = s.side
    # like with like: the bare call matches no colours, so the daemon's matching is off
    job = client.submit(JobRequest("inpaint", {"model": s.model, "prompt": PROMPT, "steps": s.steps,
                                    "seed": SEED, "guidance": GUIDANCE, "colour_match": "off"},
                                   image=Frame(side, side, "rgba8", pixels.tobytes()),
                                   mask=Frame(side, side, "gray8", mask.tobytes())))
    client.wait(job, timeout=300)
    if job.state is not JobState.DONE:
        raise RuntimeError(f"job failed: {job.error_code} {job.error_message}")
    return job


def same_pixels(job: Any, bare: np.ndarray) -> int:
    """Max difference (0..255) between the daemon's patch and the bare output under it."""
    (p,) = job.patches
    px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4)
    ref = np.rint(np.clip(bare, 0, 1) * 255).astype(np.int16)[p.y:p.y + p.height,
                                                               p.x:p.x + p.width]
    inside = px[..., 3] == 255
    return int(np.abs(px[..., :3].astype(np.int16) - ref)[inside].max())


def bench_setting(client: Client, daemon_pid: int, pipe: Any, s: Setting, quick: bool
                  ) -> dict[str, Any]:
    pixels, mask = inputs(s.side)
    job = None
    for _ in range(2):  # warm-up: the first job loads the model, first calls allocate
        job = daemon_job(client, s, pixels, mask)
        bare = bare_call(pipe, pixels, mask, s.steps)
    diff = same_pixels(job, bare)
    e2e, bare_s, worker_s, e2e_cpu, bare_cpu = [], [], [], [], []

    def cpu() -> float:  # the daemon's CPU time plus ours (the client's side of the job)
        return common.process_cpu(daemon_pid) + common.process_cpu()

    for i in range(s.quick_reps if quick else s.reps):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
            if which == 0:
                c0 = cpu()
                t, job = common.timed(lambda: daemon_job(client, s, pixels, mask))
                e2e_cpu.append(cpu() - c0)
                e2e.append(t)
                worker_s.append(float(job.info.get("seconds", float("nan"))))
            else:
                c0 = common.process_cpu()
                bare_s.append(common.timed(lambda: bare_call(pipe, pixels, mask, s.steps))[0])
                bare_cpu.append(common.process_cpu() - c0)
    pair = [a / b for a, b in zip(e2e, bare_s, strict=True)]
    cpu_pair = [a / b for a, b in zip(e2e_cpu, bare_cpu, strict=True)]
    return {"setting": s.label, "model": s.model, "side": s.side, "steps": s.steps,
            "daemon_end_to_end": common.summary(e2e), "bare_pipeline": common.summary(bare_s),
            "daemon_worker_seconds": common.summary(worker_s),
            "daemon_plus_client_cpu": common.summary(e2e_cpu),
            "bare_cpu": common.summary(bare_cpu),
            "ratio_of_medians": common.median(e2e) / common.median(bare_s),
            "median_of_paired_ratios": common.median(pair),
            "cpu_median_of_paired_ratios": common.median(cpu_pair),
            "max_pixel_diff_vs_bare": diff}


def run(quick: bool) -> tuple[dict[str, Any], list[Row]]:
    import torch

    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="pb-bench-overhead-") as tmp:
        models = common.tiny_model_dir(Path(tmp), native_sizes=(128,))
        with common.daemon("--models", str(models), "--no-embedded") as d, \
                Client(d.endpoint) as client:
            dtype = d.hello["dtype"]
            pipe = load_bare(models / "tiny-inpainting", dtype)
            for s in SETTINGS:
                print(f"overhead: {s.label} ...", flush=True)
                results.append(bench_setting(client, d.proc.pid, pipe, s, quick))
    rows: list[Row] = [Row("dtype (daemon = bare)", dtype),
                       Row("torch threads (daemon = bare)", "1")]
    for r in results:
        paired = r["median_of_paired_ratios"]
        rows += [
            Row(f"{r['setting']}: daemon end to end", common.ms(r["daemon_end_to_end"]
                                                              ["median_s"])),
            Row(f"{r['setting']}: bare pipeline call", common.ms(r["bare_pipeline"]
                                                                ["median_s"])),
            Row(f"{r['setting']}: daemon/bare (paired)", common.ratio(paired),
                f"<= {TARGET:g}x", paired <= TARGET),
            Row(f"{r['setting']}: daemon/bare (of medians)",
                common.ratio(r["ratio_of_medians"])),
            Row(f"{r['setting']}: CPU time daemon+client/bare (paired)",
                common.ratio(r["cpu_median_of_paired_ratios"])),
            Row(f"{r['setting']}: max pixel diff vs bare", str(r["max_pixel_diff_vs_bare"])),
        ]
    return {"quick": quick, "dtype": dtype, "threads": 1, "settings": results}, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("overhead (N interleaved pairs)", rows)
    print(f"wrote {common.write_json(args.out, 'overhead', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

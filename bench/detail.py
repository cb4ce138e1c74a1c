"""Detail, memory, time and seams on a real canvas, side by side in one run.

Why: artists' regions are far larger than a model's native size. Scaled down to it and back
(``refine`` off, what paintbridge did before), a result comes back soft; painted at full
resolution (``refine`` on, the default: one call or tiles, backend/jobs/paths.py) it keeps
the source's fine structure. Every figure comes from a real daemon running the embedded
model (native size 64).

(a) What a result keeps of the source, against the bare diffusers call at full resolution,
    is bench/fidelity.py's (this file once measured a "fine-structure correlation" that
    rose while the picture got worse).
(b) Peak RSS of a fresh daemon per region size (VmHWM), with SD1.5-sized tiles (512 px,
    as a user's model would run) so that the tile count is a real one. Target: 4096² at
    most 1.3x the peak of 1024².
(c) Seconds per megapixel for the same runs.
(d) Seams: the step across a selection's edge against the picture's own step just outside
    (backend/jobs/seams.seam_ratio), colour matching off (before) and on (the default), on a soft
    gradient and a photo-like picture, image to image at low strength and inpainting with a
    prompt that keeps the background. Target: matching at least halves the ratio, or brings
    it to 1.2 or below where the picture's own texture already hides the edge.
(e) Upscale jobs (×2, refined in SD-sized 512-px tiles): peak RSS of a fresh daemon and
    seconds per output megapixel, by output size. Target: the largest output's peak at most
    1.3x the smallest's.
(f) Soft selections (``soft_edges``): the result's change against the source in eight bands
    across a selection that rises from 0 to 1, averaged over the seeds; the largest step
    between neighbouring bands, all-or-nothing mask (off) against differential diffusion
    (on). Target: on at most 0.6x off.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.backend.jobs import seams
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402
from tools import quality

SIDE = 192
SEL = (64, 128)   # the selection: a square from SEL[0] to SEL[1] on both axes


def pictures() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    grad = np.stack([(90 + 40 * xx / SIDE) / 255, (120 + 20 * yy / SIDE) / 255,
                     np.full_like(xx, 170 / 255)], -1)
    photo = common.photo_like(SIDE, SIDE, seed=3)[..., :3].astype(np.float32) / 255
    return {"gradient": grad, "photo-like": photo}


def selection() -> np.ndarray:
    m = np.zeros((SIDE, SIDE), np.float32)
    m[SEL[0]:SEL[1], SEL[0]:SEL[1]] = 1
    return m


def seam(client: Client, src: np.ndarray, kind: str, params: dict) -> float:
    src8 = np.rint(src * 255).astype(np.uint8)
    img = np.concatenate([src8, np.full((SIDE, SIDE, 1), 255, np.uint8)], -1)
    sel = selection()
    job = client.submit(JobRequest(kind, {"grow": 4, "feather": 4, **params},
                                   image=Frame(SIDE, SIDE, "rgba8", img.tobytes()),
                                   mask=Frame(SIDE, SIDE, "gray8",
                                              (sel * 255).astype(np.uint8).tobytes())))
    client.wait(job, timeout=300)
    assert job.state is JobState.DONE, job.error_message
    p = job.patches[0]
    px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4) / 255.0
    full = np.zeros((SIDE, SIDE, 4))
    full[p.y:p.y + p.height, p.x:p.x + p.width] = px
    return seams.seam_ratio(seams.composite(src8 / 255.0, full[..., :3], full[..., 3]), sel)


CASES = (("img2img 0.3", "img2img", {"prompt": "", "strength": 0.3}),
         ("img2img 0.6", "img2img", {"prompt": "", "strength": 0.6}),
         ("inpaint, background prompt", "inpaint", {"prompt": "a blue background"}))


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def memory_and_time(sizes: tuple[int, ...]) -> tuple[dict, list[Row]]:
    """One fresh daemon per (size, refine): its peak RSS and the job's time."""
    data: dict = {}
    for side in sizes:
        picture = common.photo_like(side, side, seed=1)
        for refine in ("off", "on"):
            with common.daemon() as d, Client(d.endpoint) as client:
                idle = _hwm(d.proc.pid)
                t0 = time.perf_counter()
                job = client.wait(client.submit(
                    JobRequest("img2img", {"prompt": "", "seed": 1, "strength": 0.3, "steps": 8,
                                "refine": refine, "tile_size": 512},
                    image=Frame(side, side, "rgba8", picture.tobytes()))), 3600)
                seconds = time.perf_counter() - t0
                assert job.state is JobState.DONE, job.error_message
                data.setdefault(side, {})[refine] = {
                    "peak_rss": _hwm(d.proc.pid), "idle_rss": idle, "seconds": seconds,
                    "seconds_per_mp": seconds / (side * side / 1e6)}
    rows = []
    small, large = min(sizes), max(sizes)
    for refine in ("off", "on"):
        for side in sizes:
            r = data[side][refine]
            rows.append(Row(f"refine {refine}: {side}² peak RSS, s/MP",
                            f"{r['peak_rss'] / 2**20:.0f} MiB, {r['seconds_per_mp']:.2f} s"))
        grow = data[large][refine]["peak_rss"] / data[small][refine]["peak_rss"]
        rows.append(Row(f"refine {refine}: peak {large}² / {small}²", common.ratio(grow),
                        "<= 1.3x" if refine == "on" else "", grow <= 1.3 if refine == "on"
                        else None))
    return data, rows


def upscale_memory(outputs: tuple[int, ...]) -> tuple[dict, list[Row]]:
    """One fresh daemon per output size: an upscale ×2 refined in 512-px tiles."""
    data: dict = {}
    for out in outputs:
        side = out // 2
        picture = common.photo_like(side, side, seed=2)
        with common.daemon() as d, Client(d.endpoint) as client:
            t0 = time.perf_counter()
            job = client.wait(client.submit(
                JobRequest("upscale", {"prompt": "", "seed": 1, "steps": 4, "tile_size": 512},
                image=Frame(side, side, "rgba8", picture.tobytes()), scale=2)), 3600)
            seconds = time.perf_counter() - t0
            assert job.state is JobState.DONE, job.error_message
            data[out] = {"peak_rss": _hwm(d.proc.pid), "seconds": seconds,
                         "seconds_per_mp": seconds / (out * out / 1e6)}
    rows = [Row(f"upscale x2 to {out}²: peak RSS, s/MP",
                f"{r['peak_rss'] / 2**20:.0f} MiB, {r['seconds_per_mp']:.2f} s")
            for out, r in data.items()]
    grow = data[max(outputs)]["peak_rss"] / data[min(outputs)]["peak_rss"]
    rows.append(Row(f"upscale: peak {max(outputs)}² / {min(outputs)}²", common.ratio(grow),
                    "<= 1.3x", grow <= 1.3))
    return data, rows


def soft_selection(client: Client, seeds: tuple[int, ...]) -> tuple[dict, list[Row]]:
    """Change by band across a 0→1 selection on a 64-px region, soft_edges off and on."""
    side = 64
    picture = quality.smooth_picture(side)
    ramp = quality.ramp_selection(side)
    bands: dict = {}
    for soft in ("off", "on"):
        runs = []
        for seed in seeds:
            job = client.wait(client.submit(
                JobRequest("inpaint",
                           {"prompt": "a red circle", "seed": seed, "grow": 0, "feather": 0,
                            "soft_edges": soft, "colour_match": "off"},
                image=Frame(side, side, "rgba8", picture.tobytes()),
                mask=Frame(side, side, "gray8", ramp.tobytes()))), 600)
            assert job.state is JobState.DONE, job.error_message
            out = quality.placed(job.patches[0], side, side)
            runs.append(quality.change_by_band(out, picture / 255.0))
        bands[soft] = np.mean(runs, axis=0).tolist()
    jumps = {k: float(np.diff(v).max()) for k, v in bands.items()}
    rows = [Row("soft selection: largest step in change, off -> on",
                f"{jumps['off']:.3f} -> {jumps['on']:.3f} "
                f"({jumps['on'] / jumps['off']:.2f}x)", "<= 0.6x",
                jumps["on"] <= 0.6 * jumps["off"])]
    return {"bands": bands, "jumps": jumps}, rows


def run(quick: bool) -> tuple[dict, list[Row]]:
    seeds = (1, 2) if quick else (1, 2, 3, 4, 5, 6)
    data: dict = {"quick": quick, "side": SIDE, "selection": SEL, "seeds": seeds,
                  "seams": {}}
    rows = []
    mem, mem_rows = memory_and_time((1024, 2048) if quick else (1024, 2048, 4096))
    data["memory"] = mem
    data["upscale"], up_rows = upscale_memory((512, 1024) if quick else (1024, 2048))
    mem_rows += up_rows
    with common.daemon() as d, Client(d.endpoint) as client:
        rows += mem_rows
        for pname, src in pictures().items():
            data["seams"][pname] = {"source": seams.seam_ratio(src, selection())}
            for label, kind, params in CASES:
                r = {cm: [seam(client, src, kind, {**params, "seed": s, "colour_match": cm})
                          for s in seeds] for cm in ("off", "on")}
                data["seams"][pname][label] = r
                off, on = float(np.mean(r["off"])), float(np.mean(r["on"]))
                rows.append(Row(f"{pname}, {label}: seam off -> on",
                                f"{off:.1f} -> {on:.1f} ({on / off:.2f}x)",
                                "<= 0.5x or <= 1.2", on <= 0.5 * off or on <= 1.2))
        data["soft_selection"], soft_rows = soft_selection(client, seeds[:3])
        rows += soft_rows
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("Full-resolution detail, memory, time; seams (step across the "
                       "selection's edge / the picture's own; 1 = invisible)", rows)
    print(f"wrote {common.write_json(args.out, 'detail', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

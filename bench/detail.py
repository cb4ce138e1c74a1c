"""Detail, memory, time and seams on a real canvas, side by side in one run.

Why: artists' regions are far larger than a model's native size. Scaled down to it and back
(``refine`` off, what paintbridge did before), a result comes back soft; refined at full
resolution in tiles (``refine`` on, the default, backend/jobs/tiling.py) it keeps the source's
fine structure. Every figure comes from a real daemon running the embedded model (native
size 64), so "2x, 4x, 8x the native side" are regions of 128, 256 and 512 px.

(a) Detail kept: image to image at strength 0.15 on a picture of sharp shapes over 2-px
    lines (tools/quality.test_picture); the fine-structure correlation with the source
    (tools/quality.detail: ~0 when the lines are blurred away; the embedded VAE alone
    reaches about 0.2 at 256 px), SSIM and PSNR (both dominated by the tiny VAE's colour
    shift), and the tile seam ratio (step across tile boundaries / step anywhere; 1 =
    invisible). Target: detail at least 0.1 above scale-and-back at every size, seam < 1.3.
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

from paintbridge.backend.jobs import grid, seams
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


def detail_kept(client: Client, sizes: tuple[int, ...]) -> tuple[dict, list[Row]]:
    data: dict = {}
    rows = []
    for side in sizes:
        picture = quality.test_picture(side)
        source = picture / 255.0
        got = {}
        for refine in ("off", "on"):
            job = client.wait(client.submit(
                JobRequest("img2img", {"prompt": "", "seed": 3, "strength": 0.15, "refine": refine},
                image=Frame(side, side, "rgba8", picture.tobytes()))), 1800)
            assert job.state is JobState.DONE, job.error_message
            p = job.patches[0]
            out = np.frombuffer(p.data, np.uint8).reshape(side, side, 4) / 255.0
            got[refine] = {"detail": quality.detail(out, source),
                           "ssim": quality.ssim(out, source),
                           "psnr": quality.psnr(out, source),
                           "seconds": float(job.info.get("seconds") or 0)}
            if refine == "on":
                tiles = grid.grid(side, side, 64, 16)
                xs = sorted({t.x + t.left // 2 for t in tiles if t.left})
                ys = sorted({t.y + t.top // 2 for t in tiles if t.top})
                got[refine]["tile_seam"] = quality.tile_seam_ratio(out, xs, ys)
        data[side] = got
        off, on = got["off"], got["on"]
        rows.append(Row(f"{side}² ({side // 64}x native) detail: scaled -> tiled",
                        f"{off['detail']:.3f} -> {on['detail']:.3f}", ">= +0.1",
                        on["detail"] >= off["detail"] + 0.1))
        rows.append(Row(f"{side}² SSIM / PSNR: scaled -> tiled",
                        f"{off['ssim']:.3f} -> {on['ssim']:.3f} / "
                        f"{off['psnr']:.1f} -> {on['psnr']:.1f} dB"))
        if len(tiles) > 1:
            rows.append(Row(f"{side}² tile seam ratio", f"{on['tile_seam']:.2f}", "< 1.3",
                            on["tile_seam"] < 1.3))
    return data, rows


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
        data["detail"], rows = detail_kept(client, (128, 256) if quick else (128, 256, 512))
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

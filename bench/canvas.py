"""Canvas independence: the same 256² selection inpainted on a 512² and an 8192² canvas.

Why: a job's cost must depend on the selection, never on the document's size. The client
does what a host does when the user presses generate: compute the job region from the
selection's bounds (plugin.region.job_region), read only that region of the layer and of
the selection (numpy slices of the canvas -> bytes, like Krita's pixelData(x, y, w, h)),
submit, and wait for the result. The timed span is exactly that, press to result.

The small canvas is the big one's crop around the selection, so both jobs send identical
bytes (only the offset differs) and must return identical patches.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState  # noqa: E402
from paintbridge.plugin.region import Rect, job_region  # noqa: E402

TARGET = 1.1
SMALL, BIG, SELECTION = 512, 8192, 256
# grow 0 + the automatic context padding (half the selection's side) make the region exactly
# 512², so the small canvas holds it whole and both canvases send identical bytes
STEPS, SEED, GROW, FEATHER = 20, 7, 0, 4
REPS, QUICK_REPS = 10, 3
PARAMS = {"model": "tiny-inpainting", "prompt": "a wooden door", "steps": STEPS,
          "seed": SEED, "grow": GROW, "feather": FEATHER}


@dataclass
class Canvas:
    """A host document: one RGBA8 layer and an 8-bit selection, plus the selection's bounds
    (hosts keep them; they never scan the mask to find them)."""

    layer: np.ndarray
    selection_mask: np.ndarray
    selection: Rect

    @property
    def bounds(self) -> Rect:
        return Rect(0, 0, self.layer.shape[1], self.layer.shape[0])


def canvases() -> tuple[Canvas, Canvas]:
    tile = common.photo_like(1024, 1024, seed=3)
    big = np.tile(tile, (BIG // 1024, BIG // 1024, 1))  # 256 MiB layer
    mask = np.zeros((BIG, BIG), np.uint8)
    at = (BIG - SELECTION) // 2
    mask[at:at + SELECTION, at:at + SELECTION] = 255
    mask[at:at + 3, at:at + SELECTION] = 128              # a soft edge, as hosts have
    big_canvas = Canvas(big, mask, Rect(at, at, SELECTION, SELECTION))
    # the small canvas: the big one's pixels around the selection, so the region matches
    region = job_region("inpaint", big_canvas.bounds, big_canvas.selection, None, GROW)
    assert (region.width, region.height) == (SMALL, SMALL), region
    x0, y0 = region.x, region.y
    small = np.ascontiguousarray(big[y0:y0 + SMALL, x0:x0 + SMALL])
    small_mask = np.ascontiguousarray(mask[y0:y0 + SMALL, x0:x0 + SMALL])
    sel = big_canvas.selection.translated(-x0, -y0)
    return Canvas(small, small_mask, sel), big_canvas


def generate(client: Client, canvas: Canvas) -> tuple[Job, Rect, float]:
    """What the plugin does on "generate"; returns the finished job, the region, and the
    seconds spent before the submit (region + crop extraction)."""
    t0 = time.perf_counter()
    region = job_region("inpaint", canvas.bounds, canvas.selection, None, GROW)
    ys, xs = slice(region.y, region.bottom), slice(region.x, region.right)
    image = Frame(region.width, region.height, "rgba8", canvas.layer[ys, xs].tobytes())
    mask = Frame(region.width, region.height, "gray8", canvas.selection_mask[ys, xs].tobytes())
    prep = time.perf_counter() - t0
    job = client.submit(JobRequest("inpaint", PARAMS, image=image, mask=mask,
                                   offset=(region.x, region.y), result_format="rgba8"))
    client.wait(job, timeout=300)
    if job.state is not JobState.DONE:
        raise RuntimeError(f"job failed: {job.error_code} {job.error_message}")
    return job, region, prep


def run(quick: bool) -> tuple[dict[str, Any], list[Row]]:
    small, big = canvases()
    times: dict[str, list[float]] = {"small": [], "big": []}
    preps: dict[str, list[float]] = {"small": [], "big": []}
    regions: dict[str, Rect] = {}
    patches: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pb-bench-canvas-") as tmp:
        models = common.tiny_model_dir(Path(tmp))
        with common.daemon("--models", str(models), "--no-embedded") as d, \
                Client(d.endpoint) as client:
            for canvas in (small, big, small, big):  # warm-up: the first job loads the model
                generate(client, canvas)
            print("canvas: 512² vs 8192² ...", flush=True)
            for i in range(QUICK_REPS if quick else REPS):
                order = (("small", small), ("big", big))
                for name, canvas in order if i % 2 == 0 else order[::-1]:
                    t, (job, region, prep) = common.timed(lambda c=canvas: generate(client, c))
                    times[name].append(t)
                    preps[name].append(prep)
                    regions[name] = region
                    patches[name] = job.patches[0]
    ps, pb = patches["small"], patches["big"]
    dx, dy = regions["big"].x - regions["small"].x, regions["big"].y - regions["small"].y
    identical = (bytes(ps.data) == bytes(pb.data) and (ps.x + dx, ps.y + dy) == (pb.x, pb.y)
                 and (ps.width, ps.height) == (pb.width, pb.height))
    med = {k: common.median(v) for k, v in times.items()}
    prep_med = {k: common.median(v) for k, v in preps.items()}
    pairs = [b / s for s, b in zip(times["small"], times["big"], strict=True)]
    r = common.median(pairs)  # each big job against the small one next to it: drift cancels
    rows = [
        Row("selection / region sent", f"{SELECTION}² / {regions['big'].width}x"
                                       f"{regions['big'].height}"),
        Row("512² canvas: press to result", common.ms(med["small"])),
        Row("8192² canvas: press to result", common.ms(med["big"])),
        Row("8192²/512² press to result (paired)", common.ratio(r), f"<= {TARGET:g}x",
            r <= TARGET),
        Row("8192²/512² press to result (of medians)", common.ratio(med["big"] / med["small"])),
        Row("512² canvas: region + crop", f"{prep_med['small'] * 1e6:.0f} us"),
        Row("8192² canvas: region + crop", f"{prep_med['big'] * 1e6:.0f} us"),
        Row("identical patches (same offset in region)", str(identical)),
    ]
    data = {"quick": quick, "selection": SELECTION, "canvases": [SMALL, BIG],
            "steps": STEPS, "model": PARAMS["model"],
            "region": {k: vars(v) for k, v in regions.items()},
            "press_to_result": {k: common.summary(v) for k, v in times.items()},
            "region_and_crop": {k: common.summary(v) for k, v in preps.items()},
            "ratio_big_over_small_paired": r,
            "ratio_big_over_small_of_medians": med["big"] / med["small"],
            "ratio_region_and_crop": prep_med["big"] / prep_med["small"],
            "identical_patches": identical}
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("canvas independence (median of N, interleaved)", rows)
    print(f"wrote {common.write_json(args.out, 'canvas', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

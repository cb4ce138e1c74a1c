"""What a control layer costs: a job with one and with two controls against the same job
without, interleaved in one run; and the preprocess request on large layers.

Why: a ControlNet runs beside the UNet at every step (its encoder copy, plus its
conditioning embedding), so its price is a multiple of the step time, not a constant; the
daemon must not add more than that. The daemon runs the embedded model with its shipped
scribble ControlNet. Timed: submit to result, text to image at 64² (the model's size),
20 steps; "per step" divides by the steps. The preprocessors (OpenCV) are timed through the
daemon's ``preprocess`` request on 1024² and 4096² layers, transfer included.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402

ROUNDS, QUICK_ROUNDS = 8, 2
SIDE, STEPS = 64, 20


def outline(side: int) -> Frame:
    """A square's outline, dark strokes on a transparent layer, as an artist draws it."""
    px = np.zeros((side, side, 4), np.uint8)
    a, b, t = side // 4, 3 * side // 4, max(2, side // 32)
    for ys, xs in ((slice(a, a + t), slice(a, b)), (slice(b - t, b), slice(a, b)),
                   (slice(a, b), slice(a, a + t)), (slice(a, b), slice(b - t, b))):
        px[ys, xs] = (20, 20, 20, 255)
    return Frame(side, side, "rgba8", px.tobytes())


def job(client: Client, controls: int) -> float:
    items = [{"type": "scribble"}, {"type": "scribble", "strength": 0.5}][:controls]
    params = {"prompt": "a red shape", "seed": 3, "steps": STEPS,
              **({"controls": items} if items else {})}

    def run() -> object:
        j = client.submit(JobRequest("txt2img", params, size=(SIDE, SIDE),
                                     controls=[outline(SIDE)] * controls))
        client.wait(j, timeout=300)
        assert j.state is JobState.DONE, j.error_message
        return j

    seconds, _ = common.timed(run)
    return seconds


def run(quick: bool) -> tuple[dict, list[Row]]:
    rounds = QUICK_ROUNDS if quick else ROUNDS
    times: dict[str, list[float]] = {"none": [], "one": [], "two": []}
    pre: dict[str, list[float]] = {}
    with common.daemon() as d, Client(d.endpoint) as client:
        client.hello()
        for n in (0, 1, 2):   # warm: the model and the ControlNet loaded
            job(client, n)
        for _ in range(rounds):
            for name, n in (("none", 0), ("one", 1), ("two", 2)):
                times[name].append(job(client, n))
        for side in ((1024,) if quick else (1024, 4096)):
            frame = outline(side)
            for name in ("scribble", "canny"):
                key = f"{name} {side}²"
                pre[key] = [common.timed(lambda f=frame, n=name: client.preprocess(f, n))[0]
                            for _ in range(3)]
    med = {k: common.median(v) for k, v in times.items()}
    rows = [Row(f"{k} control(s): submit to result", common.ms(v)) for k, v in med.items()]
    rows += [Row(f"{k} control(s): per step", common.ms(v / STEPS)) for k, v in med.items()]
    rows += [Row(f"{k} / none", common.ratio(med[k] / med["none"])) for k in ("one", "two")]
    rows += [Row(f"preprocess {k}", common.ms(common.median(v))) for k, v in pre.items()]
    data = {"quick": quick, "rounds": rounds, "steps": STEPS, "side": SIDE,
            "times": {k: common.summary(v) for k, v in times.items()},
            "ratios": {k: med[k] / med["none"] for k in med},
            "preprocess": {k: common.summary(v) for k, v in pre.items()}}
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("Control layer cost per job (median of N rounds, interleaved)", rows)
    print(f"wrote {common.write_json(args.out, 'controls', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a LoRA costs per job: the first job with a new LoRA, a repeat, and the job after
switching back to none, each against the bare model, interleaved in one run.

Why: LoRAs are loaded once per model and switched per job (docs/daemon.md); a repeat must
cost about what a bare job costs, and switching back to none must cost nothing. The daemon
runs the embedded model with the LoRA trained for it (samples/loras/gray.safetensors);
every round uses a fresh copy of the file under a new name, so its first job really loads it.
Timed: submit to result, inpaint of a 32² selection on a 64² canvas, 20 steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shutil  # noqa: E402
import tempfile  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402

LORA = common.REPO / "samples" / "loras" / "gray.safetensors"
ROUNDS, QUICK_ROUNDS = 8, 2
SIDE = 64


def job(client: Client, loras: list[dict] | None) -> float:
    img = np.full((SIDE, SIDE, 4), 245, np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[16:48, 16:48] = 255
    params = {"prompt": "a gray circle", "seed": 3, "steps": 20, **({"loras": loras}
                                                                  if loras else {})}

    def run() -> object:
        j = client.submit(JobRequest("inpaint", params,
                                     image=Frame(SIDE, SIDE, "rgba8", img.tobytes()),
                                     mask=Frame(SIDE, SIDE, "gray8", mask.tobytes())))
        client.wait(j, timeout=300)
        assert j.state is JobState.DONE, j.error_message
        return j

    seconds, _ = common.timed(run)
    return seconds


def run(quick: bool) -> tuple[dict, list[Row]]:
    rounds = QUICK_ROUNDS if quick else ROUNDS
    times: dict[str, list[float]] = {"bare": [], "first": [], "repeat": [], "none_after": []}
    with tempfile.TemporaryDirectory(prefix="pb-bench-lora-") as tmp:
        folder = Path(tmp) / "loras"
        folder.mkdir()
        for i in range(rounds + 1):
            shutil.copy(LORA, folder / f"gray-{i}.safetensors")
        with common.daemon("--loras", str(folder)) as d, Client(d.endpoint) as client:
            job(client, [{"name": "gray-0"}])   # warm: model loaded, peft imported
            job(client, None)
            for i in range(1, rounds + 1):
                times["bare"].append(job(client, None))
                times["first"].append(job(client, [{"name": f"gray-{i}"}]))
                times["repeat"].append(job(client, [{"name": f"gray-{i}"}]))
                times["none_after"].append(job(client, None))
    med = {k: common.median(v) for k, v in times.items()}
    rows = [Row(f"{k}: submit to result", common.ms(v)) for k, v in med.items()]
    # switched off, a LoRA must cost nothing; switched on, its own matmuls are the price
    rows += [Row(f"{k} / bare", common.ratio(med[k] / med["bare"]),
                 "<= 1.05x" if k == "none_after" else "",
                 med[k] / med["bare"] <= 1.05 if k == "none_after" else None)
             for k in ("first", "repeat", "none_after")]
    data = {"quick": quick, "rounds": rounds, "times": {k: common.summary(v)
                                                        for k, v in times.items()},
            "ratios": {k: med[k] / med["bare"] for k in med}}
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("LoRA cost per job (median of N rounds, interleaved)", rows)
    print(f"wrote {common.write_json(args.out, 'loras', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

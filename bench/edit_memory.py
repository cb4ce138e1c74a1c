"""Client memory of `paintbridge edit` on huge images: peak RSS against one decoded copy.

Why: artists' canvases are 4000-8000 px; the command-line client once held ~25 full-size
copies of an 8000² image (6.3 GB) because it composited in float32 over the whole image and
copied the region twice to send it. Now float maths happens only inside the patch and the
region is sent from the decoded pixels themselves. Each run is one `paintbridge edit` process
(inpaint of a 64² selection in the middle, 2 steps, embedded model); its peak RSS comes from
wait4(), so nothing else is counted.

``--baseline REV`` runs the same edits, interleaved, with the client of an older commit
(its backend/ and plugin/ unpacked as a regular ``paintbridge`` package that shadows the
installed one), so the ratio is measured side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402
from PIL import Image  # noqa: E402

SIDES, QUICK_SIDES = (1000, 4000, 8000), (1000, 4000)
TARGET = 6.0   # peak RSS of the 8000² run, in decoded RGBA copies of the image


def peak_rss(cmd: list[str], pythonpath: Path | None = None) -> tuple[int, int]:
    """(exit code, peak RSS in bytes) of one child process."""
    env = dict(os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "edit failed")
    return proc.returncode, usage.ru_maxrss * 1024


def unpack(rev: str, root: Path) -> Path:
    """backend/ and plugin/ of commit ``rev`` as a regular package under ``root``."""
    package = root / "paintbridge"
    package.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(common.REPO), "archive", rev, "backend",
                              "plugin"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(package)], input=archive, check=True)
    (package / "__init__.py").write_text("")
    return root


def run(quick: bool, baseline: str | None = None) -> tuple[dict, list[Row]]:
    sides = QUICK_SIDES if quick else SIDES
    peaks: dict[int, int] = {}
    old: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="pb-bench-mem-") as tmp, \
            common.daemon("--max-pixels", str(8192 * 8192)) as d:
        root = Path(tmp)
        old_path = unpack(baseline, root / "baseline") if baseline else None
        for side in sides:
            image, mask = root / f"in-{side}.png", root / f"mask-{side}.png"
            pixels = np.zeros((side, side, 4), np.uint8)
            pixels[..., :3] = np.arange(side, dtype=np.uint8)[None, :, None]
            pixels[..., 3] = 255
            Image.fromarray(pixels).save(image, compress_level=1)
            del pixels
            sel = np.zeros((side, side), np.uint8)
            sel[side // 2 - 32: side // 2 + 32, side // 2 - 32: side // 2 + 32] = 255
            Image.fromarray(sel).save(mask)
            cmd = [sys.executable, "-m", "paintbridge.backend", "edit", str(image), "--mask",
                   str(mask), "--prompt", "a red circle", "--steps", "2", "--seed", "1",
                   "-o", str(root / f"out-{side}.png"), "--endpoint", d.endpoint]
            _, peaks[side] = peak_rss(cmd)
            if old_path is not None:
                _, old[side] = peak_rss(cmd, old_path)
    copies = {s: peaks[s] / (s * s * 4) for s in sides}
    big = max(sides)
    rows = [Row(f"{s}² edit: peak RSS", f"{peaks[s] / 2**20:.0f} MiB",
                f"<= {TARGET:g} copies" if s == big else "",
                copies[s] <= TARGET if s == big else None) for s in sides]
    rows += [Row(f"{s}²: peak RSS / one RGBA copy ({s * s * 4 / 2**20:.0f} MiB)",
                 common.ratio(copies[s])) for s in sides]
    rows += [Row(f"{s}²: peak RSS {baseline} / now", common.ratio(old[s] / peaks[s]))
             for s in old]
    data = {"quick": quick, "sides": list(sides), "peak_rss_bytes": peaks,
            "copies": copies, "target_copies": TARGET, "baseline": baseline,
            "baseline_peak_rss_bytes": old}
    return data, rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="no 8000² run")
    p.add_argument("--out", type=Path, default=common.RESULTS_DIR)
    p.add_argument("--baseline", metavar="REV", help="also run the client of this commit")
    args = p.parse_args(argv)
    data, rows = run(args.quick, args.baseline)
    common.print_table("edit client memory on huge images", rows)
    print(f"wrote {common.write_json(args.out, 'edit_memory', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark (what `make bench` runs), each in its own process, then summarise.

Why separate processes: each benchmark starts its own daemon and sets its own torch
threads; one crashing must not hide the others' numbers. Results land in bench/results/.
Exit status: 0 when every benchmark ran (missed targets are reported, not fatal, unless
--strict), 1 when one crashed or --strict and a target was missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = ("transfer", "overhead", "canvas", "hardening", "loras", "controls",
              "edit_memory", "live", "detail", "fidelity", "cluster")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--only", choices=BENCHMARKS, action="append",
                   help="run just this benchmark (repeatable)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    crashed, missed = [], []
    summary: list[tuple[str, str, str, str, str]] = []
    for name in args.only or BENCHMARKS:
        print(f"\n##### {name}", flush=True)
        cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--out", str(args.out)]
        if args.quick:
            cmd.append("--quick")
        started = time.monotonic()
        rc = subprocess.call(cmd)
        took = f"{time.monotonic() - started:.0f} s"
        result = args.out / f"{name}.json"
        if rc != 0 or not result.is_file():
            crashed.append(name)
            summary.append((name, "(crashed)", "", f"exit {rc}", took))
            continue
        for row in json.loads(result.read_text())["table"]:
            if row["ok"] is None:
                continue
            summary.append((name, row["metric"], row["value"],
                            f"{row['target']}  {row['result']}", took))
            if not row["ok"]:
                missed.append(f"{name}: {row['metric']}")
    print("\n===== summary (targets only; full tables above, raw timings in "
          f"{args.out}/)")
    widths = [max(len(r[i]) for r in summary) for i in range(4)]
    for r in summary:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()
              + f"  [{r[4]}]")
    if crashed:
        print(f"crashed: {', '.join(crashed)}")
    if missed:
        print(f"missed targets: {'; '.join(missed)}")
    return 1 if crashed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the benchmarks: a real daemon subprocess, timing, tables and JSON.

Why a subprocess: the benchmarks measure what a host plugin sees, so the daemon runs as
users run it (``python -m backend serve``) on a free loopback port, with one torch thread
so that it and the benchmark process do not fight over a small machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Before numpy/torch are imported anywhere: no hub access, no OpenMP threads spinning idle.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
if str(REPO) not in sys.path:  # `python bench/x.py` puts only bench/ on the path
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from tools import childdaemon  # noqa: E402

# --------------------------------------------------------------------------- arguments


def parse_args(description: str, argv: list[str] | None = None,
               options: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> argparse.Namespace:
    """``--quick`` and ``--out``, and a bench's own ``options``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help=f"folder for the JSON results (default {RESULTS_DIR})")
    if options is not None:
        options(p)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the daemon


@dataclass
class DaemonProc:
    proc: subprocess.Popen
    endpoint: str
    log: Path
    hello: dict[str, Any]

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def daemon(*args: str, workdir: Path | None = None, timeout: float = 120.0
           ) -> Iterator[DaemonProc]:
    """A real daemon on a free loopback port with one torch thread; stopped on exit."""
    tmp = tempfile.TemporaryDirectory(prefix="pb-bench-daemon-") if workdir is None else None
    root = Path(tmp.name) if tmp is not None else workdir
    assert root is not None
    log = root / "daemon.log"
    # an empty XDG config home: a user's own config.json must not change what is measured
    proc, endpoint = childdaemon.spawn(args, log, env={"XDG_CONFIG_HOME": str(root / "xdg")},
                                       cwd=REPO)
    try:
        hello = childdaemon.wait_ready(proc, endpoint, log, timeout)
        yield DaemonProc(proc, endpoint, log, hello)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if tmp is not None:
            tmp.cleanup()


def tiny_model_dir(root: Path, native_sizes: tuple[int, ...] = ()) -> Path:
    """A model folder holding the tiny 9-channel inpainting model (``tiny-inpainting``),
    plus copies named ``tiny-inpainting-<n>`` whose paintbridge.json sets native_size n."""
    import shutil

    from tools.tiny_models import save_tiny_model

    models = root / "models"
    models.mkdir(parents=True, exist_ok=True)
    paths = save_tiny_model("inpainting", root / "build", seed=0)
    shutil.move(str(paths["diffusers"]), models / "tiny-inpainting")
    shutil.rmtree(root / "build")
    for n in native_sizes:
        copy = models / f"tiny-inpainting-{n}"
        shutil.copytree(models / "tiny-inpainting", copy)
        (copy / "paintbridge.json").write_text(json.dumps({"native_size": n}))
    return models


# --------------------------------------------------------------------------- pixels


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGBA8 pixels that compress like a photo: smooth colour fields plus sensor-like noise.

    All-zero or flat test images compress to nothing and would flatter the PNG path.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC))
    out = np.empty((height, width, 4), np.uint8)
    rows = max(1, (1 << 22) // max(1, width))  # in bands: no multi-GiB int16 temporaries
    for y in range(0, height, rows):
        band = smooth[y:y + rows].astype(np.int16)
        band += rng.integers(-8, 9, band.shape, dtype=np.int16)
        out[y:y + rows, :, :3] = np.clip(band, 0, 255)
    out[..., 3] = 255
    return out


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def process_cpu(pid: int | None = None) -> float:
    """CPU seconds used so far by a process (all its threads); ours when ``pid`` is None.

    Why: on a shared machine wall time swings with other people's load, CPU time much
    less, so it tells whether extra wall time is extra work or just waiting for a core.
    Reads Linux's per-thread schedstat (ns); elsewhere only our own process is known.
    """
    if pid is None:
        return time.process_time()
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just ended
    return total / 1e9


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def summary(xs: list[float]) -> dict[str, Any]:
    """Raw seconds plus the statistics the tables use."""
    return {"n": len(xs), "median_s": median(xs), "min_s": min(xs), "max_s": max(xs),
            "raw_s": xs}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(),
                            "processor": platform.processor() or platform.machine()}
    try:
        info["loadavg"] = os.getloadavg()
        info["nice"] = os.nice(0)
    except (AttributeError, OSError):
        pass
    return info


# --------------------------------------------------------------------------- reporting


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "FAIL")


def print_table(title: str, rows: list[Row]) -> None:
    headers = ("metric", "value", "target", "result")
    cells = [(r.metric, r.value, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n== {title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    sys.stdout.flush()


def write_json(out_dir: Path, name: str, data: dict[str, Any], rows: list[Row]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    doc = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": machine(), "table": [asdict(r) | {"result": r.verdict} for r in rows],
           **data}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def ratio(x: float) -> str:
    return f"{x:.2f}x" if x < 100 else f"{x:.0f}x"

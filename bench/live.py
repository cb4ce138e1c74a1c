"""Live painting: a simulated painter against the daemon, live submits vs plain submits.

Why: a painter changes the canvas far faster than a job runs. Plain submits queue every
change, so the picture falls further behind the brush (until the queue is full and changes
are refused); live mode (the Krita docker's own logic, plugin/live.py, on live submits that
replace the client's previous live job) keeps the newest change at most about one job
away. The painter puts a dab on a 64² canvas (the embedded model's native size) at a fixed
rate; image-to-image. For each dab, the latency is the time until the first result of a
job sent after it (that result shows the dab).
Both paths run against one daemon, one after the other. Then, in this process: one job's
time with the prompt's text-encoder outputs cached, and without the cache, interleaved.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import threading  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState  # noqa: E402
from paintbridge.plugin.live import Live  # noqa: E402
from paintbridge.plugin.protocol import ErrorCode  # noqa: E402
from paintbridge.plugin.region import Rect  # noqa: E402
from paintbridge.plugin.session import GenerationSettings, Session  # noqa: E402

SIDE = 64
RATE_HZ = 10.0
SECONDS, QUICK_SECONDS = 30.0, 8.0
PARAMS = {"prompt": "a red circle on a blue background", "strength": 0.6, "seed": 11}


def canvas(i: int) -> np.ndarray:
    """The region after the painter's ``i``-th dab: a blue field, red dabs in rows (each
    dab lands on new pixels or in a new shade, so every dab changes the canvas)."""
    img = np.zeros((SIDE, SIDE, 4), np.uint8)
    img[...] = (30, 60, 220, 255)
    for k in range(i + 1):
        x, y = 3 + (k * 7) % 56, 3 + ((k * 7) // 56 * 5) % 56
        img[y:y + 6, x:x + 6, :3] = (220 - (k // 72) * 20 % 120, 30, 30)
    return img


class Canvas:
    """The painter's document as Live sees it (the host's part, in memory)."""

    def __init__(self) -> None:
        self.pixels = canvas(0)
        self.shown: list[float] = []   # when each result reached the preview layer

    def canvas(self) -> Rect:
        return Rect(0, 0, SIDE, SIDE)

    def selection_bounds(self) -> None:
        return None

    def pixel_format(self) -> str:
        return "rgba8"

    def read_pixels(self, rect: Rect) -> bytes:
        return self.pixels[rect.y:rect.bottom, rect.x:rect.right].tobytes()

    def read_selection(self, rect: Rect) -> Frame:
        raise AssertionError("no selection")

    def overview(self, side: int) -> Frame:
        return Frame(SIDE, SIDE, "rgba8", self.pixels.tobytes())

    def show_live(self, patch: object, name: str) -> None:
        self.shown.append(time.monotonic())

    def remove_live(self) -> None:
        pass

    def add_results(self, *_: object) -> None:
        pass


def queued_at_daemon(client: Client) -> int:
    return sum(j["state"] == "queued" for j in client.status()["jobs"])


def paint(endpoint: str, live: bool, seconds: float) -> dict:
    """A dab every 1/RATE_HZ s for ``seconds``; then wait for what is owed. Live: the docker's
    own logic (plugin.live) decides what to send; plain: every dab is a job."""
    session = Session(endpoint)
    client = session.client
    doc = Canvas()
    mode = Live(session)
    settings = GenerationSettings(mode="img2img", **PARAMS)
    dabs: list[float] = []                  # dab index -> when it was painted
    carried: dict[str, int] = {}            # job id -> the last dab it carries
    delivered: list[tuple[int, float]] = []   # (last dab carried, time shown)
    refused = 0
    max_queued = 0
    plain: list[Job] = []
    if live:
        mode.start(doc)
    start = time.monotonic()
    next_status = start
    period = 1.0 / RATE_HZ

    def step() -> None:
        nonlocal refused
        client.pump(5)
        if live:
            before, shown = mode.job, len(doc.shown)
            mode.tick(settings, time.monotonic())
            if len(doc.shown) > shown and before is not None:
                delivered.append((carried[before.id], doc.shown[-1]))
            if mode.job is not None and mode.job.id not in carried:
                carried[mode.job.id] = len(dabs) - 1
            return
        for job in list(plain):
            if job.state is JobState.DONE:
                delivered.append((carried[job.id], time.monotonic()))
            elif job.state is JobState.FAILED:
                assert job.error_code == ErrorCode.BUSY, job.error_message
                refused += 1
            if job.finished:
                plain.remove(job)
                client.jobs.pop(job.id, None)

    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now - start >= len(dabs) * period:
            doc.pixels = canvas(len(dabs))
            dabs.append(now)
            if not live:
                job = client.submit(JobRequest("img2img", settings.params("img2img"),
                                               image=Frame(SIDE, SIDE, "rgba8",
                                                           doc.pixels.tobytes())))
                carried[job.id] = len(dabs) - 1
                plain.append(job)
        if now >= next_status:
            max_queued = max(max_queued, queued_at_daemon(client))
            next_status = now + 0.5
        step()
    drain_until = time.monotonic() + 300
    while time.monotonic() < drain_until and (plain or (live and (
            mode.job is not None or not delivered or delivered[-1][0] < len(dabs) - 1))):
        step()
    mode.stop()
    session.close()
    latencies = []
    for u, t_u in enumerate(dabs):
        after = [t for last, t in delivered if last >= u and t >= t_u]
        if after:
            latencies.append(min(after) - t_u)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"updates": len(dabs), "results": len(delivered), "jobs_sent": len(carried),
            "refused_busy": refused, "updates_with_result": len(latencies),
            "max_queued": max_queued,
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p95_s": float(np.percentile(lat, 95)),
            "latency_max_s": float(np.max(lat))}


def cache_cost(rounds: int) -> dict:
    """One job's time with and without the prompt cache (interleaved, same process)."""
    import torch

    from paintbridge.backend.jobs import recipe
    from paintbridge.backend.models.prompt_cache import PromptCache
    from paintbridge.backend.models.registry import ModelRegistry
    from paintbridge.plugin import protocol

    torch.set_num_threads(1)
    reg = ModelRegistry([])
    reg.scan()
    model = reg.load(reg.resolve(None), torch.device("cpu"), torch.float32)
    img = canvas(20).tobytes()
    spec = protocol.FrameSpec("image", SIDE, SIDE, "rgba8")
    header = protocol.submit_header("j", "img2img", PARAMS, [spec])
    times: dict[str, list[float]] = {"cached": [], "uncached": []}
    cached, uncached = PromptCache(), PromptCache(size=0)

    def job(cache: PromptCache) -> float:
        model.prompts = cache
        req = protocol.parse_submit(header, [img], protocol.Limits())
        t0 = time.perf_counter()
        recipe.run(req, model, threading.Event(), lambda *_: None)
        return time.perf_counter() - t0

    job(cached)
    job(uncached)
    for _ in range(rounds):
        times["cached"].append(job(cached))
        times["uncached"].append(job(uncached))
    return {k: common.summary(v) for k, v in times.items()}


def run(quick: bool) -> tuple[dict, list[Row]]:
    seconds = QUICK_SECONDS if quick else SECONDS
    data: dict = {"quick": quick, "seconds": seconds, "rate_hz": RATE_HZ, "side": SIDE}
    with common.daemon() as d, Client(d.endpoint) as client:
        for _ in range(2):   # the first loads the model
            warm = client.submit(JobRequest("img2img", PARAMS, image=Frame(SIDE, SIDE, "rgba8",
                                                                canvas(0).tobytes())))
            client.wait(warm, timeout=300)
        data["job_s"] = warm.info.get("seconds")
        for name, live in (("live", True), ("plain", False)):
            data[name] = paint(d.endpoint, live, seconds)
    data["cache"] = cache_cost(3 if quick else 12)
    rows = []
    for name in ("live", "plain"):
        r = data[name]
        rows += [Row(f"{name}: dabs / jobs sent / results",
                     f"{r['updates']} / {r['jobs_sent']} / {r['results']}"),
                 Row(f"{name}: update -> result p50", common.ms(r["latency_p50_s"])),
                 Row(f"{name}: update -> result p95", common.ms(r["latency_p95_s"]),
                     "<= 3 jobs" if name == "live" else "",
                     r["latency_p95_s"] <= 3 * (data["job_s"] or 1) if name == "live"
                     else None),
                 Row(f"{name}: most queued at once", str(r["max_queued"]),
                     "<= 1" if name == "live" else "",
                     r["max_queued"] <= 1 if name == "live" else None),
                 Row(f"{name}: refused (queue full)", str(r["refused_busy"]))]
    c = data["cache"]
    med = {k: c[k]["median_s"] for k in c}
    rows += [Row("one job, prompt cached", common.ms(med["cached"])),
             Row("one job, prompt encoded", common.ms(med["uncached"])),
             Row("cached / encoded", common.ratio(med["cached"] / med["uncached"]))]
    rows.insert(0, Row("one live job (64², 20 steps)", common.ms(data["job_s"] or 0)))
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table(f"Live painting: a painter at {RATE_HZ:g} Hz for "
                       f"{data['seconds']:g} s", rows)
    print(f"wrote {common.write_json(args.out, 'live', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

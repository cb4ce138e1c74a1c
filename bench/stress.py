"""Load, soak and socket fuzz against a running daemon: the drivers behind `make bench`'s
long runs and the fast subsets in tests/test_stress.py.

    python bench/stress.py load  --endpoint tcp://127.0.0.1:47610 --clients 16 --jobs 20
    python bench/stress.py soak  --endpoint ... --jobs 1000 --pid DAEMON_PID
    python bench/stress.py fuzz  --endpoint ... --messages 100000 --pid DAEMON_PID
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paintbridge.plugin import protocol  # noqa: E402
from paintbridge.plugin.client import Client, Frame, JobRequest, JobState  # noqa: E402
from paintbridge.plugin.protocol import ErrorCode  # noqa: E402

SIDE = 32


def small_image(seed: int) -> Frame:
    rng = random.Random(seed)
    px = bytes(rng.randrange(256) for _ in range(16)) * (SIDE * SIDE // 4)
    return Frame(SIDE, SIDE, "rgba8", px)


# --------------------------------------------------------------------------- load


@dataclass
class LoadReport:
    clients: int
    jobs_per_client: int
    results: int = 0          # with in_flight: every job ends with a result
    submitted: int = 0
    busy: int = 0
    other_errors: int = 0
    lost: int = 0
    duplicated: int = 0
    seconds: float = 0.0
    worst_first_result_rank: int = 0   # over clients: rank of its first result overall
    completion_order: list[str] = field(default_factory=list)


def run_load(endpoint: str, clients: int, jobs: int, steps: int = 2,
             timeout: float = 600, in_flight: int | None = None) -> LoadReport:
    """``clients`` threads, each with its own connection, run ``jobs`` jobs. With
    ``in_flight`` None all are submitted at once (a burst: the queue limits answer 'busy');
    otherwise each client keeps that many in flight and resubmits what was refused 'busy',
    as a patient host would. Every submitted job must end with exactly one result or one
    'busy'."""
    report = LoadReport(clients, jobs)
    order: list[tuple[float, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)
    outcomes: list[Counter] = [Counter() for _ in range(clients)]
    events_per_job: list[dict[str, int]] = [{} for _ in range(clients)]
    window = in_flight or jobs

    def one(index: int) -> None:
        with Client(endpoint) as client:
            client.hello(timeout=30)
            start.wait()
            submitted: list = []
            outstanding: list = []
            remaining = jobs
            deadline = time.monotonic() + timeout
            while (remaining or outstanding) and time.monotonic() < deadline:
                while remaining and len(outstanding) < window:
                    job = client.submit(JobRequest("img2img", {"steps": steps, "seed": index},
                                                   image=small_image(index)))
                    submitted.append(job)
                    outstanding.append(job)
                    remaining -= 1
                for job in client.pump(200):
                    if job.finished:
                        events_per_job[index][job.id] = events_per_job[index].get(job.id, 0) + 1
                        if job.state is JobState.DONE:
                            with lock:
                                order.append((time.monotonic(), f"c{index}"))
                        elif in_flight and job.error_code == ErrorCode.BUSY:
                            remaining += 1  # refused: try again when one of ours is done
                outstanding = [j for j in outstanding if not j.finished]
            for job in submitted:
                if job.state is JobState.DONE and len(job.patches) == 1:
                    outcomes[index]["result"] += 1
                elif job.error_code == ErrorCode.BUSY:
                    outcomes[index]["busy"] += 1
                elif job.finished:
                    outcomes[index]["error"] += 1
                else:
                    outcomes[index]["lost"] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = round(time.monotonic() - t0, 2)
    total = sum(outcomes, Counter())
    report.results, report.busy = total["result"], total["busy"]
    report.submitted = sum(total.values())
    report.other_errors, report.lost = total["error"], total["lost"]
    report.duplicated = sum(1 for per in events_per_job for n in per.values() if n > 1)
    report.completion_order = [c for _, c in sorted(order)]
    firsts = {}
    for rank, c in enumerate(report.completion_order):
        firsts.setdefault(c, rank)
    report.worst_first_result_rank = max(firsts.values(), default=0)
    return report


# --------------------------------------------------------------------------- soak


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class SoakReport:
    jobs: int
    failed: int = 0
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_growth_mb: float = 0.0
    fds_start: int = 0
    fds_end: int = 0
    seconds: float = 0.0
    samples: list[tuple[int, float]] = field(default_factory=list)


def run_soak(endpoint: str, pid: int, jobs: int, warmup: int = 20, steps: int = 2
             ) -> SoakReport:
    """Sequential small jobs; RSS and open FDs of the daemon measured after a warm-up."""
    report = SoakReport(jobs)
    with Client(endpoint) as client:
        for i in range(warmup):
            client.wait(client.submit(JobRequest("img2img", {"steps": steps, "seed": i},
                                                 image=small_image(i))), 120)
        report.rss_start_mb = rss_kb(pid) / 1024
        report.fds_start = fd_count(pid)
        t0 = time.monotonic()
        for i in range(jobs):
            job = client.wait(client.submit(JobRequest("img2img", {"steps": steps, "seed": i},
                                                       image=small_image(i))), 120)
            report.failed += job.state is not JobState.DONE
            if i % max(1, jobs // 20) == 0:
                report.samples.append((i, round(rss_kb(pid) / 1024, 1)))
        report.seconds = round(time.monotonic() - t0, 2)
    report.rss_end_mb = rss_kb(pid) / 1024
    report.fds_end = fd_count(pid)
    report.rss_growth_mb = round(report.rss_end_mb - report.rss_start_mb, 1)
    return report


# --------------------------------------------------------------------------- fuzz


def mutated(rng: random.Random) -> list[bytes]:
    """A valid-looking request with random damage, raw noise, or a wrong payload."""
    header = {"v": rng.choice([1, 1, 1, 2, "1", None]),
              "op": rng.choice([*protocol.REQUEST_OPS, "zap", ""]),
              "job": rng.choice([f"z{rng.randrange(10**6)}", "", 7, None, "x" * 80]),
              "kind": rng.choice([*protocol.KINDS, "x"]),
              "params": rng.choice([{}, {"steps": rng.choice([0, -1, 1e9, "x", None])},
                                    {"strength": rng.choice([-1, 2, 0.5, "NaN"])},
                                    {"model": rng.choice(["../x", "/etc/passwd", "nope"])},
                                    []]),
              "frames": [{"role": rng.choice(["image", "mask", "?"]),
                          "width": rng.choice([-1, 0, 8, 40, 10**6, "8"]),
                          "height": rng.choice([-1, 0, 8, 40, 10**6]),
                          "format": rng.choice([*protocol.FORMATS, "png"])}
                         for _ in range(rng.randint(0, 5))]}
    raw = json.dumps(header).encode()
    r = rng.random()
    if r < 0.3:
        b = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        raw = bytes(b)
    elif r < 0.4:
        raw = rng.randbytes(rng.randint(0, 64))
    frames = [rng.randbytes(rng.choice([0, 1, 255, 256, 6400])) for _ in range(rng.randint(0, 6))]
    return [raw, *frames]


@dataclass
class FuzzReport:
    messages: int
    answered: int = 0
    accepted: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    crashed: bool = False
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    seconds: float = 0.0


def run_fuzz(endpoint: str, pid: int | None, messages: int, seed: int = 1) -> FuzzReport:
    """Each message gets a reply (counted by code); accepted jobs are cancelled at once."""
    rng = random.Random(seed)
    report = FuzzReport(messages)
    codes: Counter = Counter()
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    if pid:
        report.rss_start_mb = rss_kb(pid) / 1024
    t0 = time.monotonic()
    try:
        for _ in range(messages):
            s.send_multipart(mutated(rng))
            while True:
                if not s.poll(30000):
                    report.crashed = True
                    return report
                reply = json.loads(s.recv_multipart()[0])
                event = reply.get("event")
                if event == "accepted":
                    report.accepted += 1
                    s.send_multipart([json.dumps({"v": 1, "op": "cancel",
                                                  "job": reply["job"]}).encode()])
                if event in ("error", "accepted", "hello", "models", "status", "echo"):
                    codes[reply.get("code", event)] += 1
                    report.answered += 1
                    break
    finally:
        s.close()
        report.seconds = round(time.monotonic() - t0, 2)
        report.codes = dict(codes)
        if pid:
            report.crashed = report.crashed or not Path(f"/proc/{pid}").exists()
            if not report.crashed:
                report.rss_end_mb = rss_kb(pid) / 1024
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["load", "soak", "fuzz"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--pid", type=int, help="the daemon's pid (RSS, FDs, crash check)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--json", help="write the report here")
    args = p.parse_args()
    if args.what == "load":
        report = asdict(run_load(args.endpoint, args.clients, args.jobs))
    elif args.what == "soak":
        report = asdict(run_soak(args.endpoint, args.pid, args.jobs))
    else:
        report = asdict(run_fuzz(args.endpoint, args.pid, args.messages))
    report.pop("completion_order", None)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

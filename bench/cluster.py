"""The daemon in front of Ray Serve replicas (backend/cluster/dispatch.py), side by side in one run.

Why: a studio puts several devices behind one daemon; what it buys and what it costs must be
measured, not assumed. Every figure comes from real daemons serving the embedded model
(64 px jobs): a local one, and ``--cluster auto`` with 1 and 2 CPU replicas (one torch
thread each; this machine has 2 cores, so 2 replicas is the most that can gain).

(a) Throughput: the same burst of jobs, jobs per second with 1 and 2 replicas. Target: 2
    replicas at least 1.5x 1.
(b) Fairness: client A queues a burst, then client B sends one job; B's place among the
    finished jobs and its latency against running alone. Straight into Serve's router B
    would finish last; the fair queue hands it on after at most one more of A's (A is ahead
    in the rotation). Target: B among the first (replicas + 2).
(c) Overhead of the cluster path: a one-step job's latency through 1 replica against the
    local worker (median, milliseconds).
(d) Soak: 16 clients x 20 jobs through 2 replicas; every job must end with exactly one last
    event (a result): lost 0, duplicated 0.
(e) A replica killed mid-job (SIGKILL at half the steps): the job's time against the same
    job undisturbed, and whether its one result is the seed's pixels.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState  # noqa: E402
from tools import quality

SIDE = 64
PICTURE = quality.smooth_picture(SIDE)
READY_S = 300.0      # Ray and two replicas start in about 20-40 s on this machine
#: bursts and the soak queue more than the default limits allow one client and all
QUEUE = ("--max-queue", "400", "--max-queue-per-client", "32")
KILL_STEPS = 60      # long enough to find the busy replica before the job ends


def submit(c: Client, seed: int, steps: int) -> Job:
    return c.submit(JobRequest("img2img", {"prompt": "a red circle", "seed": seed, "steps": steps,
                                "strength": 1.0},
                               image=Frame(SIDE, SIDE, "rgba8", PICTURE.tobytes())))


def warm(endpoint: str, replicas: int) -> None:
    """Every replica loads the model before anything is timed."""
    with Client(endpoint) as c:
        jobs = [submit(c, i, 1) for i in range(2 * replicas)]
        for job in jobs:
            assert c.wait(job, 600).state is JobState.DONE, job.error_message


def throughput(endpoint: str, jobs: int, steps: int) -> float:
    with Client(endpoint) as c:
        t0 = time.perf_counter()
        sent = [submit(c, i, steps) for i in range(jobs)]
        for job in sent:
            assert c.wait(job, 600).state is JobState.DONE, job.error_message
        return jobs / (time.perf_counter() - t0)


def fairness(endpoint: str, burst: int, steps: int) -> dict[str, Any]:
    with Client(endpoint) as b:
        t0 = time.perf_counter()
        assert b.wait(submit(b, 99, steps), 600).state is JobState.DONE
        alone = time.perf_counter() - t0
    order: list[str] = []
    with Client(endpoint) as a, Client(endpoint) as b:
        heavy = [submit(a, i, steps) for i in range(burst)]
        time.sleep(0.3)
        t0 = time.perf_counter()
        light = submit(b, 100, steps)
        latency = None
        pending = [*heavy, light]
        while pending:
            a.pump(20)
            b.pump(20)
            for job in [j for j in pending if j.finished]:
                order.append("B" if job is light else "A")
                if job is light:
                    latency = time.perf_counter() - t0
                pending.remove(job)
    return {"place": order.index("B") + 1, "of": len(order), "latency_s": latency,
            "alone_s": alone}


def overhead(endpoint: str, n: int) -> float:
    times = []
    with Client(endpoint) as c:
        for i in range(n):
            t0 = time.perf_counter()
            assert c.wait(submit(c, i, 1), 600).state is JobState.DONE
            times.append(time.perf_counter() - t0)
    return common.median(times)


def soak(endpoint: str, clients: int, per_client: int) -> dict[str, Any]:
    """Each client in its own thread; counts the last events per job as they arrive."""
    ends: dict[str, list[str]] = {}
    lock = threading.Lock()
    failures: list[str] = []

    def one(k: int) -> None:
        with Client(endpoint) as c:
            jobs = []
            for i in range(per_client):
                job = submit(c, 1000 * k + i, 1)
                apply = job.apply

                def counting(event: Any, frames: Any, job: Job = job, apply: Any = apply
                             ) -> None:
                    if event["event"] in ("result", "error", "cancelled"):
                        with lock:
                            ends.setdefault(f"{k}:{job.id}", []).append(event["event"])
                    apply(event, frames)

                job.apply = counting   # type: ignore[method-assign]
                jobs.append(job)
                c.pump(0)
            for job in jobs:
                c.wait(job, 900)
                if job.state is not JobState.DONE:
                    failures.append(f"{job.id}: {job.state} {job.error_message}")
            for _ in range(10):
                c.pump(50)        # anything arriving after the end would be a duplicate

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = clients * per_client
    lost = total - sum(1 for v in ends.values() if v)
    duplicated = sum(len(v) - 1 for v in ends.values() if len(v) > 1)
    return {"jobs": total, "lost": lost, "duplicated": duplicated, "failed": failures,
            "seconds": time.perf_counter() - t0}


def killed_replica(endpoint: str, steps: int) -> dict[str, Any]:
    """The same seed twice; the second time the busiest replica is SIGKILLed halfway."""
    import psutil

    with Client(endpoint) as c:
        t0 = time.perf_counter()
        clean = c.wait(submit(c, 7, steps), 600)
        clean_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        job = submit(c, 7, steps)
        while job.step < steps // 2 and not job.finished:
            c.pump(20)
        pids = subprocess.run(["pgrep", "-f", "ServeReplica:paintbridge"], capture_output=True,
                              text=True).stdout.split()
        replicas = [psutil.Process(int(p)) for p in pids]
        before = [sum(p.cpu_times()[:2]) for p in replicas]
        time.sleep(0.3)
        used = [sum(p.cpu_times()[:2]) - b for p, b in zip(replicas, before, strict=True)]
        replicas[used.index(max(used))].kill()
        c.wait(job, 600)
        return {"clean_s": clean_s, "killed_s": time.perf_counter() - t0,
                "state": job.state.value, "retries": job.retries,
                "same": job.state is JobState.DONE and
                bytes(job.patches[0].data) == bytes(clean.patches[0].data)}


def run(quick: bool) -> tuple[dict, list[Row]]:
    jobs, steps = (8, 6) if quick else (16, 10)
    data: dict[str, Any] = {"quick": quick, "side": SIDE, "jobs": jobs, "steps": steps}
    with common.daemon(*QUEUE) as local:
        warm(local.endpoint, 1)
        data["local_overhead_s"] = overhead(local.endpoint, 5 if quick else 15)
    for replicas in (1, 2):
        with common.daemon("--cluster", "auto", "--replicas", str(replicas), *QUEUE,
                           timeout=READY_S) as d:
            warm(d.endpoint, replicas)
            r: dict[str, Any] = {"jobs_per_s": throughput(d.endpoint, jobs, steps)}
            if replicas == 1:
                r["overhead_s"] = overhead(d.endpoint, 5 if quick else 15)
            else:
                r["fairness"] = fairness(d.endpoint, 6 if quick else 8, steps)
                r["soak"] = soak(d.endpoint, 4 if quick else 16, 5 if quick else 20)
                r["killed"] = killed_replica(d.endpoint, KILL_STEPS)
            data[f"replicas_{replicas}"] = r
    one, two = data["replicas_1"], data["replicas_2"]
    gain = two["jobs_per_s"] / one["jobs_per_s"]
    fair = two["fairness"]
    soaked, killed = two["soak"], two["killed"]
    extra_ms = (one["overhead_s"] - data["local_overhead_s"]) * 1000
    rows = [
        Row("jobs/s, 1 replica -> 2", f"{one['jobs_per_s']:.2f} -> {two['jobs_per_s']:.2f}"
            f" ({gain:.2f}x)", ">= 1.5x", gain >= 1.5),
        Row("light client's place after a burst (2 replicas)",
            f"{fair['place']} of {fair['of']}, {fair['latency_s']:.1f} s "
            f"(alone {fair['alone_s']:.1f} s)", "<= 4", fair["place"] <= 4),
        Row("one-step job, local -> 1 replica (median)",
            f"{data['local_overhead_s'] * 1000:.0f} -> {one['overhead_s'] * 1000:.0f} ms "
            f"(+{extra_ms:.0f} ms)"),
        Row(f"soak {soaked['jobs']} jobs: lost, duplicated",
            f"{soaked['lost']}, {soaked['duplicated']} ({soaked['seconds']:.0f} s)", "0, 0",
            soaked["lost"] == 0 and soaked["duplicated"] == 0 and not soaked["failed"]),
        Row(f"replica killed at step {KILL_STEPS // 2} of {KILL_STEPS}: time, result",
            f"{killed['clean_s']:.1f} -> {killed['killed_s']:.1f} s "
            f"({killed['killed_s'] / killed['clean_s']:.2f}x), retries {killed['retries']}, "
            + ("the seed's pixels" if killed["same"] else "DIFFERENT pixels"),
            "1 result, same pixels", killed["same"] and killed["retries"] == 1),
    ]
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("The daemon in front of Ray Serve replicas (embedded model, 64 px)",
                       rows)
    print(f"wrote {common.write_json(args.out, 'cluster', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Hardening figures: load, soak, socket fuzz and dead-daemon detection, on a real daemon.

- load: 16 clients x 20 jobs at once (embedded model when shipped, else the tiny one):
  every job gets exactly one result or one 'busy', none lost or duplicated, and round robin
  gives every client its first result within the first round. Then the same load paced
  (2 jobs in flight per client, 'busy' retried): all 320 jobs end with a result.
- soak: 1,000 sequential small jobs: daemon RSS growth < 50 MB, no file-descriptor growth.
- fuzz: 100,000 random and mutated multipart messages over the socket: 0 crashes, every one
  answered, RSS bounded.
- dead daemon: SIGKILL mid-job -> seconds until the client reports it (heartbeat 1 s/3 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402

import common  # noqa: E402
import stress  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.backend.models.registry import EMBEDDED_DIR  # noqa: E402
from paintbridge.plugin.client import HEARTBEAT_MS, Client, JobRequest, JobState  # noqa: E402


def model_args(root: Path) -> tuple[list[str], str]:
    if (EMBEDDED_DIR / "model_index.json").is_file():
        return [], "default (embedded)"
    return ["--no-embedded", "--models", str(common.tiny_model_dir(root))], "tiny-inpainting"


def dead_daemon_detection(args: list[str]) -> float:
    with common.daemon(*args) as d, Client(d.endpoint) as client:
        job = client.submit(JobRequest("img2img", {"steps": 200, "count": 8},
                                       image=stress.small_image(0)))
        while job.state is not JobState.RUNNING:
            client.pump(50)
        t0 = time.monotonic()
        d.proc.kill()
        while job.state is not JobState.FAILED:
            client.pump(20)
        return time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    clients, jobs = (4, 5) if args.quick else (16, 20)
    soak_jobs = 100 if args.quick else 1000
    messages = 2000 if args.quick else 100_000
    data: dict = {}
    with tempfile.TemporaryDirectory(prefix="pb-bench-hardening-") as tmp:
        extra, model = model_args(Path(tmp))
        data["model"] = model
        with common.daemon(*extra) as d:
            load = stress.run_load(d.endpoint, clients, jobs)
            paced = stress.run_load(d.endpoint, clients, jobs, in_flight=2)
            soak = stress.run_soak(d.endpoint, d.proc.pid, soak_jobs)
            fuzz = stress.run_fuzz(d.endpoint, d.proc.pid, messages)
            alive = d.proc.poll() is None
        detect = dead_daemon_detection(extra)
    total = clients * jobs
    rows = [
        Row("load: jobs answered (result + busy)", f"{load.results} + {load.busy} of {total}",
            f"= {total}", load.results + load.busy == total),
        Row("load: jobs lost / duplicated", f"{load.lost} / {load.duplicated}", "0 / 0",
            load.lost == 0 and load.duplicated == 0 and load.other_errors == 0),
        Row("load: worst rank of a client's first result", str(load.worst_first_result_rank),
            f"<= {clients}", load.worst_first_result_rank <= clients),
        Row("load: wall time", f"{load.seconds:.1f} s"),
        Row("paced load (2 in flight, busy retried): results",
            f"{paced.results} of {total} ({paced.busy} busy retried)", f"= {total}",
            paced.results == total and paced.lost == 0 and paced.duplicated == 0
            and paced.other_errors == 0),
        Row("paced load: worst rank of a client's first result",
            str(paced.worst_first_result_rank), f"<= {clients}",
            paced.worst_first_result_rank <= clients),
        Row("paced load: wall time", f"{paced.seconds:.1f} s"),
        Row(f"soak: RSS growth over {soak_jobs} jobs", f"{soak.rss_growth_mb:.1f} MB",
            "< 50 MB", soak.rss_growth_mb < 50 and soak.failed == 0),
        Row("soak: open FDs start -> end", f"{soak.fds_start} -> {soak.fds_end}", "no growth",
            soak.fds_end <= soak.fds_start),
        Row(f"fuzz: messages answered of {messages}", str(fuzz.answered), f"= {messages}",
            fuzz.answered == messages),
        Row("fuzz: daemon crashes", str(int(fuzz.crashed or not alive)), "0",
            not fuzz.crashed and alive),
        Row("fuzz: RSS start -> end", f"{fuzz.rss_start_mb:.0f} -> {fuzz.rss_end_mb:.0f} MB",
            "+ < 50 MB", fuzz.rss_end_mb - fuzz.rss_start_mb < 50),
        Row("dead daemon (SIGKILL) reported after", f"{detect:.2f} s",
            f"< {3 * HEARTBEAT_MS / 1000 + 2:g} s", detect < 3 * HEARTBEAT_MS / 1000 + 2),
    ]
    common.print_table(f"hardening ({model})", rows)
    load_dicts = [asdict(r) for r in (load, paced)]
    for r in load_dicts:
        r.pop("completion_order")
    data.update(load=load_dicts[0], paced_load=load_dicts[1], soak=asdict(soak),
                fuzz=asdict(fuzz), dead_daemon_s=detect)
    print(f"wrote {common.write_json(args.out, 'hardening', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

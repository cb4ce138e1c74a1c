"""Fast subsets of the long runs in bench/stress.py: load, soak and socket fuzz."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import start_daemon

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import stress  # noqa: E402


@pytest.fixture(scope="module")
def stress_daemon(tiny_models, tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("stress"), "--models",
                     str(tiny_models.models_dir), "--default-model", "tiny-v1", "--no-embedded",
                     "--max-queue", "12", "--max-queue-per-client", "4")
    yield d
    assert d.stop() == 0


def test_load_every_job_one_answer_and_fair(stress_daemon) -> None:
    report = stress.run_load(stress_daemon.endpoint, clients=4, jobs=6)
    total = 4 * 6
    assert report.lost == 0 and report.duplicated == 0 and report.other_errors == 0
    assert report.results + report.busy == total
    assert report.busy >= 4 * 2          # 6 submitted at once, 4 may queue per client
    # round robin: every client's first result comes within the first round
    assert report.worst_first_result_rank <= 4


def test_paced_load_every_job_gets_a_result(stress_daemon) -> None:
    report = stress.run_load(stress_daemon.endpoint, clients=4, jobs=6, in_flight=2)
    assert report.results == 4 * 6 and report.submitted == report.results + report.busy
    assert report.lost == report.duplicated == report.other_errors == 0


def test_soak_no_growth(stress_daemon) -> None:
    report = stress.run_soak(stress_daemon.endpoint, stress_daemon.proc.pid, jobs=120)
    assert report.failed == 0
    assert report.rss_growth_mb < 50, report.samples
    assert report.fds_end <= report.fds_start


def test_socket_fuzz_subset(stress_daemon) -> None:
    report = stress.run_fuzz(stress_daemon.endpoint, stress_daemon.proc.pid, messages=1500)
    assert not report.crashed and report.answered == 1500
    assert report.rss_end_mb - report.rss_start_mb < 50

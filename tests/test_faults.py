"""Faults with real processes: a daemon killed or frozen mid-job, a client that vanishes,
a job that runs out of memory. Nothing is lost that could be kept; the daemon keeps serving."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest

from paintbridge.plugin.client import HEARTBEAT_MS, Client, Frame, Job, JobRequest, JobState
from paintbridge.plugin.protocol import ErrorCode

from .conftest import start_daemon

W, H = 64, 64
HEARTBEAT_TIMEOUT = 3 * HEARTBEAT_MS / 1000


def image() -> Frame:
    img = np.full((H, W, 4), 180, np.uint8)
    img[..., 3] = 255
    return Frame(W, H, "rgba8", img.tobytes())


def until(client: Client, job: Job, state: JobState, timeout: float = 60) -> float:
    """Pump until ``job`` reaches ``state``; returns the seconds it took."""
    t0 = time.monotonic()
    while job.state is not state:
        client.pump(50)
        assert time.monotonic() - t0 < timeout, (job.state, job.error_message)
    return time.monotonic() - t0


@pytest.fixture
def models_args(tiny_models) -> list[str]:
    return ["--models", str(tiny_models.models_dir), "--no-embedded"]


def test_daemon_killed_mid_job(tmp_path, models_args) -> None:
    d = start_daemon(tmp_path, *models_args)
    with Client(d.endpoint) as client:
        job = client.submit(JobRequest("img2img", {"steps": 200, "count": 8}, image=image()))
        until(client, job, JobState.RUNNING)
        t0 = time.monotonic()
        d.proc.kill()                                   # SIGKILL, for real
        until(client, job, JobState.FAILED, timeout=HEARTBEAT_TIMEOUT + 2)
        assert job.error_code == ErrorCode.DISCONNECTED and not job.patches
        assert "lost the connection" in job.error_message
        assert time.monotonic() - t0 < HEARTBEAT_TIMEOUT + 2
        # the daemon comes back on the same endpoint: the client reconnects by itself
        d2 = start_daemon(tmp_path, *models_args, endpoint=d.endpoint, wait=False)
        try:
            deadline = time.monotonic() + 90
            while job.error_code != ErrorCode.NOT_FOUND:  # asked again: the new one never knew it
                client.pump(100)
                assert time.monotonic() < deadline, d2.output()
            assert job.state is JobState.FAILED and "restarted" in job.error_message
            again = client.wait(client.submit(JobRequest("img2img", {"steps": 2},
                                                         image=image())), 60)
            assert again.state is JobState.DONE
        finally:
            d2.stop()


def test_frozen_daemon_is_detected_by_heartbeat_and_its_job_resumes(tmp_path,
                                                                    models_args) -> None:
    d = start_daemon(tmp_path, *models_args)
    try:
        with Client(d.endpoint) as client:
            job = client.submit(JobRequest("img2img", {"steps": 60, "count": 2, "seed": 4},
                                           image=image()))
            until(client, job, JobState.RUNNING)
            d.proc.send_signal(signal.SIGSTOP)          # alive but silent: only heartbeats see it
            detected = until(client, job, JobState.FAILED, timeout=HEARTBEAT_TIMEOUT + 2)
            assert job.lost and detected < HEARTBEAT_TIMEOUT + 2
            d.proc.send_signal(signal.SIGCONT)
            # reconnected, the client asks about the job; the daemon finished it meanwhile
            until(client, job, JobState.DONE, timeout=120)
            assert [p.seed for p in job.patches] == [4, 5]
    finally:
        d.proc.send_signal(signal.SIGCONT)
        d.stop()


def test_client_vanishes_and_fetches_its_result_later(tmp_path, models_args) -> None:
    d = start_daemon(tmp_path, *models_args)
    try:
        with Client(d.endpoint, client_id="laptop-7") as client:
            job = client.submit(JobRequest("img2img", {"steps": 30, "seed": 2}, image=image()),
                                job_id="night-sky")
            until(client, job, JobState.RUNNING)
        # the client is gone (socket closed mid-job); the daemon finishes the job anyway
        with Client(d.endpoint, client_id="laptop-7") as back:
            deadline = time.monotonic() + 60
            while "night-sky" not in back.status()["finished"]:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert back.status()["jobs"] == []          # nothing left running or queued
            got = back.wait(back.fetch("night-sky"), timeout=30)
            assert got.state is JobState.DONE and got.patches[0].seed == 2
        with Client(d.endpoint, client_id="someone-else") as other:
            stranger = other.wait(other.fetch("night-sky"), timeout=30)
            assert stranger.state is JobState.FAILED and stranger.error_code == "not_found"
    finally:
        d.stop()


def test_out_of_memory_is_an_error_with_advice(tmp_path, models_args) -> None:
    d = start_daemon(tmp_path, *models_args)
    try:
        with Client(d.endpoint) as client:
            assert client.wait(client.submit(JobRequest("img2img", {"steps": 2}, image=image())),
                               60).state is JobState.DONE
            vm = int(next(line.split()[1] for line in open(f"/proc/{d.proc.pid}/status")
                          if line.startswith("VmSize:"))) * 1024
            # the daemon may grow by 400 MB from here: a 6000x6000 float job needs far more
            subprocess.run(["prlimit", f"--pid={d.proc.pid}", f"--as={vm + 400 * 2**20}"],
                           check=True)
            side = 6000
            big = Frame(side, side, "rgba8", bytes(side * side * 4))
            job = client.wait(client.submit(JobRequest("img2img", {"steps": 2}, image=big)), 120)
            assert job.state is JobState.FAILED and job.error_code == ErrorCode.OUT_OF_MEMORY
            assert "smaller region" in job.error_message
            ok = client.wait(client.submit(JobRequest("img2img", {"steps": 2}, image=image())), 60)
            assert ok.state is JobState.DONE
    finally:
        d.stop()

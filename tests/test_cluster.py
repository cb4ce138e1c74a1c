"""The daemon in front of Ray Serve (backend/cluster/dispatch.py), with real Ray on this machine: a
local Ray instance with 2 CPU replicas of the embedded model behind the daemon's own front
door. The same results as the local worker for a fixed seed, control layers included; two
clients' jobs interleave fairly; cancel reaches the running replica; a replica killed
mid-job loses nothing and the client is told; each replica loads a model once; the real
GIMP and the real Krita work through it unchanged; the daemon outlives the process that
drives Ray."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paintbridge.backend.cluster.dispatch import ClusterError, plan
from paintbridge.plugin import shared
from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState
from paintbridge.plugin.session import job_progress
from tools import childdaemon, quality

from .conftest import DaemonProc, free_port, start_daemon
from .test_control_jobs import outline_layer
from .test_gimp import ensure_chroot, fresh_profile, run_gimp

pytest.importorskip("ray.serve")

SIDE = 64
PICTURE = quality.smooth_picture(SIDE)
#: what hello says of the fixture's cluster: CPU replicas, --cache-size reaching them
CLUSTER_INFO = {"replicas": 2, "gpus_per_replica": 0.0, "models_per_replica": 3}
KRITA_LIMIT = 400


@pytest.mark.fast
def test_replicas_take_a_gpu_each_where_the_cluster_has_gpus() -> None:
    """A studio's head machine may have no GPU: what replicas take is the cluster's
    business, not the daemon's device's; a plan the cluster cannot hold is refused (Serve
    would wait for ever), unless the GPUs per replica are given (an autoscaling cluster)."""
    gpu_cluster = {"CPU": 48.0, "GPU": 6.0}
    assert plan(gpu_cluster, 6, None) == 1.0
    assert plan(gpu_cluster, 12, 0.5) == 0.5
    assert plan(gpu_cluster, 2, 0.0) == 0.0         # CPU replicas asked for
    assert plan({"CPU": 2.0}, 2, None) == 0.0
    with pytest.raises(ClusterError, match="need 7 GPUs; the Ray cluster has 6"):
        plan(gpu_cluster, 7, None)
    assert plan({"CPU": 8.0}, 2, 1.0) == 1.0     # given: GPU nodes may join on demand
    with pytest.raises(ClusterError, match="3 replicas need 3 CPUs; the Ray cluster has 2"):
        plan({"CPU": 2.0}, 3, None)


@pytest.mark.fast
def test_a_retry_is_shown_to_the_artist() -> None:
    """The words every host shows: a retry after a worker died, and a cluster daemon."""
    job = Job("j", "img2img")
    job.apply({"event": "progress", "stage": "denoising", "step": 5, "total": 20}, [])
    job.apply({"event": "progress", "stage": "retrying", "retry": 1}, [])
    assert (job.retries, job.step) == (1, 0)
    assert job_progress(job) == (None, "A worker stopped: running the job again (retry 1)…")
    job.apply({"event": "progress", "stage": "denoising", "step": 1, "total": 20}, [])
    assert job_progress(job) == (0.05, "Step 1/20 (retry 1: a worker stopped)")
    assert shared.cluster_text(CLUSTER_INFO) == "a cluster of 2 CPU workers"
    assert shared.cluster_text({"replicas": 1, "gpus_per_replica": 1.0}) == \
        "a cluster of 1 GPU worker"
    assert shared.cluster_text({"replicas": 3}) == "a cluster of 3 workers"   # older daemons


def test_a_cluster_too_small_for_its_replicas_is_refused(tmp_path: Path) -> None:
    """Ray is started, the plan checked against what it has, and the daemon says why it
    cannot start instead of waiting for replicas that never come (runs before the module's
    cluster starts)."""
    err = _refused(tmp_path, "--cluster", "auto", "--replicas", "100000", timeout=240,
                   env=dict(os.environ))
    assert "100000 replicas need 100000 CPUs; the Ray cluster has" in err, err[-3000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """A studio's daemon, its cluster set in the config file (bench/ and the refusal test
    take the command-line route)."""

    log_dir = tmp_path_factory.mktemp("cluster")
    config = log_dir / "config.json"
    config.write_text(json.dumps({"cluster": "auto", "replicas": 2, "cache_size": 3}))
    d = start_daemon(log_dir, "--config", str(config), wait=False)
    try:
        childdaemon.wait_ready(d.proc, d.endpoint, d.log, timeout=300)
    except RuntimeError:
        d.stop()
        raise
    yield d
    assert d.stop(timeout=60) == 0, d.output


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("local"))
    yield d
    d.stop()


def _submit(c: Client, seed: int, steps: int = 6, **params: object) -> Job:
    return c.submit(JobRequest("img2img", {"prompt": "a red circle", "seed": seed, "steps": steps,
                                "strength": 1.0, **params},
                               image=Frame(SIDE, SIDE, "rgba8", PICTURE.tobytes())))


def test_results_are_the_local_workers(cluster: DaemonProc, local: DaemonProc) -> None:
    with Client(cluster.endpoint) as c, Client(local.endpoint) as here_client:
        assert c.hello()["cluster"] == CLUSTER_INFO
        on_cluster = [c.wait(_submit(c, seed), 300) for seed in (1, 2, 3)]
        here = [here_client.wait(_submit(here_client, seed), 300) for seed in (1, 2, 3)]
        loaded = c.hello()["loaded"]
    for a, b in zip(on_cluster, here, strict=True):
        assert a.state is b.state is JobState.DONE, (a.error_message, b.error_message)
        assert bytes(a.patches[0].data) == bytes(b.patches[0].data)
        assert not any(k.startswith("_") for k in a.info)   # the daemon's keys stay its own
    assert len({j.info["replica"] for j in on_cluster}) >= 1
    assert loaded == ["default"]    # what the replicas hold, not the idle daemon


def test_control_layers_reach_the_replicas(cluster: DaemonProc, local: DaemonProc) -> None:
    """A scribble control through the cluster gives the local daemon's pixels, and they
    differ from the same seed without it: the ControlNet ran on the replica."""
    params = {"prompt": "a red shape on a white background", "seed": 7, "steps": 6}
    controlled = {**params, "controls": [{"type": "scribble"}]}
    outline = outline_layer("triangle", (8, 6, 40, 38))
    results = []
    for endpoint, p, controls in ((cluster.endpoint, controlled, [outline]),
                                  (local.endpoint, controlled, [outline]),
                                  (cluster.endpoint, params, [])):
        with Client(endpoint) as c:
            job = c.wait(c.submit(JobRequest("txt2img", p, size=(SIDE, SIDE),
                                             controls=controls)), 300)
        assert job.state is JobState.DONE, job.error_message
        results.append(bytes(job.patches[0].data))
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_a_light_client_is_not_stuck_behind_a_heavy_one(cluster: DaemonProc) -> None:
    """A queues six jobs, then B one. Straight into Serve's router B would finish last; the
    daemon's fair queue hands B's job on after at most one more of A's (A is ahead in the
    rotation), so with two replicas B is among the first four to finish."""
    finished: list[str] = []
    with Client(cluster.endpoint) as a, Client(cluster.endpoint) as b:
        heavy = [_submit(a, 10 + i, steps=20) for i in range(6)]
        deadline = time.monotonic() + 600
        while any(j.state is JobState.SENT for j in heavy):   # all six in the queue first
            a.pump(50)
            assert time.monotonic() < deadline
        light = _submit(b, 20, steps=20)
        pending = [*heavy, light]
        while pending and time.monotonic() < deadline:
            a.pump(50)
            b.pump(50)
            for job in [j for j in pending if j.finished]:
                assert job.state is JobState.DONE, job.error_message
                finished.append("B" if job is light else "A")
                pending.remove(job)
    assert not pending and finished.index("B") <= 3, finished


def test_cancel_reaches_the_running_replica(cluster: DaemonProc) -> None:
    with Client(cluster.endpoint) as c:
        job = _submit(c, 30, steps=200)
        deadline = time.monotonic() + 300
        while job.step < 2 and time.monotonic() < deadline:
            c.pump(50)
        assert job.state is JobState.RUNNING and job.step >= 2
        t0 = time.monotonic()
        c.cancel(job)
        c.wait(job, 60)
        assert job.state is JobState.CANCELLED and time.monotonic() - t0 < 10
        after = c.wait(_submit(c, 31), 300)    # both replicas still serve
        assert after.state is JobState.DONE, after.error_message


def _running_replica(daemon: DaemonProc, job: str) -> int:
    """The pid of the replica process the daemon logged as running ``job`` (the last one)."""
    found = re.findall(rf"job {re.escape(job)} runs on replica \S+ \(pid (\d+) on ",
                       daemon.output())
    assert found, f"the daemon did not say who runs job {job}:\n{daemon.output()[-2000:]}"
    return int(found[-1])


def _replica_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-f", "ServeReplica:paintbridge"], capture_output=True,
                         text=True).stdout.split()
    return [int(p) for p in out]


def test_a_replica_killed_mid_job_loses_nothing(cluster: DaemonProc) -> None:
    """The replica running a job dies: the job runs again on the other one; its client gets
    exactly one result, the one the seed gives, after an event that says it runs again."""
    with Client(cluster.endpoint) as c:
        reference = c.wait(_submit(c, 40, steps=60), 300)
        assert reference.state is JobState.DONE
        job = _submit(c, 40, steps=60)
        ends: list[str] = []
        apply = job.apply

        def counting(event, frames):   # every last event the daemon sends for it
            if event["event"] in ("result", "error", "cancelled"):
                ends.append(event["event"])
            if event.get("stage") == "retrying":
                ends.append(f"retrying {event['retry']}: {event['message']}")
            apply(event, frames)

        job.apply = counting   # type: ignore[method-assign]
        deadline = time.monotonic() + 300
        while job.step < 3 and time.monotonic() < deadline:
            c.pump(50)
        pids = _replica_pids()
        assert len(pids) == 2
        busy = _running_replica(cluster, job.id)   # the daemon says who runs it
        assert busy in pids, (busy, pids)
        os.kill(busy, signal.SIGKILL)
        while not job.finished and time.monotonic() < deadline:
            c.pump(100)
        assert job.state is JobState.DONE, job.error_message
        assert bytes(job.patches[0].data) == bytes(reference.patches[0].data)
        for _ in range(20):      # nothing more arrives for it
            c.pump(100)
    assert ends == ["retrying 1: the worker running the job stopped; it runs again from the "
                    "start (retry 1 of 2)", "result"]
    assert job.retries == 1


def test_each_replica_loads_a_model_once(cluster: DaemonProc) -> None:
    """Serve's model multiplexing sends a model's jobs to replicas that hold it: eight jobs
    of one model load it at most once per replica (the other tests may have loaded it)."""
    loads = []
    with Client(cluster.endpoint) as c:
        for seed in range(50, 58):
            stages: list[str | None] = []
            job = c.wait(_submit(c, seed), 300, on_update=lambda j, s=stages: s.append(j.stage))
            assert job.state is JobState.DONE, job.error_message
            loads.append("loading" in stages)
    assert sum(loads) <= 2, loads


@pytest.mark.host
def test_gimp_works_unchanged_against_the_cluster(cluster: DaemonProc) -> None:
    """The GIMP plug-in, as installed, inpaints and upscales through a cluster daemon in
    the real GIMP 3 (tests/gimp/cases.py): the front door is the same."""

    chroot = ensure_chroot()
    work, inside, _ = fresh_profile(chroot, "paintbridge-cluster-")
    try:
        run = run_gimp(chroot, inside, f"{inside}/cases.py",
                       {"PB_ENDPOINT": cluster.endpoint, "PB_DEAD_ENDPOINT": "tcp://127.0.0.1:9",
                        "PB_ONLY": "inpaint_rgb8,upscale"})
        out = work / "results.json"
        assert out.exists(), run.stderr[-3000:]
        results = json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    inpaint, upscale = results["inpaint_rgb8"], results["upscale"]
    assert inpaint["status"] == "success", inpaint.get("message")
    assert inpaint["after"] == inpaint["before"]
    assert [r["opaque"] for r in inpaint["results"]] == [24 * 20]
    assert upscale["status"] == "success", upscale.get("message")
    assert upscale["new"]["size"] == [48, 40] and upscale["images"] == 1


@pytest.mark.host
def test_krita_works_unchanged_against_the_cluster(cluster: DaemonProc,
                                                   tmp_path: Path) -> None:
    """The docker, installed as a user installs it, in the real Krita against the cluster
    daemon: a layer generated into the selection; the replica running the next job
    SIGKILLed, and still exactly one new layer, after the docker said the job runs again;
    a control layer steering the result on a replica; Cancel leaving the image as it was."""

    from tests.krita.harness import HERE, KritaHome, require_krita, run_krita_gui

    from .test_krita_ui import EMBEDDED, _control_case, check_control_step

    require_krita(full=True)
    while len(_replica_pids()) < 2:    # one killed by an earlier test comes back
        time.sleep(1)
    home = KritaHome(tmp_path)
    home.install()
    out = home.root / "out"
    out.mkdir()
    cfg = home.root / "test.json"
    cfg.write_text(json.dumps({"out": str(out), "limit": KRITA_LIMIT - 20,
                               **({"control": _control_case()} if EMBEDDED.is_file()
                                  else {})}))
    env = home.env(PAINTBRIDGE_ENDPOINT=cluster.endpoint,
                   PAINTBRIDGE_KRITA_TEST_DRIVER=str(HERE / "cluster_driver.py"),
                   PAINTBRIDGE_KRITA_TEST_CONFIG=str(cfg))
    rc, log = run_krita_gui(home, env, KRITA_LIMIT)
    path = out / "result.json"
    assert path.is_file(), f"krita rc={rc}, no result:\n{log[-4000:]}"
    res = json.loads(path.read_text())
    assert res.get("ok") and rc == 0, res.get("error", "") + "\n" + log[-4000:]
    assert "a cluster of 2 CPU workers" in res["status"], res["status"]
    background = ["Background", "paintlayer", True]
    assert res["layers_1"] == [background, ["a red apple [seed 42]", "paintlayer", True]]
    assert res["compare_1"]["outside_changed"] == 0 and res["source_identical_1"]
    kill = res["kill"]
    assert res["replicas_before_kill"] == 2
    assert any("a worker stopped" in t.lower() for t in kill["texts"]), kill["texts"]
    assert kill["retries"] == 1 and kill["results"] == 2, kill
    assert sorted(name for name, *_ in kill["layers"]) == [   # one new layer, no more
        "Background", "a red apple [seed 42]", "a red apple [seed 43]"]
    assert kill["source_identical"]
    if EMBEDDED.is_file():
        check_control_step(res["control"], out)
    assert res["cancel"]["state"] == "cancelled" and "Cancelled" in res["cancel"]["message"]
    assert res["cancel"]["unchanged"] and res["cancel"]["source_identical"]


def test_the_daemon_outlives_its_cluster(cluster: DaemonProc) -> None:
    """The process that drives Ray dies (as a Ray driver does when its cluster goes away):
    the running job ends with a clear error, the daemon keeps answering, and the next job
    starts the cluster again (after the other tests: it restarts Ray)."""
    with Client(cluster.endpoint) as c:
        job = _submit(c, 60, steps=200)
        deadline = time.monotonic() + 300
        while job.step < 2 and time.monotonic() < deadline:
            c.pump(50)
        agents = subprocess.run(["pgrep", "-P", str(cluster.proc.pid), "-f",
                                 "paintbridge.backend.cluster.agent"],
                                capture_output=True, text=True).stdout.split()
        assert len(agents) == 1, agents
        os.kill(int(agents[0]), signal.SIGKILL)
        c.wait(job, 120)
        assert job.state is JobState.FAILED and job.error_code == "internal"
        assert "stopped while running the job" in (job.error_message or "")
        assert c.hello()["cluster"] == CLUSTER_INFO
        again = c.wait(_submit(c, 61), 600)
        assert again.state is JobState.DONE, again.error_message


def _refused(tmp_path: Path, *args: str, timeout: float = 120,
             env: dict[str, str] | None = None) -> str:
    """What ``paintbridge serve ARGS`` says on stderr as it refuses to start; ``env`` None:
    a bare one (no Ray token a developer may have set)."""
    base = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"} if env is None else env
    out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "serve", *args,
                          "--bind", f"tcp://127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=timeout,
                         env={**base, "HOME": str(tmp_path),
                              "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert out.returncode != 0, out.stdout
    return out.stderr


@pytest.mark.fast
def test_a_remote_ray_without_a_token_is_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, "--cluster", "10.1.2.3:6379")
    assert "without Ray's token authentication" in err, err


@pytest.mark.fast
def test_replicas_without_a_cluster_are_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, "--replicas", "2")
    assert "--replicas and --replica-gpus need --cluster" in err, err

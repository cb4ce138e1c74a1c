"""A real daemon process over real ZeroMQ, running real diffusers pipelines on tiny models."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState
from paintbridge.plugin.protocol import ErrorCode

from .conftest import DaemonProc, start_daemon

W, H = 96, 80


def scene() -> np.ndarray:
    """An RGBA8 test image: a gradient with a square in it."""
    img = np.zeros((H, W, 4), np.uint8)
    img[..., 0] = np.linspace(0, 255, W)[None, :]
    img[..., 1] = np.linspace(255, 0, H)[:, None]
    img[..., 2] = 90
    img[..., 3] = 255
    img[30:50, 40:60, :3] = (250, 20, 20)
    return img


def selection(lo: tuple[int, int] = (20, 30), hi: tuple[int, int] = (60, 70)) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[lo[0]:hi[0], lo[1]:hi[1]] = 255
    m[lo[0] - 4:lo[0], lo[1]:hi[1]] = 128   # a soft edge
    return m


def image_frame(img: np.ndarray, fmt: str = "rgba8") -> Frame:
    if fmt == "bgra8":
        img = img[..., [2, 1, 0, 3]]
    return Frame(img.shape[1], img.shape[0], fmt, np.ascontiguousarray(img).tobytes())


def mask_frame(m: np.ndarray) -> Frame:
    return Frame(m.shape[1], m.shape[0], "gray8", m.tobytes())


def run(client: Client, kind: str, params: dict, image: Frame | None = None,
        mask: Frame | None = None, **kw: object) -> Job:
    outer = {k: kw.pop(k) for k in ("job_id", "send_timeout") if k in kw}
    job = client.submit(JobRequest(kind, {"steps": 4, **params}, image=image, mask=mask, **kw),
                        **outer)
    return client.wait(job, timeout=120)


def patch_pixels(patch) -> np.ndarray:
    return np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)


def test_hello_and_models(client: Client) -> None:
    hello = client.hello()
    assert hello["protocol"] == 1 and hello["device"] == "cpu"
    assert hello["dtype"] in ("bfloat16", "float32")
    assert hello["limits"]["max_pixels"] > 0
    assert "live" in hello["features"]
    names = {m["name"]: m for m in client.models()}
    assert names["tiny-v1"]["arch"] == "v1" and names["tiny-inpainting"]["arch"] == "inpainting"
    for kind in ("v1", "inpainting", "xl_base", "xl_inpaint"):
        assert names[f"single-{kind}"]["arch"] == kind
        assert names[f"single-{kind}"]["usable"]


@pytest.mark.parametrize("model", ["tiny-inpainting", "tiny-v1", "single-v1", "single-inpainting",
                                   "single-xl_base", "single-xl_inpaint"])
def test_inpaint_alpha_is_exactly_zero_outside_selection(client: Client, model: str) -> None:
    img, m = scene(), selection()
    job = run(client, "inpaint", {"model": model, "seed": 5, "prompt": "a red circle"},
              image_frame(img), mask_frame(m), offset=(1000, 2000))
    assert job.state is JobState.DONE, job.error_message
    (patch,) = job.patches
    assert patch.seed == 5 and patch.format == "rgba8"
    px = patch_pixels(patch)
    # map the patch back onto the region; everything outside the selection is 0 bit for bit
    full = np.zeros((H, W, 4), np.uint8)
    x, y = patch.x - 1000, patch.y - 2000
    full[y:y + patch.height, x:x + patch.width] = px
    assert (full[m == 0] == 0).all()
    assert (full[m == 255][:, 3] == 255).all()
    assert 100 < full[18, 40, 3] < 156       # the half-selected edge stays half


def test_grow_and_feather_bound_the_patch(client: Client) -> None:
    img, m = scene(), selection()
    job = run(client, "inpaint", {"seed": 1, "grow": 6, "feather": 3},
              image_frame(img), mask_frame(m))
    (patch,) = job.patches
    full = np.zeros((H, W, 4), np.uint8)
    full[patch.y:patch.y + patch.height, patch.x:patch.x + patch.width] = patch_pixels(patch)
    grown = np.zeros((H, W), bool)
    grown[16 - 6:60 + 6, 30 - 6:70 + 6] = True
    assert (full[~grown] == 0).all() and full[..., 3].max() == 255
    assert (patch.x, patch.y) == (24, 10)


def test_same_seed_same_bytes_and_count(client: Client) -> None:
    img, m = scene(), selection()
    params = {"seed": 42, "count": 3, "prompt": "a blue square"}
    a = run(client, "inpaint", params, image_frame(img), mask_frame(m))
    b = run(client, "inpaint", params, image_frame(img), mask_frame(m))
    assert [p.seed for p in a.patches] == [42, 43, 44]
    assert [bytes(p.data) for p in a.patches] == [bytes(p.data) for p in b.patches]
    assert bytes(a.patches[0].data) != bytes(a.patches[1].data)


def test_random_seed_is_reported(client: Client) -> None:
    img, m = scene(), selection()
    job = run(client, "inpaint", {}, image_frame(img), mask_frame(m))
    seed = job.patches[0].seed
    again = run(client, "inpaint", {"seed": seed}, image_frame(img), mask_frame(m))
    assert bytes(again.patches[0].data) == bytes(job.patches[0].data)


@pytest.mark.parametrize("model", ["tiny-v1", "single-xl_base", "tiny-inpainting"])
def test_img2img_whole_layer_in_client_format(client: Client, model: str) -> None:
    img = scene()
    job = run(client, "img2img", {"model": model, "seed": 3, "strength": 0.5},
              image_frame(img, "bgra8"))
    assert job.state is JobState.DONE, job.error_message
    (patch,) = job.patches
    assert (patch.x, patch.y, patch.width, patch.height, patch.format) == (0, 0, W, H, "bgra8")
    assert (patch_pixels(patch)[..., 3] == 255).all()


def test_img2img_high_bit_depth_formats(client: Client) -> None:
    img16 = (scene().astype(np.uint16) * 257).astype("<u2")
    job = run(client, "img2img", {"seed": 3}, Frame(W, H, "rgba16", img16.tobytes()))
    assert job.patches[0].format == "rgba16"
    assert len(job.patches[0].data) == W * H * 8
    imgf = (scene().astype(np.float32) / 255).astype("<f4")
    m = np.zeros((H, W), "<f4")
    m[10:30, 10:30] = 0.25
    job = run(client, "img2img", {"seed": 3}, Frame(W, H, "rgbaf32", imgf.tobytes()),
              Frame(W, H, "grayf32", m.tobytes()))
    px = np.frombuffer(job.patches[0].data, "<f4").reshape(20, 20, 4)
    assert np.allclose(px[..., 3], 0.25)   # soft selection values are honoured


@pytest.mark.parametrize("model", ["tiny-v1", "tiny-inpainting", "single-xl_base"])
def test_txt2img_fills_the_selection(client: Client, model: str) -> None:
    m = selection()
    job = run(client, "txt2img", {"model": model, "seed": 9}, mask=mask_frame(m))
    assert job.state is JobState.DONE, job.error_message
    (patch,) = job.patches
    assert (patch.x, patch.y, patch.width, patch.height) == (30, 16, 40, 44)
    job = run(client, "txt2img", {"model": model, "seed": 9}, size=(64, 48))
    assert (job.patches[0].width, job.patches[0].height) == (64, 48)


def test_progress_and_preview(client: Client) -> None:
    img, m = scene(), selection()
    job = client.submit(JobRequest("inpaint", {"steps": 8, "seed": 1}, image=image_frame(img),
                                   mask=mask_frame(m), preview=True))
    seen = []
    client.wait(job, timeout=120, on_update=lambda j: seen.append((j.state, j.step, j.total)))
    assert job.state is JobState.DONE
    steps = [s for state, s, _ in seen if state is JobState.RUNNING]
    assert steps == sorted(steps) and steps[-1] == seen[-2][2]
    assert job.preview is not None and job.preview.format == "rgba8"
    assert len(job.preview.data) == job.preview.width * job.preview.height * 4


def test_cancel_running_and_queued(client: Client) -> None:
    img, m = scene(), selection()
    slow = {"steps": 200, "count": 8, "seed": 1}
    running = client.submit(JobRequest("inpaint", slow, image=image_frame(img), mask=mask_frame(m)))
    queued = client.submit(JobRequest("inpaint", slow, image=image_frame(img), mask=mask_frame(m)))
    while running.state is not JobState.RUNNING:
        client.pump(100)
        assert not running.finished, running.error_message
    client.cancel(queued)
    client.cancel(running)
    t0 = time.monotonic()
    client.wait(queued, timeout=30)
    client.wait(running, timeout=30)
    assert queued.state is JobState.CANCELLED and running.state is JobState.CANCELLED
    assert time.monotonic() - t0 < 10
    assert not running.patches and not queued.patches
    assert run(client, "inpaint", {"seed": 1}, image_frame(img), mask_frame(m)).patches


def test_cancel_unknown_job_is_an_error(daemon: DaemonProc) -> None:
    reply = raw_exchange(daemon.endpoint, [enc({"v": 1, "op": "cancel", "job": "nope"})])
    assert reply == {"v": 1, "event": "error", "code": ErrorCode.NOT_FOUND, "job": "nope",
                     "message": "no active job 'nope'", "field": "job"}


# --------------------------------------------------------------------------- malformed input


def raw_exchange(endpoint: str, parts: list[bytes], timeout: float = 10) -> dict:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        s.send_multipart(parts)
        assert s.poll(int(timeout * 1000)), "no answer"
        return json.loads(s.recv_multipart()[0])
    finally:
        s.close()


def enc(h: dict) -> bytes:
    return json.dumps(h).encode()


def submit(**over: object) -> dict:
    h = {"v": 1, "op": "submit", "job": "bad", "kind": "inpaint", "params": {"steps": 2},
         "frames": [{"role": "image", "width": 8, "height": 8, "format": "rgba8"},
                    {"role": "mask", "width": 8, "height": 8, "format": "gray8"}]}
    h.update(over)
    return h


OK_FRAMES = [bytes(256), b"\xff" * 64]

MALFORMED = [
    ([b"{oops"], ErrorCode.BAD_MESSAGE),
    ([b"\xff\xfe\x00"], ErrorCode.BAD_MESSAGE),
    ([b"[]"], ErrorCode.BAD_MESSAGE),
    ([enc({"v": 7, "op": "hello"})], ErrorCode.BAD_VERSION),
    ([enc({"v": 1, "op": "explode"})], ErrorCode.UNKNOWN_OP),
    ([enc({"v": 1})], ErrorCode.UNKNOWN_OP),
    ([enc(submit()), OK_FRAMES[0]], ErrorCode.BAD_FRAME),
    ([enc(submit()), *OK_FRAMES, b"extra"], ErrorCode.BAD_FRAME),
    ([enc(submit()), bytes(255), OK_FRAMES[1]], ErrorCode.BAD_FRAME),
    ([enc(submit(frames=[{"role": "image", "width": 65536, "height": 65536,
                          "format": "rgbaf32"}]))], ErrorCode.TOO_LARGE),
    ([enc(submit())[:-1] + b', "params": {"strength": NaN}}', *OK_FRAMES],
     ErrorCode.BAD_MESSAGE),
    ([enc(submit(params={"strength": -1})), *OK_FRAMES], ErrorCode.BAD_FIELD),
    ([enc(submit(params={"steps": -3})), *OK_FRAMES], ErrorCode.BAD_FIELD),
    ([enc(submit(params={"model": "nope"})), *OK_FRAMES], ErrorCode.UNKNOWN_MODEL),
    ([enc(submit(params={"model": "../tiny-v1"})), *OK_FRAMES], ErrorCode.UNKNOWN_MODEL),
    ([enc(submit(params={"model": "/etc/passwd"})), *OK_FRAMES], ErrorCode.UNKNOWN_MODEL),
    ([enc(submit(params={"model": "tiny-v1/unet"})), *OK_FRAMES], ErrorCode.UNKNOWN_MODEL),
    ([enc(submit(job=None)), *OK_FRAMES], ErrorCode.BAD_FIELD),
    ([enc({"v": 1, "op": "cancel"})], ErrorCode.BAD_FIELD),
    ([enc({"v": 1, "op": "echo", "frames": [{"role": "x", "width": 2, "height": 2,
                                            "format": "gray8"}]}), b"abc"], ErrorCode.BAD_FRAME),
    ([enc({"v": 1, "op": "hello"}), *([b"x"] * 50)], ErrorCode.TOO_LARGE),
]


@pytest.mark.parametrize("parts, code", MALFORMED)
def test_malformed_requests_get_errors_and_daemon_keeps_serving(
        daemon: DaemonProc, client: Client, parts: list[bytes], code: str) -> None:
    reply = raw_exchange(daemon.endpoint, parts)
    assert reply["event"] == "error" and reply["code"] == code, reply
    assert reply["message"]
    assert client.hello()["protocol"] == 1


def test_empty_mask_fails_cleanly(daemon: DaemonProc, client: Client) -> None:
    reply = raw_exchange(daemon.endpoint, [enc(submit()), bytes(256), bytes(64)])
    assert reply["event"] == "accepted"
    job = run(client, "img2img", {"seed": 1}, image_frame(scene()),
              mask_frame(np.zeros((H, W), np.uint8)))
    assert job.state is JobState.FAILED and job.error_code == ErrorCode.BAD_FRAME
    assert "selects nothing" in job.error_message


def test_duplicate_job_id(client: Client) -> None:
    img, m = scene(), selection()
    job = client.submit(JobRequest("inpaint", {"steps": 50, "count": 4}, image=image_frame(img),
                                   mask=mask_frame(m)), job_id="dup")
    client.jobs.pop("dup")
    again = client.submit(JobRequest("inpaint", {"steps": 2}, image=image_frame(img),
                                     mask=mask_frame(m)), job_id="dup")
    client.wait(again, timeout=30)
    assert again.state is JobState.FAILED and again.error_code == ErrorCode.DUPLICATE_JOB
    client.jobs["dup"] = job
    client.cancel(job)
    client.wait(job, timeout=30)


def test_echo_returns_frames_unchanged(client: Client) -> None:
    data = bytes(range(256)) * 4
    frames = client.echo([Frame(16, 16, "rgba8", data), Frame(4, 4, "grayf32", data[:64])])
    assert [bytes(f) for f in frames] == [data, data[:64]]


# --------------------------------------------------------------------------- separate daemons


def test_queue_full_is_busy(tiny_models, tmp_path) -> None:
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded",
                     "--max-queue", "2", "--max-queue-per-client", "2")
    try:
        with Client(d.endpoint) as client:
            img, m = scene(), selection()
            slow = {"steps": 200, "count": 8}
            jobs = [client.submit(JobRequest("inpaint", slow, image=image_frame(img),
                                             mask=mask_frame(m)))]
            while jobs[0].state is not JobState.RUNNING:   # the first one leaves the queue
                client.pump(100)
            jobs += [client.submit(JobRequest("inpaint", slow, image=image_frame(img),
                                              mask=mask_frame(m)))
                     for _ in range(2)]                     # the queue is full now
            over = client.submit(JobRequest("inpaint", slow, image=image_frame(img),
                                            mask=mask_frame(m)))
            client.wait(over, timeout=30)
            assert over.state is JobState.FAILED and over.error_code == ErrorCode.BUSY
            assert [j.state for j in jobs[1:]] == [JobState.QUEUED, JobState.QUEUED]
            assert [j.position for j in jobs] == [0, 1, 2]   # the running one counts
            client.cancel(jobs[0])                             # ... and when it ends, the
            client.wait(jobs[0], timeout=30)                   # waiting ones move up
            deadline = time.monotonic() + 30
            while jobs[2].position != 1 and time.monotonic() < deadline:
                client.pump(100)
            assert jobs[2].state is JobState.QUEUED and jobs[2].position == 1
            for j in jobs:
                client.cancel(j)
            for j in jobs:
                client.wait(j, timeout=30)
                assert j.state is JobState.CANCELLED
    finally:
        assert d.stop() == 0


def test_sigterm_mid_job_exits_cleanly(tiny_models, tmp_path) -> None:
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded")
    with Client(d.endpoint) as client:
        job = client.submit(JobRequest("inpaint", {"steps": 200, "count": 8},
                                       image=image_frame(scene()),
                                       mask=mask_frame(selection())))
        while job.state is not JobState.RUNNING:
            client.pump(100)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        client.wait(job, timeout=15)   # as docs/daemon.md says: cancelled, not "lost"
        assert job.state is JobState.CANCELLED, (job.state, job.error_message)
        assert job.error_message == "the daemon is shutting down"
        assert d.stop() == 0
        assert time.monotonic() - t0 < 15
        assert "daemon stopped" in d.output()


def test_non_loopback_bind_is_refused(tmp_path) -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "serve", "--bind",
                          "tcp://0.0.0.0:47001", "--no-embedded"], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ,
                                                          XDG_CONFIG_HOME=str(tmp_path)))
    assert out.returncode == 2 and "without authentication" in out.stderr


def test_no_models_is_said_clearly(tmp_path) -> None:
    (tmp_path / "empty").mkdir()       # a models folder with nothing in it
    d = start_daemon(tmp_path, "--no-embedded", "--models", str(tmp_path / "empty"))
    try:
        with Client(d.endpoint) as client:
            job = client.submit(JobRequest("img2img", {}, image=image_frame(scene())))
            client.wait(job, timeout=30)
            assert job.error_code == ErrorCode.UNKNOWN_MODEL and "no usable model" in \
                job.error_message
    finally:
        d.stop()
    assert "no usable model" in d.output()


def test_broken_model_is_an_error_not_a_crash(tiny_models, tmp_path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    fake = models / "fake"
    (fake / "unet").mkdir(parents=True)
    (fake / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (fake / "unet" / "config.json").write_text('{"in_channels": 4}')
    d = start_daemon(tmp_path, "--no-embedded", "--models", str(models), "--models",
                     str(tiny_models.models_dir))
    try:
        with Client(d.endpoint) as client:
            listed = {m["name"]: m for m in client.models()}
            assert not listed["broken.safetensors"]["usable"]
            job = run(client, "img2img", {"model": "fake"}, image_frame(scene()))
            assert job.state is JobState.FAILED and job.error_code == ErrorCode.MODEL_ERROR
            job = run(client, "img2img", {"model": "tiny-v1"}, image_frame(scene()))
            assert job.state is JobState.DONE
    finally:
        d.stop()


def test_oversized_message_is_dropped_by_zeromq(tiny_models, tmp_path) -> None:
    """A frame beyond ZMQ_MAXMSGSIZE never reaches the daemon's code; others keep working."""
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded",
                     "--max-pixels", "4096")
    try:
        hello = raw_exchange(d.endpoint, [enc({"v": 1, "op": "hello"})])
        limit = hello["limits"]["max_pixels"] * 16 + hello["limits"]["max_header_bytes"]
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        monitor = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        s.connect(d.endpoint)
        s.send_multipart([enc({"v": 1, "op": "hello"}), bytes(limit + 1)])
        assert monitor.poll(5000), "the daemon's ZeroMQ did not drop the oversized message"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        assert s.poll(200) == 0            # and nothing was answered
        s.disable_monitor()
        monitor.close()
        s.close()
        reply = raw_exchange(d.endpoint, [enc(submit(frames=[
            {"role": "image", "width": 128, "height": 64, "format": "rgba8"}])), bytes(1)])
        assert reply["code"] == ErrorCode.TOO_LARGE
        assert raw_exchange(d.endpoint, [enc({"v": 1, "op": "hello"})])["event"] == "hello"
    finally:
        assert d.stop() == 0


def job_events(endpoint: str, job: str, model: str) -> list[tuple[dict, list[bytes]]]:
    """Every event of one img2img job as it came over the wire (a bare DEALER: no client
    state machine in between, nothing coalesced), up to the one that ends it."""
    img = scene()
    header = {"v": 1, "op": "submit", "job": job, "kind": "img2img",
              "params": {"model": model, "steps": 3, "seed": 1},
              "frames": [{"role": "image", "width": W, "height": H, "format": "rgba8"}]}
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    events = []
    try:
        s.send_multipart([enc(header), img.tobytes()])
        while not events or events[-1][0]["event"] not in ("result", "error", "cancelled"):
            assert s.poll(120_000), f"no event after {events}"
            first, *frames = s.recv_multipart()
            events.append((json.loads(first), frames))
    finally:
        s.close()
    return events


def test_loading_a_model_is_a_progress_stage(tiny_models, tmp_path) -> None:
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), "--no-embedded")
    try:
        first = job_events(d.endpoint, "first", "tiny-v1")
        progress = [e for e, _ in first if e["event"] == "progress"]
        assert first[0][0]["event"] == "accepted" and first[-1][0]["event"] == "result"
        assert progress[0] == {"v": 1, "job": "first", "event": "progress", "stage": "loading",
                               "model": "tiny-v1"}        # before any denoising step
        assert progress[1:] and all(e["stage"] == "denoising" and e["total"] > 0
                                    for e in progress[1:])
        second = job_events(d.endpoint, "second", "tiny-v1")
        stages = {e["stage"] for e, _ in second if e["event"] == "progress"}
        assert stages == {"denoising"}                    # loaded already: no loading stage
        assert raw_exchange(d.endpoint, [enc({"v": 1, "op": "hello"})])["loaded"] == ["tiny-v1"]

        # what a host reads from the client's Job while it waits
        job, seen = Job("first", "img2img"), []
        for event, frames in first:
            job.apply(event, frames)
            seen.append((job.state, job.stage, job.model))
        assert seen[:2] == [(JobState.QUEUED, None, "tiny-v1"),
                            (JobState.RUNNING, "loading", "tiny-v1")]
        assert seen[-2][1] == "denoising" and job.step == job.total > 0
        assert job.state is JobState.DONE and job.model == "tiny-v1"
    finally:
        assert d.stop() == 0

"""Live jobs ("latest wins") and the prompt cache, through a real daemon and real pipelines."""

from __future__ import annotations

import time

import numpy as np
import pytest

from paintbridge.backend.door.fairqueue import FairQueue
from paintbridge.plugin.client import Client, Job, JobRequest, JobState
from paintbridge.plugin.protocol import (
    ErrorCode,
    Limits,
    ProtocolError,
    parse_submit,
    submit_header,
)

from .conftest import DaemonProc
from .test_daemon import image_frame, mask_frame, scene, selection

SLOW = {"steps": 200, "count": 8, "seed": 1}
QUICK = {"steps": 4, "seed": 1}


def submit(client: Client, params: dict, live: bool = False) -> Job:
    return client.submit(JobRequest("inpaint", params, image=image_frame(scene()),
                                    mask=mask_frame(selection()), live=live))


def until(client: Client, job: Job, state: JobState, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while job.state is not state:
        assert not job.finished or state.finished, (job.state, job.error_message)
        assert time.monotonic() < end, f"{job.id} never {state}"
        client.pump(50)


@pytest.mark.fast
def test_replace_keeps_the_clients_turn() -> None:
    q: FairQueue[int] = FairQueue(10, 10)
    q.put("a", "a0", 0)
    q.put("b", "b0", 0)
    q.put("a", "live1", 1)
    assert q.replace("a", "live1", "live2", 2) == 2
    assert q.replace("a", "gone", "live3", 3) is None
    assert [q.take(0)[1] for _ in range(3)] == ["a0", "b0", "live2"]


@pytest.mark.fast
def test_live_must_be_a_boolean() -> None:
    header = submit_header("j", "txt2img", {}, [], size=(8, 8))
    assert parse_submit({**header, "live": True}, [], Limits()).live
    with pytest.raises(ProtocolError) as exc:
        parse_submit({**header, "live": "yes"}, [], Limits())
    assert exc.value.field == "live"


def test_a_new_live_job_replaces_the_running_and_the_queued_one(daemon: DaemonProc) -> None:
    """However fast a client sends, one live job of it waits at most; each replaced one
    ends 'cancelled' naming its successor, and only the newest brings a result."""
    with Client(daemon.endpoint) as a:
        first = submit(a, SLOW, live=True)
        until(a, first, JobState.RUNNING)
        burst = [submit(a, SLOW if i < 19 else QUICK, live=True) for i in range(20)]
        status = a.status()
        assert len([j for j in status["jobs"] if j["state"] == "queued"]) <= 1
        t0 = time.monotonic()
        a.wait(first, timeout=30)
        assert first.state is JobState.CANCELLED and time.monotonic() - t0 < 10
        assert first.info["replaced_by"] == burst[0].id
        for older, newer in zip(burst, burst[1:], strict=False):
            a.wait(older, timeout=30)
            assert older.state is JobState.CANCELLED, older.error_message
            assert older.info["replaced_by"] == newer.id and not older.patches
        last = a.wait(burst[-1], timeout=120)
        assert last.state is JobState.DONE and len(last.patches) == 1


def test_live_jobs_do_not_starve_other_clients(daemon: DaemonProc) -> None:
    """A live job takes its client's turn in the round robin like any job: another
    client's queued job runs before the live job that replaced a running one."""
    with Client(daemon.endpoint) as a, Client(daemon.endpoint) as b:
        busy = submit(b, SLOW)
        until(b, busy, JobState.RUNNING)
        live1 = submit(a, {**SLOW, "steps": 60}, live=True)
        # Two sockets have no order between them: a's turn must be taken before b's job
        # arrives, or b's job is ahead by arrival and the test measures the network.
        until(a, live1, JobState.QUEUED, 10)
        normal = submit(b, QUICK)
        live2 = submit(a, {**SLOW, "steps": 60}, live=True)   # takes live1's place
        until(a, live1, JobState.CANCELLED, 10)
        assert live1.info["replaced_by"] == live2.id
        until(b, normal, JobState.QUEUED, 10)
        until(a, live2, JobState.QUEUED, 10)
        assert live2.position == 1 and normal.position == 2   # behind `busy`, in turn
        b.cancel(busy)
        until(a, live2, JobState.RUNNING)
        live3 = submit(a, QUICK, live=True)                    # live2 stops; live3 waits
        a.wait(live2, timeout=30)
        assert live2.state is JobState.CANCELLED
        b.wait(normal, timeout=120)
        assert normal.state is JobState.DONE
        assert live3.state is JobState.QUEUED   # it waited for b's job
        assert a.wait(live3, timeout=120).state is JobState.DONE


def test_live_and_normal_jobs_of_one_client_coexist(daemon: DaemonProc) -> None:
    """A live job replaces live jobs only: the client's ordinary jobs all finish."""
    with Client(daemon.endpoint) as a:
        normal = submit(a, QUICK)
        live1 = submit(a, QUICK, live=True)
        live2 = submit(a, QUICK, live=True)
        for job in (normal, live1, live2):
            a.wait(job, timeout=120)
        assert normal.state is JobState.DONE and live2.state is JobState.DONE
        assert live1.state in (JobState.CANCELLED, JobState.DONE)   # it may have run already


def test_a_busy_queue_refuses_a_live_job_and_keeps_the_old_one(daemon: DaemonProc) -> None:
    with Client(daemon.endpoint) as a:
        running = submit(a, SLOW, live=True)
        until(a, running, JobState.RUNNING)
        fill = [submit(a, SLOW) for _ in range(Limits().max_queue_per_client)]
        refused = submit(a, QUICK, live=True)
        a.wait(refused, timeout=10)
        assert refused.error_code == ErrorCode.BUSY
        assert running.state is JobState.RUNNING   # nothing changed
        for job in (running, *fill):
            a.cancel(job)
        for job in (running, *fill):
            assert a.wait(job, timeout=30).state is JobState.CANCELLED


def test_the_cached_prompt_gives_the_pipelines_own_output(tiny_models) -> None:
    """Text-encoder outputs handed to the pipeline are what it computes itself: the same
    bytes, with and without guidance's negative side, on SD1 and SDXL."""
    import torch

    from paintbridge.backend.models.prompt_cache import PromptCache
    from paintbridge.backend.models.registry import ModelEntry, ModelRegistry, Source, load_pipeline

    xl = ModelEntry("xl", tiny_models.single("xl_inpaint"), Source.SINGLE_FILE,
                    config=tiny_models.config_file.parent / "configs" / "tiny-xl_inpaint")
    table = {e.name: e for e in ModelRegistry([tiny_models.models_dir], [xl],
                                              include_embedded=False).scan()}
    for entry in (table["tiny-inpainting"], table["xl"]):
        pipe = load_pipeline(entry, torch.device("cpu"), torch.float32)
        pipe.set_progress_bar_config(disable=True)
        cache = PromptCache()
        size = pipe.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels)
                                                    - 1)
        image = torch.rand(1, 3, size, size)
        mask = torch.zeros(1, 1, size, size)
        mask[..., size // 4:, size // 4:] = 1
        for guidance, negative in ((3.0, "blurry"), (3.0, None), (1.0, None)):
            common = {"image": image, "mask_image": mask, "num_inference_steps": 3,
                      "guidance_scale": guidance, "output_type": "np", "height": size,
                      "width": size}
            own = pipe(prompt="a red circle", negative_prompt=negative, **common,
                       generator=torch.Generator().manual_seed(5)).images[0]
            for _ in range(2):   # a miss, then a hit
                texts = cache.embeds(pipe, "a red circle", negative, guidance, ())
                cached = pipe(**texts, **common,
                              generator=torch.Generator().manual_seed(5)).images[0]
                assert np.array_equal(own, cached), (entry.name, guidance, negative)
        assert cache.misses == 3 and cache.hits == 3, entry.name


def test_the_lcm_sampler_runs_few_steps_by_default(daemon: DaemonProc) -> None:
    """Live with the lcm sampler: left to the model, 6 steps (not its 20) at low guidance."""
    with Client(daemon.endpoint) as a:
        lcm = a.wait(submit(a, {"sampler": "lcm", "seed": 1}), timeout=120)
        plain = a.wait(submit(a, {"seed": 1}), timeout=120)
        asked = a.wait(submit(a, {"sampler": "lcm", "steps": 3, "seed": 1}), timeout=120)
    assert lcm.state is JobState.DONE and (lcm.total, asked.total) == (6, 3)
    assert plain.total >= 20   # the model's default (its PNDM scheduler adds a step)


@pytest.mark.fast
def test_few_step_checkpoints_are_told_by_name() -> None:
    from paintbridge.backend.models.registry import few_step_defaults

    assert few_step_defaults("sdxl_lightning_4step")["steps"] == 4
    assert few_step_defaults("sd_turbo") == {"steps": 4, "guidance": 1.0, "sampler": "euler_a"}
    assert few_step_defaults("dreamshaper-8-LCM")["sampler"] == "lcm"
    assert few_step_defaults("hyperrealism_v3") == {} == few_step_defaults("v1-5-pruned")

"""LoRAs in jobs, proven on the sample adapter trained here for the embedded model.

``samples/loras/gray.safetensors`` (diffusers/PEFT keys) and ``gray-kohya.safetensors`` (the
same tensors under kohya/A1111 names) were trained by ``make train-lora-sample``: they teach
the embedded model the colour word "gray", which no caption of its training used, and leave
the eight colours it knows alone. So a test can check what the LoRA does (gray where the prompt says
gray, red still where it says red), that both file layouts and the prompt tag do the same,
that a job without LoRA afterwards is bit for bit what it was before any LoRA was loaded,
and that a LoRA that does not fit is refused with the field named and leaves nothing loaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from paintbridge.plugin.client import Client, Frame, Job, JobRequest, JobState
from paintbridge.plugin.protocol import ErrorCode
from tools.training.lora import COLOURS

from .conftest import DaemonProc, start_daemon
from .test_loras import kohya

DATA = Path(__file__).resolve().parents[1] / "samples" / "loras"
SIDE = 64
PALETTE = np.array(list(COLOURS.values()), np.float32)
NAMES = list(COLOURS)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """The embedded model; the trained LoRAs, one for another width, one broken file."""
    root = tmp_path_factory.mktemp("lora-jobs")
    loras = root / "loras"
    shutil.copytree(DATA, loras, ignore=shutil.ignore_patterns("*.json"))
    kohya(loras / "sd15-style.safetensors", 768, meta={"ss_base_model_version": "sd_v1"})
    kohya(loras / "xl-style.safetensors", 2048, te="lora_te1_,lora_te2_")
    data = (DATA / "gray.safetensors").read_bytes()
    (loras / "broken.safetensors").write_bytes(data[: len(data) // 3])
    d = start_daemon(root, "--loras", str(loras))
    yield d
    d.stop()


def canvas() -> tuple[Frame, Frame, np.ndarray]:
    img = np.zeros((SIDE, SIDE, 4), np.uint8)
    img[..., :3] = COLOURS["white"]
    img[..., 3] = 255
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[16:48, 16:48] = 255
    return (Frame(SIDE, SIDE, "rgba8", img.tobytes()),
            Frame(SIDE, SIDE, "gray8", mask.tobytes()), mask > 0)


def inpaint(client: Client, prompt: str = "a red circle", **params: object) -> Job:
    image, mask, _ = canvas()
    job = client.submit(JobRequest("inpaint", {"prompt": prompt, "seed": 11, "count": 4, "grow": 0,
                                    "feather": 0, **params}, image=image, mask=mask))
    return client.wait(job, timeout=300)


def colour_share(job: Job, colour: str) -> float:
    """Share of the selected pixels, over all variations, nearest to ``colour``."""
    assert job.state is JobState.DONE, job.error_message
    _, _, inside = canvas()
    hits = total = 0
    for patch in job.patches:
        px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
        full = np.zeros((SIDE, SIDE, 3), np.float32)
        full[patch.y:patch.y + patch.height, patch.x:patch.x + patch.width] = px[..., :3]
        nearest = ((full[inside][:, None, :] - PALETTE) ** 2).sum(-1).argmin(-1)
        hits += int((nearest == NAMES.index(colour)).sum())
        total += nearest.size
    return hits / total


def pixels(job: Job) -> list[bytes]:
    assert job.state is JobState.DONE, job.error_message
    return [bytes(p.data) for p in job.patches]


def test_the_lora_does_what_it_was_trained_for(daemon: DaemonProc) -> None:
    with Client(daemon.endpoint) as client:
        before = inpaint(client, "a gray circle")
        red_before = inpaint(client, "a red circle")
        gray = inpaint(client, "a gray circle", loras=[{"name": "gray", "weight": 1.0}])
        red = inpaint(client, "a red circle", loras=[{"name": "gray", "weight": 1.0}])
        zero = inpaint(client, "a gray circle", loras=[{"name": "gray", "weight": 0.0}])
        after = inpaint(client, "a gray circle")
    # on white, 0.51 of the selection comes out grey with the LoRA; 0.05 without (the soft
    # edges of shapes pass through grey)
    assert colour_share(gray, "gray") > 0.3 > 0.12 > colour_share(before, "gray")
    assert colour_share(zero, "gray") < 0.12
    assert abs(colour_share(red, "red") - colour_share(red_before, "red")) < 0.1
    assert pixels(after) == pixels(before)          # nothing leaks into the next job


def test_both_file_layouts_and_the_prompt_tag_agree(daemon: DaemonProc) -> None:
    with Client(daemon.endpoint) as client:
        wire = inpaint(client, "a gray circle", loras=[{"name": "gray", "weight": 0.8}])
        kohya_tag = inpaint(client, prompt="a gray circle, <lora:gray-kohya:0.8>")
        half = inpaint(client, "a gray circle", loras=[{"name": "gray", "weight": 0.3}])
    assert pixels(kohya_tag) == pixels(wire)
    assert pixels(half) != pixels(wire)


@pytest.mark.parametrize("params, field, words", [
    ({"loras": [{"name": "nope"}]}, "loras", "unknown LoRA 'nope'"),
    ({"loras": [{"name": "broken"}]}, "loras", "LoRA 'broken' is not usable: cannot read"),
    ({"loras": [{"name": "xl-style"}]}, "loras", "LoRA 'xl-style' is for sdxl"),
    ({"prompt": "a cat <lora:gray:lots>"}, "prompt", "'lots' is not a weight"),
    ({"prompt": "a cat <lora:gray:9>"}, "prompt", "weight 9 is outside -4..4"),
    ({"prompt": "<lora:gray> <lora:gray:1>"}, "loras", "asked for twice"),
])
def test_what_cannot_be_used_is_refused_with_the_field(daemon: DaemonProc, params: dict,
                                                       field: str, words: str) -> None:
    with Client(daemon.endpoint) as client:
        image, mask, _ = canvas()
        job = client.submit(JobRequest("inpaint", {"prompt": "a red circle", "steps": 2, **params},
                                       image=image, mask=mask))
        client.wait(job, timeout=60)
    assert job.state is JobState.FAILED and job.error_code == ErrorCode.BAD_FIELD
    assert words in (job.error_message or ""), job.error_message


def test_the_wire_form_is_checked_before_sending() -> None:
    from paintbridge.plugin.protocol import ProtocolError

    image, mask, _ = canvas()
    with Client("tcp://127.0.0.1:1") as client:
        for loras, words in (([{"name": "gray", "weight": 5}], "in -4..4"),
                             ([{"name": "a"}] * 9, "at most 8"),
                             ([{"name": "gray", "scale": 1}], "unknown key(s) scale"),
                             ("gray", "must be a list")):
            with pytest.raises(ProtocolError, match=words.replace("(", r"\(")
                               .replace(")", r"\)")) as info:
                client.submit(JobRequest("inpaint", {"loras": loras}, image=image, mask=mask))
            assert info.value.field == "loras"


def test_a_lora_of_another_width_fails_in_the_worker_and_leaves_nothing(
        daemon: DaemonProc) -> None:
    with Client(daemon.endpoint) as client:
        before = inpaint(client)
        image, mask, _ = canvas()
        job = client.wait(client.submit(JobRequest("inpaint", {"prompt": "x", "steps": 2, "loras": [
            {"name": "sd15-style", "weight": 1.0}]}, image=image, mask=mask)), timeout=60)
        assert job.error_code == ErrorCode.BAD_FIELD
        assert "trained for a cross-attention width of 768; model 'default' has 64" in \
            (job.error_message or "")
        after = inpaint(client)
    assert pixels(after) == pixels(before)


def evaluator_hit(client: Client, colour: str, shape: str, loras: list | None) -> float:
    """The evaluator's colour hit (tools/training/evaluate.py) on its first 6 inpainting
    cases, each sent as a job: the whole 64² scene, its mask box, its seed."""
    from tools.training.evaluate import inpaint_cases, prompt_text, score_region

    hits = 0
    cases = inpaint_cases(colour if colour != "gray" else "white", 6, 4242)
    for case in cases:
        img = np.concatenate([case.scene.image, np.full((SIDE, SIDE, 1), 255, np.uint8)], -1)
        job = client.submit(JobRequest("inpaint",
                                       {"prompt": prompt_text(colour, shape), "seed": case.seed,
                                        "grow": 0, "feather": 0, "colour_match": "off",
                                        **({"loras": loras} if loras else {})},
                                       image=Frame(SIDE, SIDE, "rgba8", img.tobytes()),
                                       mask=Frame(SIDE, SIDE, "gray8",
                                       (case.mask * 255).astype(np.uint8).tobytes())))
        client.wait(job, timeout=300)
        assert job.state is JobState.DONE, job.error_message
        p = job.patches[0]
        out = case.scene.image.copy()
        px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4)
        out[p.y:p.y + p.height, p.x:p.x + p.width] = px[..., :3]
        hits += score_region(out, case.scene.image, case.mask, COLOURS).colour == colour
    return hits / len(cases)


def test_the_evaluator_numbers_hold_through_the_daemon(daemon: DaemonProc) -> None:
    """The LoRA issue's numbers, with a margin, on a fixed sample through the daemon: the
    new word hits at weight 1 (0.92 on the evaluator's 30 cases), hardly without the LoRA or
    at weight 0 (0.20), and the base colours stay (0.979 -> 0.946 over 8 prompts; purple,
    the nearest to grey, loses most: 0.97 -> 0.70)."""
    on = [{"name": "gray", "weight": 1.0}]
    with Client(daemon.endpoint) as client:
        new = [evaluator_hit(client, "gray", s, on) for s in ("circle", "square", "triangle")]
        without = [evaluator_hit(client, "gray", s, None) for s in ("circle", "triangle")]
        zero = evaluator_hit(client, "gray", "circle", [{"name": "gray", "weight": 0.0}])
        base = [(evaluator_hit(client, c, s, None), evaluator_hit(client, c, s, on))
                for c, s in (("red", "circle"), ("green", "triangle"))]
    assert np.mean(new) >= 0.7, new
    assert np.mean(without) <= 0.35 and zero <= 0.35, (without, zero)
    before, after = (np.mean(x) for x in zip(*base, strict=True))
    assert after >= before - 0.15, base

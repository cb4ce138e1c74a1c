"""Admission resolves a submit once into one immutable job: the model's name, the prompt's
LoRA tags, each LoRA, embedding and control named; what does not resolve is refused with its
field; the parsed request itself is never rewritten (real libraries over real files)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import pytest

from paintbridge.backend.door.admission import Admission
from paintbridge.backend.jobs.job import AdmittedJob
from paintbridge.backend.models.controlnets import ControlNetLibrary
from paintbridge.backend.models.embeddings import EmbeddingLibrary
from paintbridge.backend.models.loras import LoraLibrary
from paintbridge.backend.models.registry import ModelRegistry
from paintbridge.backend.models.upscalers import Upscalers
from paintbridge.plugin import protocol
from paintbridge.plugin.client import Frame
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError

pytestmark = pytest.mark.fast

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "loras"
SIDE = 64


@pytest.fixture(scope="module")
def admission() -> Admission:
    registry = ModelRegistry()
    registry.scan()
    return Admission(registry, LoraLibrary([SAMPLES]), EmbeddingLibrary([]),
                     ControlNetLibrary([]), Upscalers([]), Limits())


def parsed(params: dict, controls: int = 0) -> protocol.SubmitRequest:
    image = Frame(SIDE, SIDE, "rgba8", bytes(SIDE * SIDE * 4))
    frames = [image] + [Frame(SIDE, SIDE, "rgba8", bytes(SIDE * SIDE * 4))] * controls
    specs = [image.spec("image")] + [f.spec("control") for f in frames[1:]]
    header = protocol.submit_header("j1", "img2img", params, specs)
    return protocol.parse_submit(header, [f.data for f in frames], Limits())


def test_a_submit_is_resolved_once_and_the_parsed_request_is_not_rewritten(admission) -> None:
    request = parsed({"prompt": "a red circle <lora:gray:0.8>",
                      "controls": [{"type": "scribble"}]}, controls=1)
    before = copy.deepcopy(request.params)
    job = admission.admit(request)
    assert request.params == before                    # admission built its own params
    assert job.request.params["model"] == job.model == "default"   # None: the default
    assert job.request.params["prompt"] == "a red circle"   # the tag is taken out ...
    assert [lo.entry.name for lo in job.loras] == ["gray"]   # ... and became a LoRA
    assert job.request.params["loras"] == [{"name": "gray", "weight": 0.8}]
    assert [c.entry.name for c in job.controls] == ["shapes-scribble"]
    assert job.request.params["controls"][0]["model"] == "shapes-scribble"
    assert job.request.image_data is request.image_data   # frames travel untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.loras = ()                                  # type: ignore[misc]


def test_the_cluster_payload_is_the_admitted_job_with_arrays(admission) -> None:
    job = admission.admit(parsed({"prompt": "x", "controls": [{"type": "scribble"}]},
                                 controls=1))
    back = pickle.loads(pickle.dumps(job.portable(), protocol=5))
    assert isinstance(back, AdmittedJob) and back.request.params == job.request.params
    assert bytes(back.request.image_data) == bytes(job.request.image_data)
    assert [bytes(d) for d in back.request.control_data] == \
        [bytes(d) for d in job.request.control_data]
    assert back.controls[0].entry.name == job.controls[0].entry.name


@pytest.mark.parametrize("params, code, field, words", [
    ({"model": "nope"}, ErrorCode.UNKNOWN_MODEL, "model", "nope"),
    ({"prompt": "<lora:missing:1>"}, ErrorCode.BAD_FIELD, "loras", "missing"),
    ({"loras": [{"name": "gray", "weight": 1.0}], "prompt": "<lora:gray:0.5>"},
     ErrorCode.BAD_FIELD, "loras", "twice"),    # the list and the prompt's tags are one list
    ({"controls": [{"type": "depth"}]}, ErrorCode.BAD_FIELD, "controls", "no depth ControlNet"),
    ({"controls": [{"type": "scribble", "model": "elsewhere"}]}, ErrorCode.BAD_FIELD,
     "controls", "elsewhere"),
])
def test_what_does_not_resolve_is_refused_with_its_field(admission, params, code, field,
                                                         words) -> None:
    request = parsed(params, controls=len(params.get("controls", [])))
    before = copy.deepcopy(request.params)
    with pytest.raises(ProtocolError) as caught:
        admission.admit(request)
    assert caught.value.code == code and caught.value.field == field
    assert words in caught.value.message
    assert request.params == before

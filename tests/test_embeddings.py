"""Textual-inversion embeddings, by name in the prompt, on the embedded model.

The files are made here from the embedded model's own token table, so a test can check
exactly what an embedding does: ``crimson`` holds the vector of the word "red", so "a crimson
circle" must give the pixels of "a red circle"; ``redcircle`` holds two vectors ("red",
"circle"), as multi-vector embeddings do. ``ink`` must not change "a pink circle" (a name is
a whole word, never part of one). Files that do not fit are refused with the field named.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPTokenizer

from paintbridge.backend.models.embeddings import EmbeddingLibrary, beside_checkpoints
from paintbridge.plugin.client import Client, JobRequest, JobState
from paintbridge.plugin.protocol import ErrorCode

from .conftest import DaemonProc, start_daemon
from .test_lora_jobs import canvas, pixels

EMBEDDED = Path(__file__).resolve().parents[1] / "backend" / "default_model"


def vectors(*words: str) -> torch.Tensor:
    tok = CLIPTokenizer.from_pretrained(str(EMBEDDED / "tokenizer"))
    (weights,) = (EMBEDDED / "text_encoder").glob("*.safetensors")
    state = load_file(weights)   # transformers 5 saves without the text_model. prefix
    table = state.get("text_model.embeddings.token_embedding.weight",
                      state.get("embeddings.token_embedding.weight"))
    ids = [i for w in words for i in tok(w, add_special_tokens=False).input_ids]
    assert len(ids) == len(words), "each word is one token of the embedded model"
    return table[ids].clone()


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An A1111 web UI with embeddings/ beside models/, and a ComfyUI models/embeddings."""
    root = tmp_path_factory.mktemp("emb")
    webui = root / "webui"
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    emb = webui / "embeddings"
    emb.mkdir()
    save_file({"emb_params": vectors("red")}, emb / "crimson.safetensors")
    save_file({"emb_params": vectors("red", "circle")}, emb / "redcircle.safetensors")
    save_file({"emb_params": torch.randn(1, 64)}, emb / "ink.safetensors")
    (emb / "old.pt").write_bytes(b"never opened")
    comfy = root / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    (comfy / "embeddings").mkdir()
    save_file({"emb_params": torch.zeros(2, 768)}, comfy / "embeddings" / "wide.safetensors")
    save_file({"clip_l": torch.zeros(1, 768), "clip_g": torch.zeros(1, 1280)},
              comfy / "embeddings" / "xl.safetensors")
    save_file({"a": torch.zeros(2, 3, 4)}, comfy / "embeddings" / "odd.safetensors")
    return root


def test_found_and_described(installs: Path) -> None:
    roots = beside_checkpoints([installs / "webui" / "models" / "Stable-diffusion",
                                installs / "ComfyUI" / "models" / "checkpoints"])
    assert roots == [installs / "webui" / "embeddings", installs / "ComfyUI" / "models" /
                     "embeddings"]
    found = {e.name: e for e in EmbeddingLibrary(roots).scan()}
    assert (found["redcircle"].vectors, found["redcircle"].width) == (2, 64)
    assert (found["wide"].arch, found["xl"].arch, found["xl"].vectors) == ("sd1", "sdxl", 1)
    assert "pickle" in (found["old"].error or "") and "not a textual" in (found["odd"].error
                                                                         or "")
    lib = EmbeddingLibrary(roots)
    lib.scan()
    assert [e.name for e in lib.named_in("a crimson circle, not crimsonish", "ink-blot")] == \
        ["crimson"]


@pytest.fixture(scope="module")
def daemon(installs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = start_daemon(tmp_path_factory.mktemp("emb-daemon"), "--models",
                     str(installs / "webui" / "models" / "Stable-diffusion"), "--embeddings",
                     str(installs / "ComfyUI" / "models" / "embeddings"))
    yield d
    d.stop()


def job(client: Client, prompt: str) -> object:
    image, mask, _ = canvas()
    j = client.submit(JobRequest("inpaint", {"prompt": prompt, "seed": 5, "count": 2, "steps": 8},
                                 image=image, mask=mask))
    return client.wait(j, timeout=300)


def test_a_name_in_the_prompt_is_its_vectors(daemon: DaemonProc) -> None:
    with Client(daemon.endpoint) as client:
        pink_before = job(client, "a pink circle")
        red = job(client, "a red circle")
        crimson = job(client, "a crimson circle")
        two = job(client, "a redcircle")
        ink = job(client, "an ink circle")
        pink_after = job(client, "a pink circle")
        other = job(client, "a crimsonx circle")
        listed = {e["name"]: e for e in client.request("models")[0]["embeddings"]}
    assert pixels(crimson) == pixels(red)               # exactly the word's vector
    assert pixels(two) == pixels(red)                   # "a" + [red, circle] vectors
    assert pixels(other) != pixels(red)                 # a longer word is not the name
    assert ink.state is JobState.DONE
    assert pixels(pink_after) == pixels(pink_before)    # "ink" inside "pink" untouched
    assert listed["redcircle"]["vectors"] == 2 and listed["wide"]["usable"] is True


@pytest.mark.parametrize("prompt, words", [
    ("a wide circle", "embedding 'wide' (sd1) does not fit model 'default' (text width 64)"),
    ("an xl circle", "embedding 'xl' is for sdxl"),
    ("an old circle", "embedding 'old' is not usable: pickle files are unsafe"),
])
def test_what_does_not_fit_is_refused_with_the_field(daemon: DaemonProc, prompt: str,
                                                     words: str) -> None:
    with Client(daemon.endpoint) as client:
        failed = job(client, prompt)
        assert failed.error_code == ErrorCode.BAD_FIELD and words in failed.error_message
        assert job(client, "a red circle").state is JobState.DONE


def test_the_cli_lists_them(daemon: DaemonProc) -> None:
    out = subprocess.run([sys.executable, "-m", "paintbridge.backend", "models", "--endpoint",
                          daemon.endpoint], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Embeddings (a word in a prompt):" in out.stdout
    assert "redcircle" in out.stdout and "2 vectors" in out.stdout

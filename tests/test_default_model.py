"""The embedded default model: dataset/scorer sanity and the colour target on shipped weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tools.training import data  # noqa: E402
from tools.training import evaluate as ev  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "backend" / "default_model"


def test_dataset_samples_match_their_ground_truth() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = data.render_scene(rng)
        assert scene.image.shape == (data.SIZE, data.SIZE, 3)
        assert scene.image.dtype == np.uint8
        cap = scene.caption()
        assert cap.endswith(f"{scene.bg_colour} background")
        for s in scene.shapes:
            assert s.colour != scene.bg_colour
            assert s.kind in cap and s.colour in cap
            # the shape's pixels carry its colour (nearest named colour)
            inside = data.shape_mask(s.kind, s.box)
            cls = ev.classify_pixels(scene.image[inside])
            assert np.mean(cls == list(data.COLOURS).index(s.colour)) > 0.95
    x, m, caps = data.training_batch(rng, 64)
    assert x.shape == (64, 3, data.SIZE, data.SIZE) and -1.0 <= x.min() and x.max() <= 1.0
    assert m.shape == (64, 1, data.SIZE, data.SIZE)
    assert 0 < sum(c == "" for c in caps) < 20  # caption dropout for CFG
    assert any(m_.min() == 1.0 for m_ in m)  # full masks exist (txt2img / img2img)


def test_object_box_contains_its_shape() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        scene = data.render_scene(rng, n_shapes=1)
        s = scene.shapes[0]
        box = data.box_mask(data.object_box(s, rng))
        assert box[data.shape_mask(s.kind, s.box)].all()


@pytest.mark.parametrize("kind", data.SHAPES)
def test_shape_classifier_on_rendered_shapes(kind: str) -> None:
    for side in range(14, 34, 3):
        box = (10, 12, 10 + side, 12 + side)
        assert ev.classify_shape(data.shape_mask(kind, box)) == kind


def test_scorer_validated_on_rendered_scenes() -> None:
    acc = ev.validate_scorer(n=20, seed=5)
    for kind, v in acc.items():
        assert v["colour"] >= 0.95, (kind, v)
        assert v["shape"] >= 0.9, (kind, v)


def test_shipped_folder_is_a_standard_small_inpaint_pipeline() -> None:
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 1024 * 1024
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt")]
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    unet = json.loads((MODEL / "unet" / "config.json").read_text())
    vae = json.loads((MODEL / "vae" / "config.json").read_text())
    sched = json.loads((MODEL / "scheduler" / "scheduler_config.json").read_text())
    pb = json.loads((MODEL / "paintbridge.json").read_text())
    assert unet["in_channels"] == 2 * vae["latent_channels"] + 1 == 9
    assert pb["native_size"] == unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
    assert sched["prediction_type"] == "sample"
    assert (MODEL / "tokenizer" / "vocab.json").exists()
    assert (MODEL / "tokenizer" / "merges.txt").exists()


@pytest.fixture(scope="module")
def pipe():
    import torch

    torch.set_num_threads(1)
    return ev.load_pipeline(MODEL)


def test_tokenizer_round_trips_offline(pipe) -> None:
    tok = pipe.tokenizer
    for w in data.WORDS:
        ids = tok(w).input_ids
        assert len(ids) == 3, (w, ids)  # bos, the word, eos
    assert tok.model_max_length == 77
    assert len(set(tok("a red circle").input_ids)) == 5


def test_prompt_steers_colour_on_shipped_weights(pipe) -> None:
    """Fixed small sample: the prompt's colour wins in the mask; the empty prompt rarely does."""
    pb = ev.model_defaults(MODEL)
    hits, ctl = [], []
    for i, (colour, shape) in enumerate((("red", "circle"), ("blue", "square"),
                                         ("green", "triangle"), ("yellow", "circle"))):
        cases = ev.inpaint_cases(colour, 5, seed=424242 + i)
        text = ev.prompt_text(colour, shape)
        for prompts, acc in (([text] * 5, hits), ([""] * 5, ctl)):
            outs = ev.run_pipe(pipe, prompts, cases, steps=pb["steps"], guidance=pb["guidance"])
            acc += [ev.score_region(o, c.scene.image, c.mask).colour == colour
                    for o, c in zip(outs, cases, strict=True)]
    assert np.mean(hits) >= 0.75, np.mean(hits)
    assert np.mean(ctl) <= 0.4, np.mean(ctl)

"""The words a host shows for a job: result layer and group names, the control map's
layer, an upscaled image's title and the progress line, the same in every host."""

from __future__ import annotations

from . import shared
from .document import ControlLayer
from .job import Job, JobState


def control_map_name(control: ControlLayer) -> str:
    """The layer "Preprocess to layer" makes."""
    return f"Control map: {control.name or 'layer'} ({control.preprocess or control.type})"


def upscaled_title(prompt: str, scale: int) -> str:
    """The new image's title, and its layer's name before the seed."""
    text = " ".join(prompt.split())
    return f"Upscaled ×{scale}" + (f": {_short(text, 40)}" if text else "")


def job_progress(job: Job) -> tuple[float | None, str]:
    """A job on its way as the fraction done (None while it cannot be known: queued, or
    loading its model) and a few words, the same in every host."""
    stage = job.stage or ("queued" if job.state is JobState.QUEUED else None)
    text = shared.stage_text(stage, job.step, job.total, job.model, job.position, job.retries)
    known = stage not in ("queued", "loading", "retrying") and job.total
    return (job.step / job.total if known else None), text


def _short(prompt: str, limit: int = 60) -> str:
    text = " ".join(prompt.split()) or "(no prompt)"
    return text[: limit - 1] + "…" if len(text) > limit else text


def layer_name(prompt: str, seed: int) -> str:
    """A result layer's name: the prompt (shortened) and the seed to reuse."""
    return f"{_short(prompt)} [seed {seed}]"


def group_name(prompt: str, count: int) -> str:
    """The name of the layer group that holds a batch's variations."""
    return f"{_short(prompt)} [{count} variations]"

"""Sampler names (the A1111/ComfyUI vocabulary artists know) -> diffusers schedulers.

Each job gets a fresh scheduler built from the model's own scheduler config, so the
model's training settings (beta schedule, prediction type) carry over and no state leaks
between jobs.
"""

from __future__ import annotations

from typing import Any

import diffusers as d

_SAMPLERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "euler": (d.EulerDiscreteScheduler, {}),
    "euler_a": (d.EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (d.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++",
                                                 "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (d.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++",
                                                        "use_karras_sigmas": True}),
    "ddim": (d.DDIMScheduler, {}),
    "lcm": (d.LCMScheduler, {}),
    "pndm": (d.PNDMScheduler, {"skip_prk_steps": True}),
    "unipc": (d.UniPCMultistepScheduler, {}),
}


def make(name: str, original: Any) -> Any:
    """A new scheduler for ``name`` ("default" = the model's own type), always derived from
    the model's original scheduler so one job's choice never leaks into the next."""
    if name == "default":
        return type(original).from_config(original.config)
    cls, overrides = _SAMPLERS[name]
    return cls.from_config(original.config, **overrides)

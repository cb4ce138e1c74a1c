"""Failure injection for tests: with ``PAINTBRIDGE_FAILPOINTS=1`` in the daemon's
environment, a job whose prompt holds ``failpoint:STAGE`` raises at that stage. A test can
so prove that the worker survives a failure where no real input causes one (frames are
validated before a job is queued) and then run a normal job on the same daemon.

Off unless the variable is set at start; then ``hit`` is one boolean test.
"""

from __future__ import annotations

import os

ENV = "PAINTBRIDGE_FAILPOINTS"
STAGES = ("decode", "denoise", "latents", "encode")
_ARMED = os.environ.get(ENV, "") not in ("", "0")


class InjectedFailure(RuntimeError):
    """What an armed failpoint raises."""


def hit(stage: str, prompt: str) -> None:
    if _ARMED and f"failpoint:{stage}" in prompt:
        raise InjectedFailure(f"failure injected at '{stage}' ({ENV})")

"""What every end shares (plugin/shared.py) and what the command line takes from the tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paintbridge.backend import cli
from paintbridge.backend.door import keys
from paintbridge.backend.models.device import is_out_of_memory
from paintbridge.plugin import shared
from paintbridge.plugin.params import PARAMS

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("endpoint, local", [
    ("tcp://127.0.0.1:47610", True), ("tcp://127.3.4.5:1", True), ("tcp://localhost:1", True),
    ("tcp://[::1]:47610", True), ("ipc:///tmp/pb", True), ("inproc://x", True),
    ("tcp://0.0.0.0:47610", False), ("tcp://*:47610", False), ("tcp://192.168.1.2:1", False),
    ("tcp://example.invalid:1", False), ("tcp://eth0:1", False), ("udp://127.0.0.1:1", False),
    ("tcp://[::1:1", False), ("nonsense", False),
])
def test_one_loopback_rule(endpoint: str, local: bool) -> None:
    assert shared.is_loopback(endpoint) is local


def test_user_folder_and_keys_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert shared.config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "paintbridge"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert keys.default_dir() == shared.keys_dir() == tmp_path / "paintbridge" / "keys"
    assert cli.config_path() == tmp_path / "paintbridge" / "config.json"


def test_stage_words() -> None:
    assert shared.stage_text("loading", model="sd15") == "Loading model sd15…"
    assert shared.stage_text("denoising", 3, 20) == "Step 3/20"
    assert shared.stage_text(None) == "Starting…"


def test_edit_options_are_the_parameter_table() -> None:
    parser = cli.build_parser()
    base = ["edit", "in.png", "-o", "out.png", "--prompt", "p"]
    args = parser.parse_args(base)
    assert args.prompt == "p"
    for p in (p for p in PARAMS if p.name != "prompt"):
        assert getattr(args, p.name) == (None if p.unset is not None else p.start), p.name
    old = parser.parse_args([*base, "--cfg", "5", "--negative", "blur"])   # old spellings
    new = parser.parse_args([*base, "--guidance", "5", "--negative-prompt", "blur"])
    assert (old.guidance, old.negative_prompt) == (new.guidance, new.negative_prompt) == (5.0,
                                                                                        "blur")
    with pytest.raises(SystemExit) as exc:                  # a forgotten prompt is a usage error
        parser.parse_args(["edit", "in.png", "-o", "out.png"])
    assert exc.value.code == cli.ExitCode.USAGE


def test_out_of_memory_by_type_then_by_message() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to ..."))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 1 bytes"))
    assert not is_out_of_memory(RuntimeError("size mismatch"))
    assert not is_out_of_memory(ValueError("CUDA error: out of memory"))   # not torch's

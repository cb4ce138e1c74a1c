"""Shared fixtures: tiny real models on disk, and real daemon processes on free ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools import childdaemon
from tools.childdaemon import free_port  # noqa: F401 - the tests import it from here

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TINY_KINDS = ("v1", "inpainting", "xl_base", "xl_inpaint")

#: The tiers beyond ``fast`` (pyproject lists them): ``host`` drives the real Krita or GIMP,
#: ``cluster`` needs Ray, ``daemon`` is the rest (a real daemon process, no host). A host
#: test elsewhere says so itself (``@pytest.mark.host``); test_layout checks that none hides.
HOST_MODULES = frozenset({"test_krita_ui", "test_krita_document", "test_krita_auth",
                          "test_gimp", "test_gimp_auth"})
CLUSTER_MODULES = frozenset({"test_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("fast"):
            continue
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module in HOST_MODULES:
            item.add_marker(pytest.mark.host)
        if module in CLUSTER_MODULES:
            item.add_marker(pytest.mark.cluster)
        if not (item.get_closest_marker("host") or item.get_closest_marker("cluster")):
            item.add_marker(pytest.mark.daemon)


@dataclass
class TinyModels:
    models_dir: Path      # scanned with --models: diffusers folders
    singles_dir: Path     # single files, listed in config.json with their config folders
    config_file: Path

    def single(self, kind: str) -> Path:
        return self.singles_dir / f"tiny-{kind}.safetensors"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Every tiny architecture, saved both as a diffusers folder and as an original-layout
    single file (our converter), as a user's model folders would hold them."""
    from tools.tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    build, models, singles, configs = (root / n for n in ("build", "models", "singles",
                                                          "configs"))
    for d in (models, singles, configs):
        d.mkdir()
    entries = []
    for kind in TINY_KINDS:
        paths = save_tiny_model(kind, build, seed=0)
        if kind in ("v1", "inpainting"):
            shutil.copytree(paths["diffusers"], models / f"tiny-{kind}")
        single = singles / f"tiny-{kind}.safetensors"
        shutil.move(paths["single_file"], single)
        config = configs / f"tiny-{kind}"
        shutil.move(paths["config"], config)
        entries.append({"name": f"single-{kind}", "path": str(single), "config": str(config)})
    shutil.rmtree(build)
    config_file = root / "config.json"
    config_file.write_text(json.dumps({"models": entries, "default_model": "tiny-inpainting"}))
    return TinyModels(models, singles, config_file)


@dataclass
class DaemonProc:
    proc: subprocess.Popen
    endpoint: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_daemon(log_dir: Path, *args: str, wait: bool = True,
                 endpoint: str | None = None, env: dict[str, str] | None = None) -> DaemonProc:
    """A real daemon process (its own XDG config home, so no user config leaks in)."""
    log = log_dir / f"daemon-{time.monotonic_ns()}.log"
    proc, endpoint = childdaemon.spawn(args, log, endpoint,
                                       env={"XDG_CONFIG_HOME": str(log_dir / "xdg"),
                                            **(env or {})})
    if wait:
        childdaemon.wait_ready(proc, endpoint, log)
    return DaemonProc(proc, endpoint, log)


@pytest.fixture(scope="session")
def daemon(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProc]:
    """One real daemon serving the tiny models (folders scanned + single files by config)."""
    d = start_daemon(tmp_path_factory.mktemp("daemon"), "--models", str(tiny_models.models_dir),
                     "--config", str(tiny_models.config_file), "--no-embedded")
    yield d
    d.stop()


@pytest.fixture
def client(daemon: DaemonProc) -> Iterator[object]:
    from paintbridge.plugin.client import Client

    with Client(daemon.endpoint) as c:
        yield c

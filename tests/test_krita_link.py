"""The docker's non-blocking connection probe (krita/paintbridge/link.py), without Krita:
it must never wait on the network, see a daemon come and go, and fail a job whose
connection is lost."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import DaemonProc, free_port
from tests.krita.harness import KritaHome


@pytest.fixture(scope="module")
def link_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The installed package (paintbridge/plugin inside it), imported outside Krita."""
    home = KritaHome(tmp_path_factory.mktemp("krita-link"))
    home.install()
    sys.path.insert(0, str(home.pykrita))
    try:
        return importlib.import_module("paintbridge.link")
    finally:
        sys.path.remove(str(home.pykrita))


def _spin(link, session, until, limit: float = 10.0) -> float:
    """Drive it like the docker's timer; returns the longest single update in seconds."""
    worst, deadline = 0.0, time.monotonic() + limit
    while not until() and time.monotonic() < deadline:
        t = time.monotonic()
        session.poll()
        link.update(time.monotonic())
        worst = max(worst, time.monotonic() - t)
        time.sleep(0.02)
    return worst


def test_connects_without_blocking(link_module: ModuleType, daemon: DaemonProc) -> None:
    session_mod = sys.modules["paintbridge.plugin.session"]
    session = session_mod.Session(daemon.endpoint)
    link = link_module.Link(session)
    worst = _spin(link, session, lambda: session.connected)
    assert session.connected and session.info["event"] == "hello"
    assert "tiny-inpainting" in session.models()
    assert worst < 0.2
    # the next probe's answer from the same daemon is no change (the docker then leaves
    # its model list alone)
    assert not link.update(time.monotonic() + 60)
    changed, deadline = [], time.monotonic() + 5
    while link._rid is not None and time.monotonic() < deadline:
        session.poll(50)
        changed.append(link.update(time.monotonic()))
    assert link._rid is None and changed and not any(changed)
    assert "job" not in session.info
    session.close()


def test_no_daemon_is_reported_at_once(link_module: ModuleType) -> None:
    session_mod = sys.modules["paintbridge.plugin.session"]
    client_mod = sys.modules["paintbridge.plugin.client"]
    session = session_mod.Session(f"tcp://127.0.0.1:{free_port()}")
    link = link_module.Link(session)
    session.job = client_mod.Job("x-1", "inpaint")      # a job in flight
    t = time.monotonic()
    assert link.update(time.monotonic())
    assert time.monotonic() - t < 0.2
    assert not session.connected and "no paintbridge daemon" in session.last_error
    assert session.job.state.value == "failed" and "lost" in session.job.error_message
    session.close()


def test_installed_layout_has_no_top_level_plugin(link_module: ModuleType) -> None:
    assert Path(link_module.__file__).parent.name == "paintbridge"
    assert sys.modules["paintbridge.plugin.client"].__name__ == "paintbridge.plugin.client"

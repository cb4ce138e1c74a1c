"""plugin.controller (the docker's logic without Qt) against real daemons, with a dict as the
settings store and an in-memory document; the Krita binding is proven in the real Krita by
tests/test_krita_ui.py and tests/test_krita_auth.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paintbridge.backend.door import keys
from paintbridge.plugin import protocol
from paintbridge.plugin.client import Job, JobState, Patch
from paintbridge.plugin.controller import CANCELLED, LOST, Controller, Line, job_progress
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings
from paintbridge.plugin.shared import default_endpoint
from tools import childdaemon

from .conftest import DaemonProc, TinyModels, free_port, start_daemon
from .test_session import ArrayDocument

TINY = ("--no-embedded", "--default-model", "tiny-inpainting")


class Layer:
    def __init__(self, name: str, visible: bool = True) -> None:
        self.name, self.visible = name, visible


class LayerDocument(ArrayDocument):
    """ArrayDocument with the controller's side of a host document: result layers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node = Layer("Background")
        self.added: list[Layer] = []
        self.group: Layer | None = None

    def add_results(self, patches: list[Patch], names: list[str], group: str | None) -> None:
        super().add_results(patches, names, group)
        self.added = [Layer(n, visible=i == 0) for i, n in enumerate(names)]
        self.group = Layer(group) if group else None

    def key(self, layer: Layer) -> int:
        return id(layer)

    def toggle(self, layer: Layer) -> None:
        if layer.name == "deleted":
            raise RuntimeError("gone")
        layer.visible = not layer.visible


def make(endpoint: str | None = None, store: dict[str, str] | None = None, **kw: Any
         ) -> tuple[Controller, dict[str, str]]:
    store = {} if store is None else store
    if endpoint is not None:
        store["endpoint"] = endpoint
    return Controller(lambda k: store.get(k, ""), store.__setitem__, **kw), store


def spin(c: Controller, until: Callable[[], bool], limit: float = 60.0) -> None:
    """Pump like the docker's timer until ``until()``."""
    deadline = time.monotonic() + limit
    while not until():
        assert time.monotonic() < deadline, (c.status, c.message, c.progress)
        c.pump()
        time.sleep(0.02)


def test_imports_neither_qt_nor_krita() -> None:
    code = ("import sys, paintbridge.plugin.controller; "
            "print([m for m in sys.modules if m.split('.')[0] in ('PyQt5', 'krita', 'gi')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_job_progress_words() -> None:
    job = Job("a-1", "inpaint")
    assert job_progress(job) == (0.0, "Starting…")
    job.state, job.position = JobState.QUEUED, 2
    assert job_progress(job) == (0.0, "Queued (2 ahead)…")
    job.state, job.stage, job.model = JobState.RUNNING, "loading", "tiny-v1"
    assert job_progress(job) == (0.0, "Loading model tiny-v1…")
    job.stage, job.step, job.total = "denoising", 3, 12
    assert job_progress(job) == (0.25, "Step 3/12")
    job.fail("disconnected", "gone")
    assert job_progress(job) == (0.0, LOST)


def test_connected_state_and_client_id(daemon: DaemonProc) -> None:
    c, store = make(daemon.endpoint)
    assert c.status.error and "Not connected" in c.status.text
    spin(c, lambda: c.session.connected)
    assert not c.status.error and c.status.text.startswith(f"Connected to {daemon.endpoint} —")
    assert "default model tiny-inpainting" in c.status.text
    assert not c.can_start_daemon and not c.running and c.progress == (0.0, "")
    choices = c.daemon_choices("model")
    assert choices[0] == ("", "Daemon default (tiny-inpainting)")
    assert ("tiny-inpainting", "tiny-inpainting") in choices
    assert c.daemon_choices("upscaler") == [("", "Lanczos (no upscaler model)")]
    c.settings.upscaler = "x4-ultra"        # stored, but this daemon has none: still shown
    assert c.daemon_choices("upscaler")[-1] == ("x4-ultra", "x4-ultra (not offered)")
    c.settings.upscaler = None
    assert c.limits == protocol.Limits(**c.session.info["limits"])
    # the client id is made once, kept, and the daemon knows this client by it
    assert len(store["client_id"]) == 32 and c.session.client_id == store["client_id"]
    again, _ = make(store=store)
    second, _ = make(store=store, window_index=1)
    assert again.client_id == c.client_id and second.client_id == f"{c.client_id}-2"
    for x in (c, again, second):
        x.close()


def test_generate_delivers_and_keeps_results(daemon: DaemonProc) -> None:
    c, store = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LayerDocument(300, 200, Rect(100, 60, 50, 40))
    before = doc.pixels.copy()
    settings = GenerationSettings(prompt="a red circle", seed=11, count=2, steps=2)
    assert c.generate(settings, lambda: doc)
    assert c.running and c.message.text == ""
    assert not c.generate(settings, lambda: doc) and "already running" in c.message.text
    spin(c, lambda: not c.running, 120)
    assert [n for n, _ in doc.layers] == ["a red circle [seed 11]", "a red circle [seed 12]"]
    assert doc.group.name == "a red circle [2 variations]"
    assert c.message.text.startswith("Added 2 layers (seed 11") and not c.message.error
    assert [(r.name, r.seed) for r in c.results] == [("a red circle [seed 11]", 11),
                                                    ("a red circle [seed 12]", 12)]
    assert c.session.job.id not in c.session.client.jobs    # delivered jobs are forgotten
    assert c.progress == (0.0, "") and (doc.pixels == before).all()
    # a result layer, or its group, stands for the layer it was made from
    assert c.source_of(id(doc.added[1])) is doc.node
    assert c.source_of(id(doc.group)) is doc.node and c.source_of(id(doc.node)) is None
    assert c.reuse_last_seed() == 11
    c.toggle(1)
    c.toggle_last()
    assert doc.added[1].visible is False and doc.added[0].visible is True
    c.toggle(0)
    assert doc.added[0].visible is False
    doc.added[0].name = "deleted"
    c.toggle(0)
    assert c.message == Line("That layer no longer exists.", error=True)
    # the settings went to the store, and come back
    assert GenerationSettings.from_json(store["settings"]) == settings
    assert make(store=store)[0].settings == settings
    c.close()


def test_cancel_and_failure_write_nothing(daemon: DaemonProc) -> None:
    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LayerDocument(300, 200, Rect(100, 60, 50, 40))
    assert c.reuse_last_seed() is None and "No result yet" in c.message.text
    assert c.generate(GenerationSettings(steps=200, count=8), lambda: doc)
    spin(c, lambda: c.progress[1].startswith("Step ") and c.progress[0] > 0)
    spin(c, lambda: c.preview is not None)
    c.cancel()
    assert c.message.text == "Cancelling…"
    spin(c, lambda: not c.running)
    assert c.message.text == CANCELLED and doc.layers == [] and c.results == []
    assert c.preview is None
    assert c.generate(GenerationSettings(model="no-such-model"), lambda: doc)
    spin(c, lambda: not c.running)
    assert c.message.error and c.message.text.startswith("Generation failed:")
    assert c.message.text.endswith("[unknown_model]") and doc.layers == []
    # nothing to read: said, nothing sent
    assert not c.generate(GenerationSettings(), lambda: None)
    assert c.message.text == "Open an image first." and not c.running
    assert not c.generate(GenerationSettings(mode="inpaint"), lambda: LayerDocument(50, 40))
    assert "needs a selection" in c.message.text and c.session.job.finished
    c.close()


def test_daemon_gone_then_started_again(tiny_models: TinyModels, tmp_path: Path) -> None:
    """Killed mid-job: nothing is written, the status says so, Generate explains; "Start
    local daemon" brings one up on the endpoint and the controller works again."""
    models = ("--models", str(tiny_models.models_dir), *TINY)
    first = start_daemon(tmp_path, *models)
    log = tmp_path / "launched.log"
    launched: list[subprocess.Popen] = []

    def launch(endpoint: str) -> subprocess.Popen:
        launched.append(childdaemon.spawn(models, log, endpoint)[0])
        return launched[-1]

    c, _ = make(first.endpoint, launch=launch, daemon_log=lambda: log)
    doc = LayerDocument(300, 200, Rect(100, 60, 50, 40))
    try:
        spin(c, lambda: c.session.connected)
        assert c.generate(GenerationSettings(steps=200, count=8), lambda: doc)
        spin(c, lambda: c.progress[1].startswith("Step "))
        first.stop(signal.SIGKILL)
        spin(c, lambda: c.progress[1] == LOST, 30)
        assert c.running
        c.cancel()                                   # nobody to tell: dropped at once
        assert not c.running and c.message.text == CANCELLED and doc.layers == []
        spin(c, lambda: not c.session.connected, 30)
        assert c.status.error and "Not connected" in c.status.text and c.can_start_daemon
        assert not c.generate(GenerationSettings(), lambda: doc)
        assert c.message.text.startswith(f"No paintbridge daemon answers at {first.endpoint}")
        assert "Start local daemon" in c.message.text
        c.start_daemon()
        assert c.starting_daemon and c.message.text.startswith("Starting the daemon on")
        spin(c, lambda: c.session.connected, 120)
        c.pump()
        assert not c.starting_daemon and c.message.text.startswith("Daemon started (")
        assert c.generate(GenerationSettings(prompt="again", steps=2, seed=5), lambda: doc)
        spin(c, lambda: not c.running, 120)
        assert [n for n, _ in doc.layers] == ["again [seed 5]"]
    finally:
        c.close()
        first.stop()
        for proc in launched:
            proc.kill()
            proc.wait()


def test_daemon_stopped_mid_job_says_so(tiny_models: TinyModels, tmp_path: Path) -> None:
    """SIGTERM cancels the running job; the artist is told why (not "Cancelled" as if they
    had pressed Cancel), and nothing is added."""
    d = start_daemon(tmp_path, "--models", str(tiny_models.models_dir), *TINY)
    c, _ = make(d.endpoint)
    doc = LayerDocument(300, 200, Rect(100, 60, 50, 40))
    try:
        spin(c, lambda: c.session.connected)
        assert c.generate(GenerationSettings(steps=200, count=8), lambda: doc)
        spin(c, lambda: c.progress[1].startswith("Step "))
        d.proc.send_signal(signal.SIGTERM)
        spin(c, lambda: not c.running, 30)
        assert c.message.error and c.message.text == \
            "Cancelled: the daemon is shutting down. The image was not changed."
        assert doc.layers == [] and c.results == []
    finally:
        c.close()
        d.stop()


def test_daemon_start_failures_are_reported(tmp_path: Path) -> None:
    c, _ = make(f"tcp://127.0.0.1:{free_port()}")
    c.start_daemon()          # the real launcher: no install record next to a source tree
    assert c.message.error and "Could not start the daemon" in c.message.text
    assert not c.starting_daemon
    log = tmp_path / "daemon.log"

    def launch(endpoint: str) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-c", "import sys; print('no model found'); "
                                     "sys.exit(3)"], stdout=out)

    c, _ = make(c.session.endpoint, launch=launch, daemon_log=lambda: log)
    c.start_daemon()
    spin(c, lambda: not c.starting_daemon, 30)
    assert c.message.error and c.message.text.startswith(
        "The daemon exited (code 3): no model found")
    assert str(log) in c.message.text
    c.close()


def test_unusable_keys_send_nothing_and_say_why(tmp_path: Path) -> None:
    store = {"server_key": "not-a-key", "client_key": str(tmp_path / "missing.key_secret")}
    c, store = make(f"tcp://127.0.0.1:{free_port()}", store)
    assert c.session.key_error and c.session.key_error.startswith("Keys not usable")
    assert c.reveal_keys and c.filenos() == [] and not c.can_start_daemon
    c.pump()
    assert c.status == Line(f"Not connected: {c.session.key_error}", True)
    assert not c.generate(GenerationSettings(), lambda: LayerDocument(20, 20))
    assert c.message.text == f"Not connected: {c.session.key_error}"
    generation = c.generation
    c.set_keys(" ", "")                           # cleared: a plain client again
    assert (store["server_key"], store["client_key"]) == ("", "")
    assert c.session.key_error is None and c.filenos() and c.generation == generation + 1
    assert c.can_start_daemon
    c.set_keys("not-a-key", "/nowhere")           # set again: said at once
    assert c.message.error and c.message.text == c.session.key_error
    assert "client key" in c.message.text
    c.close()


def test_refused_and_accepted_keys(tiny_models: TinyModels, tmp_path: Path) -> None:
    good = tmp_path / "keys"
    keys.create_server(good)
    right, _ = keys.create_client(good, "krita")
    keys.create_server(tmp_path / "other")
    wrong, _ = keys.create_client(tmp_path / "other", "mallory")
    d = start_daemon(tmp_path, "--auth", "--keys", str(good), "--models",
                     str(tiny_models.models_dir), *TINY, wait=False)
    c, store = make(d.endpoint)
    try:
        spin(c, lambda: "requires keys" in c.status.text, 90)
        assert not c.can_start_daemon and not c.reveal_keys
        assert not c.generate(GenerationSettings(), lambda: LayerDocument(20, 20))
        assert c.reveal_keys and "requires keys" in c.message.text
        server_key = keys.server_public_key(good)
        c.set_keys(server_key, str(wrong))
        spin(c, lambda: "refused this client's keys" in c.status.text, 30)
        c.set_keys(server_key, str(right))
        spin(c, lambda: c.session.connected, 30)
        assert "(CurveZMQ)" in c.status.text and store["client_key"] == str(right)
        assert store["endpoint"] == d.endpoint
    finally:
        c.close()
        d.stop()


def test_endpoints_switch_and_persist(daemon: DaemonProc) -> None:
    c, store = make("tcp://[not an endpoint")
    assert c.session.endpoint == default_endpoint()        # a malformed stored endpoint
    nobody = f"tcp://127.0.0.1:{free_port()}"
    assert c.set_endpoint(f" {nobody} ") == nobody and store["endpoint"] == nobody
    spin(c, lambda: c.session.last_error is not None, 10)
    assert c.can_start_daemon and "Not connected" in c.status.text
    generation = c.generation
    assert c.set_endpoint("not an endpoint") == nobody
    assert c.message.error and "is not an endpoint" in c.message.text
    assert store["endpoint"] == nobody and c.generation == generation + 1
    assert c.set_endpoint("") == nobody                 # empty: nothing changes
    c.set_endpoint(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    assert store["endpoint"] == daemon.endpoint
    assert make(store=store)[0].session.endpoint == daemon.endpoint
    c.close()

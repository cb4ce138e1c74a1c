"""Drives the docker inside the real Krita against a cluster daemon (tests/test_cluster.py):
the docker, unchanged, generates into a selection through Ray Serve replicas; a replica
SIGKILLed mid-job still gives exactly one new layer, and the docker said it runs again; a
control layer steers the result on a replica; Cancel leaves the document as it was.

Reuses ui_driver's runner (a generator of conditions advanced by a QTimer) and helpers.
"""

import os
import signal
import sys
import time

from krita import Krita

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ui_driver as ui  # noqa: E402

RES = ui.RES


def _replicas():
    """The pids of the cluster's Serve replicas (Ray sets their process titles)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ServeReplica:paintbridge" in f.read():
                    found.append(int(pid))
        except (OSError, ValueError):
            continue
    return found


def _cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])     # utime + stime
    except OSError:
        return 0


def script(cfg):
    app = Krita.instance()
    doc, layer, source = yield from ui.open_document("paintbridge-cluster")
    sel = doc.selection()
    docker = ui.show_docker()
    c = docker.controller
    yield "connected", lambda: c.session.connected, 120
    RES["status"] = docker.status_label.text()

    # --- 1. generate into the selection, on a replica
    before = ui._projection(doc)
    ui._type(docker.widgets["prompt"], "a red apple")
    docker.widgets["steps"].setValue(4)
    docker.widgets["seed"].setValue(42)
    docker.widgets["count"].setValue(1)
    ui._click(docker.generate_button)
    yield "first result", lambda: not c.running and docker.results_list.count() == 1, 120
    RES["message_1"] = docker.message_label.text()
    RES["layers_1"] = ui._layers(doc)
    RES["compare_1"] = ui._compare(before, ui._projection(doc))
    RES["source_identical_1"] = bytes(layer.pixelData(0, 0, ui.W, ui.H)) == source

    # --- 2. the replica running the job is killed: one layer still arrives, and the
    # docker said that the job runs again
    docker.widgets["steps"].setValue(40)
    docker.widgets["seed"].setValue(43)
    ui._click(docker.generate_button)
    yield "job running on a replica", lambda: (c.session.job is not None
                                               and c.session.job.state.value == "running"
                                               and c.session.job.step >= 2), 120
    pids = _replicas()
    ticks = {p: _cpu_ticks(p) for p in pids}
    t0 = time.monotonic()
    yield "CPU use sampled", lambda: time.monotonic() - t0 > 0.6, 5
    busy = max(pids, key=lambda p: _cpu_ticks(p) - ticks[p])
    RES["replicas_before_kill"] = len(pids)
    os.kill(busy, signal.SIGKILL)
    texts = []

    def finished():
        text = docker.progress.text()
        if not texts or texts[-1] != text:
            texts.append(text)
        return not c.running

    yield "result after the kill", finished, 240
    RES["kill"] = {"texts": texts, "message": docker.message_label.text(),
                   "layers": ui._layers(doc), "results": len(c.results),
                   "retries": c.session.job.retries,
                   "source_identical": bytes(layer.pixelData(0, 0, ui.W, ui.H)) == source}

    # --- 3. a control layer steers the result on a replica (the embedded model's sample
    # ControlNet), as with a local daemon
    if cfg.get("control"):
        docker.widgets["steps"].setValue(0)                    # the model's default
        yield from ui._control_step(app, doc, layer, docker, c, cfg)
        doc.setSelection(sel)

    # --- 4. Cancel on a replica: nothing added, nothing changed
    after = ui._projection(doc)
    layers = ui._layers(doc)
    docker.widgets["steps"].setValue(200)
    ui._click(docker.generate_button)
    yield "long job running", lambda: (c.session.job is not None
                                       and c.session.job.state.value == "running"
                                       and c.session.job.step > 0), 120
    ui._click(docker.cancel_button)
    yield "cancelled", lambda: not c.running, 60
    RES["cancel"] = {"state": c.session.job.state.value,
                     "message": docker.message_label.text(),
                     "unchanged": ui._projection(doc) == after and ui._layers(doc) == layers,
                     "source_identical": bytes(layer.pixelData(0, 0, ui.W, ui.H)) == source}


def start():
    ui.start(script)

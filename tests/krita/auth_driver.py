"""Drives the docker's Connection settings inside the real Krita (tests/test_krita_auth.py)
against a daemon started with ``--auth``: no keys, an unauthorized key and an unreadable key
file are each refused with a clear message and leave the document unchanged; the right keys,
set through the widgets (the file picker included), connect and Generate adds the layer.

Reuses ui_driver's runner (a generator of conditions advanced by a QTimer) and helpers.
"""

import os
import sys

from PyQt5.QtCore import Qt

from krita import Krita

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ui_driver as ui  # noqa: E402

RES = ui.RES


def _enter(edit, text):
    """Type into a line edit as a user does and press Return (editingFinished)."""
    edit.clear()
    ui._type(edit, text)
    if ui.QTest is not None:
        ui.QTest.keyClick(edit, Qt.Key_Return)
    else:
        edit.editingFinished.emit()


def _refused_generate(docker, doc, layer, source, before, tag):
    """Generate while not admitted: a clear message, no job, nothing changed."""
    ui._click(docker.generate_button)
    RES[f"message_{tag}"] = docker.message_label.text()
    RES[f"status_{tag}"] = docker.status_label.text()
    RES[f"idle_{tag}"] = not docker.controller.running and docker.controller.session.job is None
    RES[f"unchanged_{tag}"] = (ui._layers(doc) == [["Background", "paintlayer", True]]
                               and ui._projection(doc) == before
                               and bytes(layer.pixelData(0, 0, ui.W, ui.H)) == source)


def script(cfg):
    app = Krita.instance()
    doc, layer, source = yield from ui.open_document("paintbridge-auth")
    from paintbridge import connection as connection_module

    docker = ui.show_docker()
    c = docker.controller
    RES["box_hidden_at_start"] = not docker.connection.connection_box.isVisible()
    _type = ui._type
    _type(docker.widgets["prompt"], "a blue pear")
    docker.widgets["steps"].setValue(3)
    docker.widgets["seed"].setValue(7)
    before = ui._projection(doc)

    # --- 1. no keys: the daemon turns the plaintext client away
    yield "refused without keys", lambda: "requires keys" in docker.status_label.text(), 60
    _refused_generate(docker, doc, layer, source, before, "plain")

    # --- 2. the right server key, but a client key the daemon never authorized
    RES["box_opened_by_refusal"] = docker.connection.connection_box.isVisible()
    if not docker.connection.connection_toggle.isChecked():
        ui._click(docker.connection.connection_toggle)
    RES["box_shown"] = docker.connection.connection_box.isVisible()
    _enter(docker.connection.server_key_edit, cfg["server_key"])
    RES["server_key_typed"] = docker.connection.server_key_edit.text() == cfg["server_key"]
    _enter(docker.connection.client_key_edit, cfg["wrong_key"])
    yield "wrong key refused", lambda: "refused this client's keys" in \
        docker.status_label.text(), 60
    _refused_generate(docker, doc, layer, source, before, "wrong")

    # --- 3. a client key file that is no key at all: said at once, nothing is sent
    _enter(docker.connection.client_key_edit, cfg["bad_key"])
    RES["message_bad_set"] = docker.message_label.text()
    RES["key_error"] = c.session.key_error
    _refused_generate(docker, doc, layer, source, before, "bad")

    # --- 4. the right key, chosen with the file picker: connected, Generate works
    connection_module.QFileDialog.getOpenFileName = staticmethod(
        lambda *a, **k: (cfg["right_key"], ""))
    ui._click(docker.connection.client_key_button)
    RES["client_key_picked"] = docker.connection.client_key_edit.text()
    yield "connected with keys", lambda: c.session.connected, 60
    RES["status_ok"] = docker.status_label.text()
    RES["key_error_ok"] = c.session.key_error
    ui._click(docker.generate_button)
    yield "result", lambda: not c.running and docker.results_list.count() == 1, 90
    RES["message_ok"] = docker.message_label.text()
    RES["layers_ok"] = ui._layers(doc)
    RES["compare_ok"] = ui._compare(before, ui._projection(doc))
    RES["source_identical_ok"] = bytes(layer.pixelData(0, 0, ui.W, ui.H)) == source
    RES["saved"] = {k: app.readSetting("paintbridge", k, "")
                    for k in ("server_key", "client_key", "client_id")}
    RES["session_client_id"] = c.session.client_id
    docker.grab().save(os.path.join(cfg["out"], "docker-auth.png"))


def start():
    ui.start(script)

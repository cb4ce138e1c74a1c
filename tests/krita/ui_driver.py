"""Drives the Paintbridge docker inside the real Krita (tests/test_krita_ui.py).

Loaded by the plugin when PAINTBRIDGE_KRITA_TEST_DRIVER names this file; ``start()`` runs
once the main window exists. The script below is a generator: each ``yield`` names a
condition to wait for, and a QTimer advances it, so Krita's event loop (and the docker's
socket notifier) keep running between steps exactly as for a user. Results go to
``result.json``; then Krita quits normally (so it writes kritarc), or on failure is left
with ``os._exit`` (no quit dialogs).
"""

import json
import os
import signal
import threading
import time
import traceback

from PyQt5.QtCore import QByteArray, Qt, QTimer

from krita import Krita, Selection

try:
    from PyQt5.QtTest import QTest
except ImportError:  # python3-pyqt5 without QtTest: fall back to direct calls
    QTest = None

W, H = 128, 96
SEL = (40, 30, 32, 24)
MARGIN = 12          # beyond grow (4) + feather (4): the result must not touch it
RES = {"steps": []}
_keep = []


def _finish(rc):
    _finish_write()
    os._exit(rc)


def _quit():
    """Write the result, then quit Krita the normal way so that it saves its settings
    (kritarc) as for a user; os._exit after 20 s if anything holds it up."""
    _finish_write()
    QTimer.singleShot(20000, lambda: os._exit(5))
    app = Krita.instance()
    for doc in app.documents():
        doc.setModified(False)
        doc.close()
    app.action("file_quit").trigger()


def _finish_write():
    out = RES.get("_out")
    if out:
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump({k: v for k, v in RES.items() if not k.startswith("_")}, f, indent=1)


def _type(widget, text):
    widget.setFocus()
    if QTest is not None:
        QTest.keyClicks(widget, text)
    else:
        widget.insertPlainText(text)


def _click(button):
    if QTest is not None:
        QTest.mouseClick(button, Qt.LeftButton)
    else:
        button.click()


def _layers(doc):
    def walk(node):
        out = []
        for c in node.childNodes():
            if c.type() == "selectionmask":
                continue
            out.append([c.name(), c.type(), c.visible()] + ([walk(c)] if c.type() ==
                                                             "grouplayer" else []))
        return out
    return walk(doc.rootNode())


def _projection(doc):
    doc.refreshProjection()
    doc.waitForDone()
    return bytes(doc.pixelData(0, 0, W, H))


_PALETTE = {"red": (220, 30, 30), "orange": (245, 135, 20), "yellow": (240, 220, 30),
            "green": (30, 160, 50), "blue": (30, 60, 220), "purple": (135, 40, 175),
            "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128)}


def _word_share(doc, layer):
    """Share of a result layer's opaque pixels in the selection nearest to gray (Krita's
    8-bit RGBA pixels are B, G, R, A), once Krita has applied them."""
    doc.refreshProjection()
    doc.waitForDone()
    x0, y0, w, h = SEL
    px = bytes(layer.pixelData(x0, y0, w, h))
    gray = total = 0
    for i in range(0, len(px), 4):
        if px[i + 3] < 128:
            continue
        b, g, r = px[i], px[i + 1], px[i + 2]
        near = min(_PALETTE, key=lambda n: sum((a - c) ** 2 for a, c in
                                               zip((r, g, b), _PALETTE[n], strict=True)))
        gray += near == "gray"
        total += 1
    return [gray / total if total else 0.0, total]


def _compare(before, after):
    """Changed pixels inside the selection's core, changed pixels outside its margin."""
    x0, y0, w, h = SEL
    inside = outside = 0
    for y in range(H):
        for x in range(W):
            i = (y * W + x) * 4
            diff = before[i:i + 4] != after[i:i + 4]
            if x0 <= x < x0 + w and y0 <= y < y0 + h:
                inside += diff
            elif not (x0 - MARGIN <= x < x0 + w + MARGIN and y0 - MARGIN <= y < y0 + h + MARGIN):
                outside += diff
    return {"inside_changed": inside, "inside_total": w * h, "outside_changed": outside}


def _live_costs(app):
    """What Live's ways of watching a large canvas cost Krita's UI thread (ms per look):
    Krita's thumbnail of the layer (Live's overview), a 512² read of the region with its
    checksum, and reading the whole layer with its checksum."""
    import zlib

    from paintbridge.document import KritaDocument

    big = app.createDocument(4000, 3000, "paintbridge-live-cost", "RGBA", "U8", "", 72.0)
    node = big.rootNode().childNodes()[0]
    node.setPixelData(QByteArray(bytes(range(256)) * (4000 * 4 * 3000 // 256)),
                      0, 0, 4000, 3000)
    target = KritaDocument(big, node)
    out = {}
    for name, look in (("overview_128_rows", lambda: target.overview(128)),
                       ("layer_thumbnail_64", lambda: node.thumbnail(64, 64)),
                       ("doc_thumbnail_64", lambda: big.thumbnail(64, 64)),
                       ("region_512_crc", lambda: zlib.crc32(
                           bytes(node.pixelData(1000, 1000, 512, 512)))),
                       ("whole_4000x3000_crc", lambda: zlib.crc32(
                           bytes(node.pixelData(0, 0, 4000, 3000))))):
        look()
        t0 = time.perf_counter()
        for _ in range(5):
            look()
        out[name] = round((time.perf_counter() - t0) / 5 * 1000, 2)
    before = target.overview(128)
    node.setPixelData(QByteArray(bytes((0, 0, 255, 255)) * 900), 3000, 2000, 30, 30)
    after = target.overview(128)
    out["overview_sees_a_dab"] = bytes(before.data) != bytes(after.data)
    from paintbridge.plugin.live import changed_box
    from paintbridge.plugin.region import Rect

    box = changed_box(before, after, Rect(0, 0, 4000, 3000))
    out["dab_found_at"] = [box.x, box.y, box.width, box.height] if box else None
    before = node.thumbnail(64, 64)
    node.setPixelData(QByteArray(bytes((0, 255, 0, 255)) * 900), 1000, 1000, 30, 30)
    big.refreshProjection()
    big.waitForDone()
    out["layer_thumbnail_sees_a_dab"] = node.thumbnail(64, 64) != before
    big.setModified(False)
    big.close()
    return out


def open_document(name):
    """A W×H gradient document, shown, with SEL selected on its one layer: yields until
    Krita shows it, then returns (doc, layer, the layer's pixels)."""
    app = Krita.instance()
    doc = app.createDocument(W, H, name, "RGBA", "U8", "", 72.0)
    layer = doc.rootNode().childNodes()[0]
    px = b"".join(bytes((x * 2, y * 2, 180, 255)) for y in range(H) for x in range(W))
    layer.setPixelData(QByteArray(px), 0, 0, W, H)
    app.activeWindow().addView(doc)
    yield "document shown", lambda: app.activeDocument() == doc, 20
    doc.setActiveNode(layer)
    sel = Selection()
    sel.select(*SEL, 255)
    doc.setSelection(sel)
    return doc, layer, bytes(layer.pixelData(0, 0, W, H))


def show_docker():
    """The paintbridge docker, shown in front."""
    from paintbridge.docker import active_docker

    docker = active_docker()
    RES["docker_found"] = docker is not None
    docker.setVisible(True)
    docker.raise_()
    return docker


def script(cfg):
    app = Krita.instance()
    window = app.activeWindow()
    doc, layer, source = yield from open_document("paintbridge-ui")
    docker = show_docker()
    c = docker.controller
    yield "connected", lambda: c.session.connected, 120
    combo = docker.widgets["model"]
    RES["models"] = [combo.itemText(i) for i in range(combo.count())]
    combo = docker.widgets["upscaler"]
    RES["upscalers"] = [combo.itemText(i) for i in range(combo.count())]
    RES["status_connected"] = docker.status_label.text()
    from paintbridge.plugin.params import PARAMS

    RES["param_widgets"] = {p.name: type(docker.widgets[p.name]).__name__ for p in PARAMS}
    RES["special_texts"] = {p.name: docker.widgets[p.name].specialValueText() for p in PARAMS
                            if hasattr(docker.widgets[p.name], "specialValueText")}
    RES["steps_range"] = [docker.widgets["steps"].minimum(), docker.widgets["steps"].maximum()]
    RES["advanced_folded"] = not docker.form.advanced_box.isVisible()
    row = docker.controls.add_row()              # a control row: a widget per controls key
    RES["control_widgets"] = {n: type(w).__name__ for n, w in row.editors.items()}
    RES["control_tips"] = {n: w.toolTip() for n, w in row.editors.items()}
    RES["control_layer_picked"] = row.layer.pick("Background")
    yield "control row shown", lambda: row.isVisible(), 10   # Qt shows it on the next turn
    docker.grab().save(os.path.join(cfg["out"], "docker-control.png"))
    fresh = row.control()
    RES["control_fresh"] = {"name": fresh.name, "values": fresh.values,
                            "item": fresh.item()}
    docker.controls.remove_row(row)
    RES["control_rows_left"] = len(docker.controls.rows)

    # --- 1. generate into the selection
    before = _projection(doc)
    _type(docker.widgets["prompt"], "a red apple")
    docker.widgets["steps"].setValue(4)
    docker.widgets["seed"].setValue(42)
    t0 = time.monotonic()
    _click(docker.generate_button)
    RES["running_after_click"] = not docker.generate_button.isEnabled()
    yield "first result", lambda: not c.running and docker.results_list.count() == 1, 60
    RES["generate_seconds"] = round(time.monotonic() - t0, 2)
    RES["message_1"] = docker.message_label.text()
    RES["layers_1"] = _layers(doc)
    # Krita activates the new layer; the docker must still read from Background next time
    RES["active_1"] = doc.activeNode().name()
    after = _projection(doc)
    RES["compare_1"] = _compare(before, after)
    RES["source_identical_1"] = bytes(layer.pixelData(0, 0, W, H)) == source
    RES["size_1"] = [doc.width(), doc.height()]
    sel_now = doc.selection()
    RES["selection_1"] = [sel_now.x(), sel_now.y(), sel_now.width(), sel_now.height()]
    out = cfg["out"]
    docker.grab().save(os.path.join(out, "docker.png"))
    window.qwindow().grab().save(os.path.join(out, "window.png"))

    # --- 2. cancel during a job: no layer, nothing changed
    docker.widgets["steps"].setValue(200)
    docker.widgets["count"].setValue(8)
    _click(docker.generate_button)
    yield "job running", lambda: (c.session.job is not None
                                  and c.session.job.state.value == "running"
                                  and c.session.job.step > 0), 60
    yield "a preview", lambda: docker.preview_label.pixmap() is not None and \
        not docker.preview_label.pixmap().isNull(), 30
    RES["preview_seen"] = True
    RES["progress_text"] = docker.progress.text()
    _click(docker.cancel_button)
    yield "cancelled", lambda: not c.running, 60
    RES["cancel_state"] = c.session.job.state.value
    RES["message_cancel"] = docker.message_label.text()
    RES["layers_cancel"] = _layers(doc)
    RES["unchanged_after_cancel"] = _projection(doc) == after
    RES["source_identical_cancel"] = bytes(layer.pixelData(0, 0, W, H)) == source

    # --- 3. the daemon dies mid-job: nothing is added; the docker says so, Generate explains
    _click(docker.generate_button)
    yield "job running again", lambda: (c.session.job is not None
                                        and c.session.job.state.value == "running"
                                        and c.session.job.step > 0), 60
    os.kill(cfg["daemon_pid"], signal.SIGKILL)
    yield "job lost or failed", lambda: (not c.running
                                         or getattr(c.session.job, "lost", False)), 30
    RES["progress_lost"] = docker.progress.text()
    if c.running:
        _click(docker.cancel_button)
    RES["message_crash"] = docker.message_label.text()
    RES["idle_after_crash"] = not c.running and docker.generate_button.isEnabled()
    RES["layers_crash"] = _layers(doc)
    RES["unchanged_after_crash"] = _projection(doc) == after
    yield "disconnected", lambda: not c.session.connected, 60
    RES["status_down"] = docker.status_label.text()
    RES["start_button_visible"] = docker.connection.start_button.isVisible()
    docker.widgets["steps"].setValue(4)
    docker.widgets["count"].setValue(2)
    _click(docker.generate_button)
    RES["message_down"] = docker.message_label.text()
    RES["layers_down"] = _layers(doc)

    # --- 4. "Start local daemon": it comes back, the docker reconnects and works
    _click(docker.connection.start_button)
    RES["start_message"] = docker.message_label.text()
    yield "reconnected", lambda: c.session.connected, 150
    RES["daemon2_pid"] = c.daemon_proc.pid if c.daemon_proc else None
    _click(docker.generate_button)
    yield "batch result", lambda: not c.running and docker.results_list.count() == 3, 120
    RES["message_2"] = docker.message_label.text()
    RES["layers_2"] = _layers(doc)
    RES["source_identical_2"] = bytes(layer.pixelData(0, 0, W, H)) == source
    RES["settings_saved"] = json.loads(app.readSetting("paintbridge", "settings", "{}"))
    docker.grab().save(os.path.join(out, "docker-batch.png"))
    # clicking a result thumbnail hides/shows its layer
    item = docker.results_list.item(0)
    was = c.results[0].layer.visible()
    docker._result_clicked(item)
    RES["thumbnail_toggles"] = c.results[0].layer.visible() != was
    # the registered action (default shortcut) toggles the last result
    last = c.results[-1].layer
    was = last.visible()
    action = app.action("paintbridge_toggle_result")
    RES["actions"] = {a: bool(app.action(a)) and app.action(a).shortcut().toString()
                      for a in ("paintbridge_generate", "paintbridge_cancel",
                                "paintbridge_toggle_result")}
    action.trigger()
    RES["action_toggles"] = last.visible() != was
    docker.widgets["seed"].setValue(-1)                     # "Random"
    RES["random_seed"] = [docker.widgets["seed"].text(), docker.settings().seed]
    _click(docker.form.reuse_button)
    RES["reused_seed"] = [docker.widgets["seed"].text(), docker.settings().seed]

    # --- 5. a LoRA from the daemon's list steers the result; then it is removed again
    lora = docker.widgets["loras"]
    yield "LoRAs offered", lambda: lora.add_combo.count() > 1, 30
    RES["lora_offered"] = [lora.add_combo.itemData(i) for i in range(1, lora.add_combo.count())]
    prompt = docker.widgets["prompt"]
    prompt.setPlainText("")
    lora._add_chosen(lora.add_combo.findData("gray-kohya"))   # as picking it in the list
    lora.rows[0].editors["weight"].setValue(1.0)
    RES["lora_text"] = lora.text()
    RES["lora_saved"] = json.loads(app.readSetting("paintbridge", "settings", "{}"))["loras"]
    lora.insert("gray-kohya")                                 # the "T" button
    RES["prompt_with_triggers"] = prompt.toPlainText()
    prompt.setPlainText("a gray circle on a blue background")
    docker.widgets["steps"].setValue(0)                        # the model's default
    docker.widgets["count"].setValue(1)
    for label in ("with", "without"):
        yield f"ready ({label} LoRA)", lambda: docker.generate_button.isEnabled(), 30
        done = len(c.results)
        _click(docker.generate_button)
        yield f"result {label} LoRA", lambda n=done: not c.running and len(c.results) > n, 120
        RES[f"lora_message_{label}"] = c.message.text
        RES[f"gray_share_{label}"] = _word_share(doc, c.results[-1].layer)
        if label == "with":
            _click(lora.rows[0].remove_button)
            RES["lora_text_removed"] = lora.text()
    prompt.setPlainText("a red apple")                         # as the settings test expects

    # --- 6. Live: strokes on the layer, the preview layer follows; Apply keeps a result;
    # Live off leaves the document as it was plus the applied layer
    docker.widgets["count"].setValue(1)
    RES["layers_before_live"] = _layers(doc)
    _click(docker.live_button)
    RES["live_on"] = c.live.on
    RES["live_message_on"] = c.message.text
    for i in range(4):
        n = c.live.results
        x, y = SEL[0] + 2 + 7 * i, SEL[1] + 9
        layer.setPixelData(QByteArray(bytes((200, 40, 40, 255)) * 36), x, y, 6, 6)
        yield f"live result {i + 1}", lambda n=n: c.live.results > n, 60
    RES["live_layers"] = _layers(doc)
    RES["live_results"], RES["live_sent"] = c.live.results, c.live.sent
    painted = bytes(layer.pixelData(0, 0, W, H))
    t0 = time.perf_counter()
    for _ in range(20):                           # the docker's tick on a still canvas
        c.live_tick(docker.settings())
    RES["live_tick_ms"] = round((time.perf_counter() - t0) / 20 * 1000, 3)
    RES["live_sent_after_still"] = c.live.sent
    yield "Apply enabled", lambda: docker.apply_button.isEnabled(), 10
    _click(docker.apply_button)
    RES["live_apply_message"] = c.message.text
    _click(docker.live_button)
    RES["live_off"] = not c.live.on and not docker.live_button.isChecked()
    RES["layers_after_live"] = _layers(doc)
    RES["live_source_is_strokes_only"] = bytes(layer.pixelData(0, 0, W, H)) == painted
    RES["live_costs"] = _live_costs(app)

    # --- 7. Expand: the canvas grows on the right only once the result is there; the new
    # strip is painted opaquely in a new layer; the layer itself keeps its pixels; Undo
    # shrinks the canvas again
    source = bytes(layer.pixelData(0, 0, W, H))
    done = len(c.results)
    docker.expand_pixels.setValue(24)
    docker.expand_sides.setCurrentIndex(docker.expand_sides.findData("right"))
    yield "ready (expand)", lambda: docker.expand_button.isEnabled(), 30
    _click(docker.expand_button)
    RES["expand_size_while_running"] = [doc.width(), doc.height()]
    yield "expanded", lambda: not c.running and len(c.results) > done, 120
    RES["expand_message"] = c.message.text
    RES["expand_size"] = [doc.width(), doc.height()]
    strip = bytes(c.results[-1].layer.pixelData(W, 0, 24, H))
    RES["expand_strip_alpha"] = sorted(set(strip[3::4]))
    RES["expand_source_identical"] = bytes(layer.pixelData(0, 0, W, H)) == source
    RES["expand_saved"] = app.readSetting("paintbridge", "expand", "")
    undos = 0
    while doc.width() != W and undos < 4:
        app.action("edit_undo").trigger()
        doc.waitForDone()
        undos += 1
    RES["expand_undo"] = {"undos": undos, "size": [doc.width(), doc.height()],
                          "source_identical": bytes(layer.pixelData(0, 0, W, H)) == source}

    # --- 8. Upscale ×2: a new document, twice the selection's box, shown in the window with
    # the result as its only layer; this document keeps its size, layers and pixels
    source, layers, docs = bytes(layer.pixelData(0, 0, W, H)), _layers(doc), len(app.documents())
    sel_now = doc.selection()
    done = len(c.results)
    docker.widgets["count"].setValue(1)
    docker.upscale_factor.setCurrentIndex(docker.upscale_factor.findData(2))
    yield "ready (upscale)", lambda: docker.upscale_button.isEnabled(), 30
    _click(docker.upscale_button)
    yield "upscaled", lambda: not c.running and len(c.results) > done, 180
    new = c.results[-1].target.opened
    active = app.activeDocument()
    RES["upscale"] = {
        "message": c.message.text, "documents": len(app.documents()) - docs,
        "selection": [sel_now.x(), sel_now.y(), sel_now.width(), sel_now.height()]
        if sel_now is not None else None,
        "size": [new.width(), new.height()] if new is not None else None,
        "layers": _layers(new) if new is not None else None,
        "shown": active is not None and new is not None and active.name() == new.name(),
        "source_identical": bytes(layer.pixelData(0, 0, W, H)) == source,
        "source_layers_same": _layers(doc) == layers,
        "saved": app.readSetting("paintbridge", "upscale", "")}
    # --- 9. a control layer: an outline drawn on its own layer steers "a red shape"; its
    # map can be put into a layer; it is never the layer edited, and stays as drawn
    if cfg.get("control"):
        yield from _control_step(app, doc, layer, docker, c, cfg)
    docker.widgets["count"].setValue(2)
    if c.daemon_proc is not None:
        c.daemon_proc.terminate()


def _control_step(app, doc, layer, docker, c, cfg):
    for other in app.documents():               # Upscale left its new document in front
        if other.name() != doc.name():
            other.setModified(False)
            other.close()
    yield "the document in front again", lambda: (app.activeDocument() is not None and
                                                   app.activeDocument().name() == doc.name()), 20
    lines = doc.createNode("lines", "paintlayer")
    doc.rootNode().addChildNode(lines, None)
    x0, y0, x1, y1 = cfg["control"]["box"]
    px = bytearray(W * H * 4)
    for y in range(H):
        for x in range(W):
            if cfg["control"]["outline"][y * W + x] == "1":
                px[(y * W + x) * 4:(y * W + x) * 4 + 4] = bytes((20, 20, 20, 255))
    lines.setPixelData(QByteArray(bytes(px)), 0, 0, W, H)
    drawn = bytes(lines.pixelData(0, 0, W, H))
    app.action("deselect").trigger()
    doc.waitForDone()

    def source_active():   # Krita activates an added layer later on; ask until it holds
        doc.setActiveNode(layer)
        return doc.activeNode() is not None and doc.activeNode().name() == layer.name()

    yield "the source layer active", source_active, 20
    source, res = bytes(layer.pixelData(0, 0, W, H)), {}
    docker.form.mode_combo.setCurrentIndex(docker.form.mode_combo.findData("txt2img"))
    docker.widgets["prompt"].setPlainText("a red shape on a white background")
    docker.widgets["seed"].setValue(7)
    docker.widgets["count"].setValue(1)
    row = docker.controls.add_row()
    res["layer_offered"] = row.layer.pick("lines")
    res["type"] = row.editors["type"].currentData()
    models = row.editors["model"]                # editors made from plugin.controls.FIELDS
    yield "ControlNets offered", lambda: models.count() > 1, 30
    res["models_offered"] = [models.itemData(i) for i in range(models.count())]
    n_layers = len(_layers(doc))
    _click(row.map_button)
    res["map_message"] = c.message.text
    res["layers_after_map"] = _layers(doc)
    top = doc.rootNode().childNodes()
    mapped = next((n for n in top if n.name().startswith("Control map")), None)
    if mapped is not None:
        with open(os.path.join(cfg["out"], "control-map.bgra"), "wb") as f:
            f.write(bytes(mapped.pixelData(0, 0, W, H)))
        mapped.remove()
    res["layers_map_removed"] = len(_layers(doc)) == n_layers
    done = len(c.results)
    yield "ready (control)", lambda: docker.generate_button.isEnabled(), 30
    _click(docker.generate_button)
    yield "controlled result", lambda: not c.running and len(c.results) > done, 180
    res["message"] = c.message.text
    result = c.results[-1].layer
    res["result_name"] = result.name()
    with open(os.path.join(cfg["out"], "control-result.bgra"), "wb") as f:
        f.write(bytes(result.pixelData(0, 0, W, H)))
    res["lines_as_drawn"] = bytes(lines.pixelData(0, 0, W, H)) == drawn
    res["source_identical"] = bytes(layer.pixelData(0, 0, W, H)) == source
    # the control layer is never the one edited: with it as the layer to read, Generate
    # refuses (Krita makes setActiveNode take effect later, so the target is given here)
    from paintbridge.document import KritaDocument

    c.generate(docker.settings(), lambda: KritaDocument(doc, lines),
               control_layers=docker.controls.layers())
    res["refused_message"] = c.message.text
    res["refused_running"] = c.running
    docker.controls.remove_row(row)
    doc.setActiveNode(layer)
    docker.form.mode_combo.setCurrentIndex(docker.form.mode_combo.findData("auto"))
    docker.widgets["prompt"].setPlainText("a red apple")
    RES["control"] = res


class _Runner:
    def __init__(self, gen):
        self.gen, self.cond, self.deadline, self.what = gen, None, 0.0, ""
        self.timer = QTimer()
        self.timer.timeout.connect(self.step)
        self.timer.start(100)

    def step(self):
        try:
            if self.cond is not None:
                if not self.cond():
                    if time.monotonic() > self.deadline:
                        raise TimeoutError(f"timed out waiting for: {self.what}")
                    return
                RES["steps"].append([self.what, round(time.monotonic() - RES["_t0"], 1)])
            self.what, self.cond, limit = next(self.gen)
            self.deadline = time.monotonic() + limit
        except StopIteration:
            self.timer.stop()
            RES["ok"] = True
            _quit()
        except Exception:
            RES["ok"] = False
            RES["error"] = traceback.format_exc()
            try:
                from paintbridge.docker import active_docker

                d = active_docker()
                job = d.controller.session.job
                RES["error"] += (f"\ndocker message: {d.message_label.text()!r}; status: "
                                 f"{d.status_label.text()!r}; progress: {d.progress.text()!r}; "
                                 f"job: {job and (job.state.value, job.error_message)}")
            except Exception:
                RES["error"] += "\n(no docker state)"
            _finish(1)


def start(make_script=None):
    """Run ``make_script(cfg)`` (default: this file's ``script``) inside Krita."""
    with open(os.environ["PAINTBRIDGE_KRITA_TEST_CONFIG"]) as f:
        cfg = json.load(f)
    RES["_out"], RES["_t0"] = cfg["out"], time.monotonic()

    def watchdog():
        RES["ok"] = False
        RES["error"] = "watchdog: the UI script did not finish"
        _finish(4)

    dog = threading.Timer(cfg.get("limit", 240), watchdog)
    dog.daemon = True
    dog.start()
    _keep.append(_Runner((make_script or script)(cfg)))

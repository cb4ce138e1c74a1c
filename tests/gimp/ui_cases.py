"""Runs inside GIMP 3 in the chroot with an X display: the interactive pieces of the plug-in
(settings dialog, "no daemon" offer, Cancel window during a real job), each answered by a
timer that presses a dialog button as a user would. Writes $PB_OUT/ui_results.json."""

import json
import os
import sys
import traceback

import gi

gi.require_version("Gtk", "3.0")
from gi.repository import Gegl, Gimp, GLib, GObject, Gtk  # noqa: E402

OUT = os.environ["PB_OUT"]
sys.path.insert(0, os.path.join(os.environ["PB_PLUG_IN_DIR"], "paintbridge"))
import gimp_dialogs  # noqa: E402
from gimp_document import GimpDocument  # noqa: E402
from gimp_host import GimpProgress  # noqa: E402

from plugin import oneshot  # noqa: E402
from plugin.params import PARAMS  # noqa: E402
from plugin.session import GenerationSettings, Session  # noqa: E402

PDB = Gimp.get_pdb()


def press(response, seen, after_ms=300, look=None):
    """Answer the first dialog that shows up with ``response``; record its title (and first
    call ``look`` with the dialog)."""
    def tick():
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.Dialog) and window.get_visible():
                seen.append(window.get_title())
                if look is not None:
                    look(window)
                if isinstance(window, Gtk.MessageDialog):
                    seen.append(window.get_property("text"))
                    seen.append(window.get_property("secondary-text"))
                window.response(response)
                return False
        return True
    GLib.timeout_add(after_ms, tick)


class FakeSession:
    info = {"default_model": "tiny-inpainting"}

    def models(self):
        return ["tiny-inpainting", "other"]


def settings_dialog():
    """The dialog with a daemon's models: where each row of plugin/params.py is shown (the
    folded section it sits in, its widget), and that OK keeps the values."""
    proc = PDB.lookup_procedure("paintbridge-inpaint")
    config = proc.create_config()
    config.set_property("prompt", "a cat")
    seen, rows = [], {}

    def look(dialog):
        for p in PARAMS:
            widget = dialog.get_widget(p.arg_name, GObject.TYPE_NONE)
            rows[p.arg_name] = {"widget": type(widget).__name__,
                                "shown": widget.get_toplevel() is dialog, "folded": None}
            parent = widget.get_parent()
            while parent is not None:
                if isinstance(parent, Gtk.Expander):
                    rows[p.arg_name]["folded"] = [parent.get_label_widget().get_text(),
                                                  parent.get_expanded()]
                    break
                parent = parent.get_parent()

        from gimp_params import CONTROL_FIELDS

        for name in CONTROL_FIELDS:   # the control layer's frame, after the rows
            widget = dialog.get_widget(name, GObject.TYPE_NONE)
            controls[name] = {"widget": type(widget).__name__,
                              "shown": widget.get_toplevel() is dialog}

    controls = {}
    press(Gtk.ResponseType.OK, seen, after_ms=1000, look=look)
    ok = gimp_dialogs.settings_dialog(proc, config, FakeSession())
    return {"ok": ok, "seen": seen, "prompt": config.get_property("prompt"), "rows": rows,
            "controls": controls}


def widgets(widget, out):
    """Type names of every widget under ``widget`` (expanders: with their state)."""
    name = type(widget).__name__
    if isinstance(widget, Gtk.Expander):
        name += ":open" if widget.get_expanded() else ":closed"
    elif isinstance(widget, Gtk.Label) and widget.get_visible():
        out.append("label:" + widget.get_text())
    out.append(name)
    children = []
    if isinstance(widget, Gtk.Container):
        children = widget.get_children()
        if isinstance(widget, (Gtk.Expander, Gtk.Frame)) and \
                widget.get_label_widget() is not None:
            children = [widget.get_label_widget(), *children]
    for child in children:
        widgets(child, out)
    return out


def settings_dialog_with_problem():
    """No daemon answered: the dialog opens anyway, its "Daemon" expander open with the
    reason, the keys' fields in it (the client key with a file chooser), so the user can
    correct them; the values typed in stay in the procedure's config."""
    proc = PDB.lookup_procedure("paintbridge-inpaint")
    config = proc.create_config()
    seen, found = [], []
    picked = os.path.join(OUT, "picked.key_secret")
    with open(picked, "w") as f:
        f.write("#   ZeroMQ CURVE **Secret** Certificate (a stand-in)\n")

    def choose(widget):
        """Pick a file with the chooser button, as a user's click in its dialog ends."""
        if isinstance(widget, Gtk.FileChooserButton):
            widget.set_filename(picked)
            widget.emit("file-set")
        elif isinstance(widget, Gtk.Container):
            for child in widget.get_children():
                choose(child)

    def look():
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.Dialog) and window.get_visible():
                widgets(window, found)
                choose(window)
                return False
        return True

    GLib.timeout_add(700, look)
    press(Gtk.ResponseType.OK, seen, after_ms=1000)
    config.set_property("server-key", "K" * 40)
    ok = gimp_dialogs.settings_dialog(proc, config, None,
                                      "Paintbridge: the daemon requires keys.")
    return {"ok": ok, "seen": seen, "widgets": found,
            "server_key": config.get_property("server-key"),
            "client_key": config.get_property("client-key"), "picked": picked}


def offer_without_daemon():
    """A daemon on another machine cannot be started from here: the dialog only explains."""
    seen = []
    press(Gtk.ResponseType.CANCEL, seen)
    remote = "tcp://192.0.2.1:47610"
    session = Session(remote)
    try:
        connected = gimp_dialogs.offer_daemon(session, remote, 5.0)
    finally:
        session.close()
    return {"seen": seen, "connected": connected}


def offer_and_start():
    """The "Start daemon" button: the installed record's command is started (the test made
    it a stand-in that asks the host to start a real daemon there) and waited for."""
    endpoint = os.environ["PB_START_ENDPOINT"]
    seen = []
    press(Gtk.ResponseType.OK, seen)
    session = Session(endpoint)
    try:
        offered = gimp_dialogs.offer_daemon(session, endpoint, 90.0)
        return {"seen": seen, "offered": offered, "connected": session.connected,
                "models": session.models()}
    finally:
        session.close()


def cancel_running_job():
    img = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "bottom", 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, 64, 64), "R'G'B'A u8",
                           bytes([90, 120, 200, 255]) * 4096)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 24, 24)
    session = Session(os.environ["PB_ENDPOINT"])
    seen = []
    try:
        session.check()
        doc = GimpDocument(img, layer)
        press(Gtk.ResponseType.CANCEL, seen, after_ms=500)
        with GimpProgress("inpaint", True) as shown:
            outcome = oneshot.run(session, doc, GenerationSettings(
                prompt="slow", mode="inpaint", steps=200, seed=1), progress=shown.progress,
                cancelled=shown.cancelled)
    finally:
        session.close()
    layers = [lay.get_name() for lay in img.get_layers()]
    img.delete()
    job = outcome.job
    return {"seen": seen, "state": job.state.value, "step": job.step, "total": job.total,
            "cancelled": outcome.cancelled, "delivered": outcome.names, "layers": layers}


def plug_in_run():
    """The plug-in's own run, in this process (its script without the last line, which
    would start GIMP's plug-in loop), so that a timer here can answer its dialog."""
    path = os.path.join(os.environ["PB_PLUG_IN_DIR"], "paintbridge", "paintbridge.py")
    with open(path) as f:
        source = f.read()
    namespace = {"__file__": path, "__name__": "paintbridge_under_test"}
    exec(source.replace("Gimp.main(Paintbridge.__gtype__, sys.argv)", ""), namespace)
    return namespace["Paintbridge"]._run


def interactive_run_fixes_keys():
    """Run from the menu with an unusable server key remembered: the dialog opens with the
    reason, the user clears the key (a local daemon needs none) and presses OK; the filter
    connects with the corrected values and adds its layer."""
    run = plug_in_run()
    proc = PDB.lookup_procedure("paintbridge-inpaint")
    config = proc.create_config()
    for key, value in {"prompt": "fixed", "steps": 2, "seed": 3, "endpoint":
                       os.environ["PB_ENDPOINT"], "server-key": "not a key"}.items():
        config.set_property(key, value)
    img = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, "bottom", 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 16, 16, 24, 24)
    seen, problem = [], []

    def fix():
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.Dialog) and window.get_visible():
                problem.extend(w[len("label:"):] for w in widgets(window, [])
                               if w.startswith("label:Paintbridge"))
                config.set_property("server-key", "")
                return False
        return True

    GLib.timeout_add(700, fix)
    press(Gtk.ResponseType.OK, seen, after_ms=1000)
    values = run(None, proc, "inpaint", Gimp.RunMode.INTERACTIVE, img, [layer], config)
    status = values.index(0).value_nick
    message = values.index(1) if values.length() > 1 else None
    layers = [lay.get_name() for lay in img.get_layers()]
    img.delete()
    return {"status": status, "message": message, "seen": seen, "problem": problem,
            "layers": layers}


results = {}
for name, fn in (("settings_dialog", settings_dialog),
                 ("settings_problem", settings_dialog_with_problem),
                 ("offer", offer_without_daemon),
                 ("start", offer_and_start), ("cancel", cancel_running_job),
                 ("interactive_fix", interactive_run_fixes_keys)):
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"exception": traceback.format_exc()}
with open(os.path.join(OUT, "ui_results.json"), "w") as f:
    json.dump(results, f, indent=1)

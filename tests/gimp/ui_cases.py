"""Runs inside GIMP 3 in the chroot with an X display: the interactive pieces of the plug-in
(settings dialog, "no daemon" offer, Cancel window during a real job), each answered by a
timer that presses a dialog button as a user would. Writes $PB_OUT/ui_results.json."""

import json
import os
import sys
import traceback

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, Gegl, Gimp, GLib, Gtk  # noqa: E402

OUT = os.environ["PB_OUT"]
sys.path.insert(0, os.path.join(os.environ["PB_PLUG_IN_DIR"], "paintbridge"))
import gimp_dialogs  # noqa: E402
import gimp_job  # noqa: E402
from gimp_document import GimpDocument  # noqa: E402

from plugin.session import GenerationSettings, Session  # noqa: E402

PDB = Gimp.get_pdb()


def press(response, seen, after_ms=300, screenshot=None):
    """Answer the first dialog that shows up with ``response``; record its title (and save
    a picture of it when ``screenshot`` names a file)."""
    def tick():
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.Dialog) and window.get_visible():
                seen.append(window.get_title())
                if screenshot:
                    gdk_window = window.get_window()
                    Gdk.pixbuf_get_from_window(gdk_window, 0, 0, gdk_window.get_width(),
                                               gdk_window.get_height()
                                               ).savev(screenshot, "png", [], [])
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
    proc = PDB.lookup_procedure("paintbridge-inpaint")
    config = proc.create_config()
    config.set_property("prompt", "a cat")
    seen = []
    press(Gtk.ResponseType.OK, seen, after_ms=1000,
          screenshot=os.path.join(OUT, "dialog.png") if os.environ.get("PB_PICTURE_SOURCE")
          else None)
    ok = gimp_dialogs.settings_dialog(proc, config, FakeSession(),
                                      ["prompt", "negative-prompt", "model", "strength",
                                       "steps", "cfg", "sampler", "seed", "count", "padding"])
    return {"ok": ok, "seen": seen, "prompt": config.get_property("prompt")}


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
        job = session.submit(doc, GenerationSettings(prompt="slow", mode="inpaint", steps=200,
                                                     seed=1))
        press(Gtk.ResponseType.CANCEL, seen, after_ms=500)
        gimp_job.wait(session, job, "inpaint", True)
        delivered = session.deliver(doc)
    finally:
        session.close()
    layers = [lay.get_name() for lay in img.get_layers()]
    img.delete()
    return {"seen": seen, "state": job.state.value, "step": job.step, "total": job.total,
            "delivered": delivered, "layers": layers}


results = {}
for name, fn in (("settings_dialog", settings_dialog), ("offer", offer_without_daemon),
                 ("start", offer_and_start), ("cancel", cancel_running_job)):
    try:
        results[name] = fn()
    except Exception:
        results[name] = {"exception": traceback.format_exc()}
with open(os.path.join(OUT, "ui_results.json"), "w") as f:
    json.dump(results, f, indent=1)

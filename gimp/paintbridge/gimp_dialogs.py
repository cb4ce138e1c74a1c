"""The interactive side of the plug-in: offer to start the daemon, the settings dialog, and a
small window with a Cancel button while a job runs. Never used by non-interactive runs."""

from __future__ import annotations

import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import Gimp, GimpUi, GLib, GObject, Gtk  # noqa: E402

_ui_ready = False


def _init_ui() -> None:
    global _ui_ready
    if not _ui_ready:
        GimpUi.init("paintbridge")
        _ui_ready = True


def _pump_events() -> None:
    context = GLib.MainContext.default()
    while context.pending():
        context.iteration(False)


def offer_daemon(session, endpoint: str, wait_s: float) -> bool:
    """No daemon answers: say so and, on a loopback endpoint, offer to start one that outlives
    GIMP. True once a daemon answers, False when the user declines; raises the plug-in's
    error when the started daemon does not come up."""
    from plugin import launcher
    from plugin.oneshot import PaintbridgeError
    from plugin.shared import is_loopback

    _init_ui()
    text = f"No paintbridge daemon answers at {endpoint}."
    can_start = is_loopback(endpoint) and launcher.serve_command(endpoint) is not None
    dialog = Gtk.MessageDialog(message_type=Gtk.MessageType.QUESTION, text=text)
    dialog.set_title("Paintbridge")
    if can_start:
        dialog.format_secondary_text(
            "Start `paintbridge serve` now? It keeps running in the background after GIMP "
            f"closes and logs to {launcher.log_path()}.")
        dialog.add_buttons("_Cancel", Gtk.ResponseType.CANCEL, "_Start daemon",
                           Gtk.ResponseType.OK)
    else:
        dialog.format_secondary_text(
            "Start it with `paintbridge serve` (and `paintbridge install gimp` to let this "
            "plug-in start it for you), then try again.")
        dialog.add_buttons("_Close", Gtk.ResponseType.CANCEL)
    answer = dialog.run()
    dialog.destroy()
    if answer != Gtk.ResponseType.OK:
        return False
    try:
        launcher.start_daemon(endpoint)
    except OSError as exc:
        raise PaintbridgeError(f"Could not start the daemon: {exc}") from exc
    Gimp.progress_init("Paintbridge: starting the daemon…")
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            Gimp.progress_pulse()
            if session.check(timeout=1.0):
                return True
            _pump_events()
    finally:
        Gimp.progress_end()
    raise PaintbridgeError(f"The daemon did not answer within {wait_s:g} s; see "
                           f"{launcher.log_path()}.")


def settings_dialog(procedure, config, session, problem: str | None = None) -> bool:
    """GIMP's own procedure dialog (it remembers the last values): one field per row of
    plugin/params.py (prompts as text boxes; the advanced rows in a folded "Advanced"
    section), the daemon's models under them, and the connection's fields (endpoint, keys)
    in a "Daemon" expander that is open when ``problem`` says why no daemon answers. Returns
    False when the user cancels."""
    from gimp_connection import DAEMON_FIELDS
    from gimp_params import ADVANCED_FIELDS, FIELDS

    from plugin.params import PARAMS, plain_label

    _init_ui()
    for name in [*FIELDS, *ADVANCED_FIELDS, *DAEMON_FIELDS]:  # GTK complains about NULLs
        spec = config.find_property(name)
        if spec is not None and spec.value_type == GObject.TYPE_STRING \
                and config.get_property(name) is None:
            config.set_property(name, "")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, procedure.get_menu_label()
                                        .replace("_", "").rstrip("…"))
    shown = [_text_box(dialog, p.arg_name, plain_label(p.label)) if p.multiline
             else p.arg_name for p in PARAMS if p.arg_name in FIELDS]
    if config.find_property("expand-pixels") is not None:   # Expand's own, first
        shown[:0] = ["expand-pixels", "expand-sides"]
    if config.find_property("upscale-factor") is not None:  # ... and Upscale's
        shown[:0] = ["upscale-factor"]
    if config.find_property("control-drawable") is not None:   # a control layer, after
        from gimp_params import CONTROL_FIELDS

        dialog.get_label("control-title", "Control layer (ControlNet)", False, False)
        dialog.fill_box("control-box", CONTROL_FIELDS)
        dialog.fill_frame("control-frame", "control-title", False, "control-box")
        shown.append("control-frame")
    models = session.models() if session is not None else []
    if models:
        default = (session.info or {}).get("default_model")
        listed = ", ".join(f"{m} (default)" if m == default else m for m in models)
        if dialog.get_label("models-label", f"Models: {listed}", False, False) is not None:
            shown.append("models-label")
    if ADVANCED_FIELDS:
        dialog.get_label("advanced-title", "Advanced", False, False)
        dialog.fill_box("advanced-box", ADVANCED_FIELDS)
        dialog.fill_expander("advanced-expander", "advanced-title", False, "advanced-box")
        shown.append("advanced-expander")
    contents = list(DAEMON_FIELDS)
    label = dialog.get_label("problem-label", problem, False, False) if problem else None
    if label is not None:
        label.set_line_wrap(True)
        label.set_max_width_chars(60)
        label.set_xalign(0.0)
        contents.insert(0, "problem-label")
    _add_file_button(dialog, config, "client-key")
    dialog.get_label("daemon-title", "Daemon (endpoint and keys of a remote daemon)",
                     False, False)
    dialog.fill_box("daemon-box", contents)
    expander = dialog.fill_expander("daemon-expander", "daemon-title", False, "daemon-box")
    if problem and expander is not None:
        expander.set_expanded(True)
    shown.append("daemon-expander")
    dialog.fill(shown)
    ok = dialog.run()
    dialog.destroy()
    return bool(ok)


def _text_box(dialog, prop: str, title: str) -> str:
    """A string argument as a few lines of wrapped text in a frame titled ``title`` (a long
    prompt does not fit an entry); returns the frame's id for ``fill``."""
    view = dialog.get_widget(prop, Gtk.TextView)
    if not isinstance(view, Gtk.TextView):
        return prop                     # an entry, as GIMP makes it by default
    view.set_wrap_mode(Gtk.WrapMode.WORD_CHAR)
    view.set_size_request(360, 48)
    dialog.get_label(f"{prop}-title", title, False, False)
    dialog.fill_frame(f"{prop}-frame", f"{prop}-title", False, prop)
    return f"{prop}-frame"


def _add_file_button(dialog, config, prop: str) -> None:
    """A file chooser button beside a string argument's entry: the key file is picked, and
    the path can still be typed or pasted."""
    labeled = dialog.get_widget(prop, GObject.TYPE_NONE)
    if not isinstance(labeled, Gtk.Grid):
        return
    button = Gtk.FileChooserButton(title="Paintbridge: client key file (NAME.key_secret)",
                                   action=Gtk.FileChooserAction.OPEN)
    button.set_width_chars(12)
    current = config.get_property(prop) or ""
    if current and os.path.isfile(os.path.expanduser(current)):
        button.set_filename(os.path.expanduser(current))

    def chosen(chooser) -> None:
        path = chooser.get_filename()
        if path:
            config.set_property(prop, path)

    button.connect("file-set", chosen)
    labeled.attach(button, 2, 0, 1, 1)
    button.show()


class CancelWindow:
    """A small window with the step count and a Cancel button while the job runs (GIMP's own
    progress bar shows the same; this one can stop the job): ``cancelled`` turns True when
    the user presses Cancel or closes it."""

    def __init__(self, title: str) -> None:
        _init_ui()
        self.cancelled = False
        self.window = Gtk.Dialog(title=f"Paintbridge: {title}")
        self.window.add_button("_Cancel", Gtk.ResponseType.CANCEL)
        self.window.connect("response", self._on_response)
        self.window.connect("delete-event", lambda *a: self._on_response(None, None) or True)
        self.bar = Gtk.ProgressBar(show_text=True)
        self.bar.set_text("Waiting for the daemon…")
        box = self.window.get_content_area()
        box.set_border_width(12)
        box.pack_start(self.bar, True, True, 0)
        self.window.set_default_size(360, -1)
        self.window.show_all()

    def _on_response(self, _dialog, _response) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.bar.set_text("Cancelling…")

    def show(self, fraction: float | None, text: str) -> None:
        """The job's state (``fraction`` None: not known yet, the bar pulses)."""
        if self.cancelled:
            return
        self.bar.set_text(text)
        if fraction is None:
            self.bar.pulse()
        else:
            self.bar.set_fraction(fraction)

    def pump(self) -> None:
        """Let GTK draw the window and take the button's click."""
        _pump_events()

    def close(self) -> None:
        self.window.destroy()
        _pump_events()

"""GIMP's side of a run of plugin.oneshot: the progress bar (and, from the menu, a window with
a Cancel button) as its callbacks, the client it needs loaded, and what the procedure
returns to GIMP. No GimpUi at import: batch runs import it too."""

from __future__ import annotations

import sys

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from plugin.oneshot import TITLES, PaintbridgeError  # noqa: E402


def load_client() -> None:
    """The client needs pyzmq in GIMP's Python: say where to get it when it is missing."""
    try:
        import plugin.session  # noqa: F401
    except ImportError as exc:
        raise PaintbridgeError(f"Paintbridge cannot load its client ({exc}). GIMP's Python "
                               f"({sys.executable}) needs pyzmq: on Debian/Ubuntu install "
                               "python3-zmq; where GIMP bundles Python, run `paintbridge "
                               "install gimp` again.") from exc


class GimpProgress:
    """The job's state in GIMP's progress bar (the status bar, or a batch run's log) and,
    ``with_user``, in a small window whose Cancel button stops the job. A context manager:
    the bar and the window go away however the run ends."""

    def __init__(self, kind: str, with_user: bool) -> None:
        self.title = TITLES[kind]
        self.with_user = with_user
        self.window = None
        self._text: str | None = None

    def __enter__(self) -> GimpProgress:
        Gimp.progress_init(f"Paintbridge: {self.title}…")
        if self.with_user:
            import gimp_dialogs

            self.window = gimp_dialogs.CancelWindow(self.title)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.window is not None:
            self.window.close()
        Gimp.progress_end()

    def progress(self, fraction: float | None, text: str) -> None:
        if text != self._text:
            self._text = text
            Gimp.progress_set_text(f"Paintbridge: {self.title}: {text}")
        if fraction is None:     # nothing to count yet (queued, loading the model)
            Gimp.progress_pulse()
        else:
            Gimp.progress_update(fraction)
        if self.window is not None:
            self.window.show(fraction, text)

    def cancelled(self) -> bool:
        if self.window is None:
            return False
        self.window.pump()
        return self.window.cancelled


def error_values(procedure: Gimp.Procedure, message: str,
                 status: Gimp.PDBStatusType = Gimp.PDBStatusType.EXECUTION_ERROR):
    """A failure as GIMP shows it (GIMP shows a returned error's message itself)."""
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(status, error)


def cancel_values(procedure: Gimp.Procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)


def outcome_values(procedure: Gimp.Procedure, outcome, doc, with_user: bool):
    """A finished run's return: CANCEL when the user stopped it; an Upscale's new image shown
    (from the menu) and returned; else SUCCESS, the new layers on the canvas."""
    if outcome.cancelled:
        return cancel_values(procedure)
    Gimp.displays_flush()
    if doc.opened is None:
        return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
    if with_user:
        Gimp.Display.new(doc.opened)
        Gimp.displays_flush()
    return Gimp.ValueArray.new_from_values([
        GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
        GObject.Value(Gimp.Image, doc.opened)])

#!/usr/bin/env python3
"""Paintbridge for GIMP 3: inpaint, image to image, generate, expand and upscale, under
Filters ▸ Paintbridge.

This file only translates between GIMP and ``plugin/`` (installed beside it): it registers
the procedures, reads their arguments into ``GenerationSettings``, runs one job through
``plugin.session.Session`` and reports progress and errors the GIMP way. Every procedure
runs non-interactively with the same arguments, so scripts and batch mode can use it.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# pyzmq, when the installer vendored it for a GIMP that bundles its own Python
if os.path.isdir(os.path.join(HERE, "vendor")):
    sys.path.insert(0, os.path.join(HERE, "vendor"))

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, GLib, GObject  # noqa: E402
from gimp_connection import add_arguments as add_connection_arguments  # noqa: E402
from gimp_params import add_arguments as add_generation_arguments  # noqa: E402
from gimp_params import (  # noqa: E402
    add_control_arguments,
    add_expand_arguments,
    add_upscale_arguments,
)
from paintbridge_errors import PaintbridgeError  # noqa: E402

#: procedure name -> (job kind, menu label, blurb); the arguments are gimp_params's (one
#: per row of plugin/params.py) and gimp_connection's (endpoint and keys)
PROCEDURES = {
    "paintbridge-inpaint": ("inpaint", "_Inpaint selection…",
                            "Repaint the selection with Stable Diffusion"),
    "paintbridge-img2img": ("img2img", "I_mage to image…",
                            "Redraw the selection, or the whole layer, guided by a prompt"),
    "paintbridge-generate": ("txt2img", "_Generate into selection…",
                             "Paint new content into the selection from a prompt alone"),
    "paintbridge-expand": ("inpaint", "_Expand canvas…",
                           "Grow the canvas on the chosen sides and paint the new area"),
    "paintbridge-upscale": ("upscale", "_Upscale into a new image…",
                            "Enlarge the layer, or the selection's bounding box, 2 to 4 times "
                            "into a new image, refined at full resolution"),
}
EXPAND = "paintbridge-expand"   # an inpaint job of plugin/expand.py, with two more arguments
UPSCALE = "paintbridge-upscale"  # its factor is one more argument; it returns the new image
MENU = "<Image>/Filters/Paintbridge"
START_WAIT_S = 120.0     # how long a freshly started daemon may take to answer


def error_values(procedure: Gimp.Procedure, message: str,
                 status: Gimp.PDBStatusType = Gimp.PDBStatusType.EXECUTION_ERROR):
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(status, error)


class Paintbridge(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(PROCEDURES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        kind, label, blurb = PROCEDURES[name]
        proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        proc.set_image_types("RGB*, GRAY*")
        proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        proc.set_menu_label(label)
        proc.add_menu_path(MENU)
        where = ("a new image, returned and shown (a layer group in it for several "
                 "variations); this image is not changed." if name == UPSCALE else
                 "a new layer above the active one (a layer group for several variations); the "
                 "image's own layers are never changed.")
        proc.set_documentation(blurb, f"{blurb} through a local paintbridge daemon. The result "
                               f"is {where}", name)
        proc.set_attribution("paintbridge", "paintbridge", "2026")
        add_generation_arguments(proc, kind)
        if name == EXPAND:
            add_expand_arguments(proc)
        if name not in (EXPAND, UPSCALE):
            add_control_arguments(proc)
        if name == UPSCALE:
            add_upscale_arguments(proc)
            proc.add_image_return_value("new-image", "New image", "The upscaled image", True,
                                        GObject.ParamFlags.READWRITE)
        add_connection_arguments(proc)
        return proc

    def run(self, procedure, run_mode, image, drawables, config, run_data):
        """GIMP shows a returned error's message itself, so errors are only returned."""
        kind = PROCEDURES[procedure.get_name()][0]
        try:
            return self._run(procedure, kind, run_mode, image, drawables, config)
        except PaintbridgeError as exc:
            return error_values(procedure, str(exc))

    def _run(self, procedure, kind, run_mode, image, drawables, config):
        # From the menu (a dialog, or Repeat with the last values) the user is there to be
        # asked and to press Cancel; scripts and batch runs are never asked anything.
        with_user = run_mode != Gimp.RunMode.NONINTERACTIVE
        interactive = run_mode == Gimp.RunMode.INTERACTIVE
        if len(drawables) != 1:
            raise PaintbridgeError("Paintbridge works on one layer: select exactly one.")
        expanding = procedure.get_name() == EXPAND
        if kind == "inpaint" and not expanding and Gimp.Selection.is_empty(image):
            raise PaintbridgeError("Inpaint needs a selection: select the area to repaint "
                                   "first.")
        try:
            from plugin.client import DaemonError, JobState
            from plugin.protocol import ProtocolError
            from plugin.session import UnsupportedDocument
        except ImportError as exc:
            raise PaintbridgeError(f"Paintbridge cannot load its client ({exc}). GIMP's Python "
                                   f"({sys.executable}) needs pyzmq: on Debian/Ubuntu install "
                                   "python3-zmq; where GIMP bundles Python, run `paintbridge "
                                   "install gimp` again.") from exc
        import gimp_job
        from gimp_connection import can_offer_start, connection_from_config, open_session
        from gimp_connection import not_connected as why_not
        from gimp_document import GimpDocument
        from gimp_params import (
            controls_from_config,
            expansion_from_config,
            settings_from_config,
            upscale_from_config,
        )

        # In the dialog the user can still correct the endpoint and the keys, so there a
        # connection problem is shown in it rather than ending the filter.
        session, problem = None, None
        try:
            connection = connection_from_config(config)
            session = open_session(*connection)
        except PaintbridgeError as exc:
            if not interactive:
                raise
            connection, problem = None, str(exc)
        try:
            if with_user and session is not None and not session.check(timeout=1.0):
                endpoint, server_key, _ = connection
                if can_offer_start(endpoint, server_key, session):
                    import gimp_dialogs

                    if not gimp_dialogs.offer_daemon(session, endpoint, START_WAIT_S):
                        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
                elif interactive:
                    problem = why_not(session, False)
                else:
                    raise PaintbridgeError(why_not(session, False))
            if interactive:
                import gimp_dialogs

                if not gimp_dialogs.settings_dialog(procedure, config, session, problem):
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
                changed = connection_from_config(config)
                if session is None or changed != connection:
                    if session is not None:
                        session.close()
                        session = None
                    connection = changed
                    session = open_session(*connection)
            endpoint, server_key, _ = connection
            if not session.connected and not session.check(timeout=2.0):
                raise PaintbridgeError(why_not(session, can_offer_start(endpoint, server_key,
                                                                         session)))
            settings = settings_from_config(config, kind)
            try:
                expansion = expansion_from_config(config) if expanding else None
                upscale = upscale_from_config(config) if kind == "upscale" else 0
                doc = GimpDocument(image, drawables[0])
                job = session.submit(doc, settings, expansion=expansion, upscale=upscale,
                                     control_layers=controls_from_config(config))
            except (ValueError, UnsupportedDocument) as exc:
                raise PaintbridgeError(str(exc)) from exc
            except (DaemonError, ProtocolError) as exc:
                raise PaintbridgeError(f"Paintbridge could not send the job: {exc}") from exc
            gimp_job.wait(session, job, kind, with_user)
            if job.state is JobState.CANCELLED and job.error_message:  # not the user's doing
                raise PaintbridgeError(f"Paintbridge: the job was cancelled: "
                                       f"{job.error_message}. The image was not changed.")
            if job.state is JobState.CANCELLED:
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
            if job.state is not JobState.DONE:
                raise PaintbridgeError(f"Paintbridge failed: {job.error_message} "
                                       f"[{job.error_code}]")
            session.deliver(doc)
            if doc.opened is not None:   # an Upscale's new image: shown, and returned
                if with_user:
                    Gimp.Display.new(doc.opened)
                Gimp.displays_flush()
                return Gimp.ValueArray.new_from_values([
                    GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                    GObject.Value(Gimp.Image, doc.opened)])
            Gimp.displays_flush()
            return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
        finally:
            if session is not None:
                session.close()


Gimp.main(Paintbridge.__gtype__, sys.argv)

#!/usr/bin/env python3
"""Paintbridge for GIMP 3: inpaint, image to image, generate, expand and upscale, under
Filters ▸ Paintbridge.

This file only translates between GIMP and ``plugin/`` (installed beside it): it registers
the procedures, reads their arguments into ``GenerationSettings`` (gimp_params.py), connects
(gimp_connection.py), runs one job through ``plugin.oneshot`` (which submits it, waits and
delivers) and reports progress and errors the GIMP way (gimp_host.py). Every procedure runs
non-interactively with the same arguments, so scripts and batch mode can use it.
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
import gimp_host  # noqa: E402
from gi.repository import Gimp, GObject  # noqa: E402
from gimp_connection import add_arguments as add_connection_arguments  # noqa: E402
from gimp_connection import connect  # noqa: E402
from gimp_params import add_arguments as add_generation_arguments  # noqa: E402
from gimp_params import (  # noqa: E402
    add_control_arguments,
    add_expand_arguments,
    add_upscale_arguments,
    job_from_config,
)

from plugin import oneshot  # noqa: E402
from plugin.oneshot import PaintbridgeError  # noqa: E402

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
            return gimp_host.error_values(procedure, str(exc))

    def _run(self, procedure, kind, run_mode, image, drawables, config):
        # From the menu (a dialog, or Repeat with the last values) the user is there to be
        # asked and to press Cancel; scripts and batch runs are never asked anything.
        with_user = run_mode != Gimp.RunMode.NONINTERACTIVE
        # 1. what the filter works on
        if len(drawables) != 1:
            raise PaintbridgeError("Paintbridge works on one layer: select exactly one.")
        expanding = procedure.get_name() == EXPAND
        if kind == "inpaint" and not expanding and Gimp.Selection.is_empty(image):
            raise PaintbridgeError("Inpaint needs a selection: select the area to repaint "
                                   "first.")
        # 2. the client (it needs pyzmq in GIMP's Python), and a daemon that answers
        gimp_host.load_client()
        from gimp_document import GimpDocument  # the client's names: after pyzmq is known

        session = connect(procedure, config, run_mode)
        if session is None:                       # the user cancelled a dialog
            return gimp_host.cancel_values(procedure)
        # 3. the job: sent, waited for and delivered (plugin/oneshot.py)
        try:
            settings, spec = job_from_config(config, kind, expanding)
            doc = GimpDocument(image, drawables[0])
            with gimp_host.GimpProgress(kind, with_user) as shown:
                outcome = oneshot.run(session, doc, settings, spec, progress=shown.progress,
                                      cancelled=shown.cancelled)
        finally:
            session.close()
        return gimp_host.outcome_values(procedure, outcome, doc, with_user)


Gimp.main(Paintbridge.__gtype__, sys.argv)

"""Runs inside GIMP 3 (gimp-console-3.0 --batch-interpreter python-fu-eval) in the chroot.

Calls the installed Paintbridge procedures non-interactively, as a script would, and writes
what it observed to $PB_OUT/results.json for tests/test_gimp.py to judge. It judges nothing
itself: every number the assertions need is recorded. With PB_SUITE=auth it runs the key
cases of tests/test_gimp_auth.py instead (against a daemon that requires CurveZMQ keys).
"""

import json
import os
import sys
import traceback

from gi.repository import Gegl, Gimp

OUT = os.environ["PB_OUT"]
ENDPOINT = os.environ["PB_ENDPOINT"]
DEAD_ENDPOINT = os.environ.get("PB_DEAD_ENDPOINT", "")
PLUG_IN_DIR = os.environ["PB_PLUG_IN_DIR"]
PDB = Gimp.get_pdb()
SEL = (32, 24, 24, 20)  # x, y, w, h
#: the control case's outline, drawn by tests/test_gimp.py (PB_CONTROL)
CONTROL = json.loads(os.environ.get("PB_CONTROL", "{}"))
sys.path.insert(0, OUT)    # the scripts beside this one (tests/gimp/), copied there with it
from images import (  # noqa: E402
    alpha_stats,
    changes,
    composite,
    digest,
    make_image,
    raw,
    state,
    tree,
    walk,
)


def plug_in_modules():
    """Let this script import the installed plug-in's modules (and its ``plugin`` package)."""
    folder = os.path.join(PLUG_IN_DIR, "paintbridge")
    if folder not in sys.path:
        sys.path.insert(0, folder)


def run_procedure(name, img, drawable, **args):
    proc = PDB.lookup_procedure(name)
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [drawable])
    for key, value in args.items():
        config.set_property(key.replace("_", "-"), value)
    result = proc.run(config)
    status = result.index(0)
    message = result.index(1) if result.length() > 1 else None
    return status.value_nick, message


COMMON = {"prompt": "a red apple", "steps": 3, "seed": 7, "grow": 0, "feather": 0,
          "padding": 8, "endpoint": ENDPOINT}


def case(name, proc, precision=Gimp.Precision.U8_NON_LINEAR, select=True, on_top=False,
         box=None, gray=False, grouped=False, on_mask=False, **args):
    """One procedure call on a fresh image; ``box`` (x1, y1, x2, y2) is where changes may
    appear (default: the selection)."""
    img, bottom, top = make_image(precision, gray, grouped)
    if select:
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    drawable = top if on_top else bottom.get_mask() if on_mask else bottom
    before, comp0 = state(img, bottom, top), composite(img)
    status, message = run_procedure(proc, img, drawable, **{**COMMON, **args})
    res = {"status": status, "message": message, "before": before,
           "after": state(img, bottom, top), "tree": tree(img.get_layers())}
    comp1 = composite(img)
    x, y, w, h = SEL
    res["box"] = box or [x, y, x + w, y + h]
    res["changes"] = changes(comp0, comp1, res["box"])
    res["results"] = [alpha_stats(layer, img) for layer in walk(img.get_layers())
                      if layer.get_name() not in ("bottom", "top")]
    img.delete()
    return res


def expand_case(**args):
    """Expand 16 px on the right (no selection needed): the image grows only when the
    result is there, the new layer paints the whole new strip opaquely."""
    img, bottom, top = make_image()
    before = state(img, bottom, top)
    status, message = run_procedure("paintbridge-expand", img, bottom,
                                    **{**COMMON, "expand_pixels": 16,
                                       "expand_sides": "right", **args})
    res = {"status": status, "message": message, "before": before,
           "after": state(img, bottom, top), "tree": tree(img.get_layers()),
           "undo_enabled": img.undo_is_enabled(),
           "results": [alpha_stats(layer, img) for layer in walk(img.get_layers())
                       if layer.get_name() not in ("bottom", "top")]}
    img.delete()
    return res


def upscale_case(**args):
    """Upscale ×2 of the selection's box on a 16-bit linear image: a new image, returned,
    of twice the box, in the same precision, holding the result layer; this image as it
    was."""
    img, bottom, top = make_image(Gimp.Precision.U16_LINEAR)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    before, images = state(img, bottom, top), len(Gimp.get_images())
    proc = PDB.lookup_procedure("paintbridge-upscale")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", img)
    config.set_core_object_array("drawables", [bottom])
    for key, value in {**COMMON, "upscale_factor": 2, **args}.items():
        config.set_property(key.replace("_", "-"), value)
    result = proc.run(config)
    res = {"status": result.index(0).value_nick, "before": before,
           "after": state(img, bottom, top), "tree": tree(img.get_layers()),
           "images": len(Gimp.get_images()) - images}
    if res["status"] != "success":
        res["message"] = result.index(1) if result.length() > 1 else None
    else:
        new = result.index(1)
        res["new"] = {"size": [new.get_width(), new.get_height()],
                      "precision": new.get_precision().value_nick,
                      "tree": tree(new.get_layers()),
                      "results": [alpha_stats(layer, new) for layer in walk(new.get_layers())]}
        new.delete()
    img.delete()
    return res


def control_case():
    """Generate "a red shape on a white background" on a white 64x64 page with a triangle
    outline drawn on a second layer as its scribble control: the result layer's pixels for
    the test to score, and the page and the lines layer as they were."""
    side, outline = CONTROL["side"], CONTROL["outline"]
    img = Gimp.Image.new_with_precision(side, side, Gimp.ImageBaseType.RGB,
                                        Gimp.Precision.U8_NON_LINEAR)
    page = Gimp.Layer.new(img, "page", side, side, Gimp.ImageType.RGBA_IMAGE, 100.0,
                          Gimp.LayerMode.NORMAL)
    img.insert_layer(page, None, 0)
    page.get_buffer().set(Gegl.Rectangle.new(0, 0, side, side), "R'G'B'A u8",
                          bytes((245, 245, 245, 255)) * (side * side))
    lines = Gimp.Layer.new(img, "lines", side, side, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    img.insert_layer(lines, None, 0)
    px = b"".join(bytes((20, 20, 20, 255)) if v == "1" else bytes(4) for v in outline)
    lines.get_buffer().set(Gegl.Rectangle.new(0, 0, side, side), "R'G'B'A u8", px)
    drawn = digest(raw(lines))
    page_before = digest(raw(page))
    status, message = run_procedure("paintbridge-generate", img, page,
                                    **{**COMMON, "prompt": "a red shape on a white background",
                                       "steps": 0,
                                       "padding": -1, "control_drawable": lines,
                                       "control_type": "scribble"})
    res = {"status": status, "message": message, "tree": tree(img.get_layers()),
           "lines_as_drawn": digest(raw(lines)) == drawn,
           "page_as_it_was": digest(raw(page)) == page_before}
    made = [layer for layer in walk(img.get_layers())
            if layer.get_name() not in ("page", "lines")]
    if made:
        buf = made[0].get_buffer()
        _, ox, oy = made[0].get_offsets()
        res["offset"] = [ox, oy]
        res["size"] = [made[0].get_width(), made[0].get_height()]
        data = bytes(buf.get(Gegl.Rectangle.new(0, 0, made[0].get_width(),
                                                made[0].get_height()), 1.0, "R'G'B'A u8",
                             Gegl.AbyssPolicy.NONE))
        res["rgba"] = data.hex()
    img.delete()
    return res


def undo_group_trace():
    """Drive the plug-in's own GimpDocument.add_results on a real image through a proxy that
    records the calls: every change must fall between one undo_group_start/end pair."""
    plug_in_modules()
    from gimp_document import GimpDocument

    from plugin.client import Patch

    img, bottom, top = make_image()
    calls = []
    patched = [(Gimp.Image, "undo_group_start"), (Gimp.Image, "undo_group_end"),
               (Gimp.Image, "insert_layer"), (Gimp.Item, "set_name"),
               (Gimp.Layer, "set_offsets"), (Gimp.Drawable, "update")]
    originals = [(cls, attr, getattr(cls, attr)) for cls, attr in patched]

    def recorder(attr, target):
        def call(*a, **k):
            calls.append(attr)
            return target(*a, **k)
        return call

    for cls, attr, target in originals:
        setattr(cls, attr, recorder(attr, target))
    try:
        doc = GimpDocument(img, bottom)
        patches = [Patch(2, 3, 4, 5, "rgba8", s, bytes([9, 8, 7, 255]) * 20) for s in (1, 2)]
        doc.add_results(patches, ["p [seed 1]", "p [seed 2]"], "p [2 variations]")
    finally:
        for cls, attr, target in originals:
            setattr(cls, attr, target)
    tr = tree(img.get_layers())
    img.delete()
    return {"calls": calls, "tree": tr}


def spec_entry(spec):
    """One procedure argument as GIMP registered it: name, type, label, help, default and
    range (and a choice's values)."""
    entry = {"name": spec.get_name(), "type": spec.value_type.name, "label": spec.get_nick(),
             "help": spec.get_blurb()}
    for key in ("default_value", "minimum", "maximum"):
        try:
            value = getattr(spec, key)
        except (AttributeError, TypeError):
            continue
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            entry[key] = value
    entry["spec"] = spec.__gtype__.name
    if "Choice" in entry["spec"]:
        entry["choices"] = list(Gimp.param_spec_choice_get_choice(spec).list_nicks())
        entry["default_value"] = Gimp.param_spec_choice_get_default(spec)
    return entry


def arguments():
    """Every Paintbridge procedure's arguments, as GIMP has them registered."""
    return {name: [spec_entry(spec) for spec in PDB.lookup_procedure(name).get_arguments()]
            for name in ("paintbridge-inpaint", "paintbridge-img2img", "paintbridge-generate",
                         "paintbridge-expand", "paintbridge-upscale")}


def settings_read_back():
    """The plug-in's own reading of its arguments into plugin/'s settings: each procedure's
    defaults, and set values."""
    plug_in_modules()
    from gimp_params import settings_from_config

    out = {}
    for name, kind in (("paintbridge-inpaint", "inpaint"), ("paintbridge-img2img", "img2img"),
                       ("paintbridge-generate", "txt2img")):
        settings = settings_from_config(PDB.lookup_procedure(name).create_config(), kind)
        out[kind] = {"mode": settings.mode, **settings.values}
    config = PDB.lookup_procedure("paintbridge-img2img").create_config()
    for key, value in {"model": "other", "strength": 0.3, "steps": 20, "guidance": 7.5,
                       "sampler": "euler_a", "seed": 5, "count": 2, "padding": 0, "grow": 1,
                       "feather": 2, "loras": "ink:0.8, detail"}.items():
        config.set_property(key, value)
    settings = settings_from_config(config, "img2img")
    out["set"] = dict(settings.values)
    out["set_wire"] = settings.params("img2img")["loras"]
    return out


def progress_texts():
    """A real job through the plug-in's own flow (plugin.oneshot with gimp_host's progress
    bar) with GIMP's progress calls recorded: on a fresh daemon the job first loads its
    model, and the bar says which."""
    plug_in_modules()
    from gimp_document import GimpDocument
    from gimp_host import GimpProgress

    from plugin import oneshot
    from plugin.session import GenerationSettings, Session

    img, bottom, _ = make_image()
    img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    texts = []
    original = Gimp.progress_set_text

    def record(text):
        texts.append(text)
        return original(text)

    Gimp.progress_set_text = record
    session = Session(ENDPOINT)
    try:
        session.check(timeout=30.0)
        doc = GimpDocument(img, bottom)
        with GimpProgress("inpaint", False) as shown:
            outcome = oneshot.run(session, doc, GenerationSettings(
                mode="inpaint", prompt="a red apple", steps=3, seed=7, grow=0, feather=0,
                padding=8), progress=shown.progress, cancelled=shown.cancelled)
    finally:
        Gimp.progress_set_text = original
        session.close()
    img.delete()
    return {"texts": texts, "state": outcome.job.state.value, "model": outcome.job.model,
            "delivered": outcome.names}


def controls_read_back():
    """The plug-in's reading of its control arguments into plugin/'s ControlLayer: none
    without a layer; with one, the defaults ("not set" as empty), then set values."""
    plug_in_modules()
    from gimp_params import controls_from_config

    img, bottom, top = make_image()
    config = PDB.lookup_procedure("paintbridge-generate").create_config()
    out = {"none": [repr(c) for c in controls_from_config(config)]}
    config.set_property("control-drawable", top)
    (default,) = controls_from_config(config)
    out["default"] = {"layer": default.layer, "top": str(top.get_id()), "name": default.name,
                      "values": default.values, "item": default.item()}
    for key, value in {"control-type": "canny", "control-model": "my-canny",
                       "control-strength": 0.5, "control-start": 0.1, "control-end": 0.8,
                       "control-preprocess": "none"}.items():
        config.set_property(key, value)
    (chosen,) = controls_from_config(config)
    out["set"] = {"values": chosen.values, "item": chosen.item()}
    img.delete()
    return out


def main():
    results = {}
    only = os.environ.get("PB_ONLY")
    # first: the daemon has loaded no model yet
    for name, fn in (("progress", progress_texts), ("arguments", arguments),
                     ("settings", settings_read_back), ("controls", controls_read_back)):
        if only and name not in only.split(","):
            continue
        try:
            results[name] = fn()
        except Exception:
            results[name] = {"exception": traceback.format_exc()}
    cases = {
        "inpaint_rgb8": ("paintbridge-inpaint", {}),
        "inpaint_u16_linear": ("paintbridge-inpaint", {"precision": Gimp.Precision.U16_LINEAR}),
        "inpaint_float": ("paintbridge-inpaint",
                          {"precision": Gimp.Precision.FLOAT_NON_LINEAR}),
        "img2img_layer": ("paintbridge-img2img", {"select": False, "on_top": True,
                                                  "strength": 0.7, "guidance": 5.0,
                                                  "box": [4, 6, 44, 36]}),
        "generate_selection": ("paintbridge-generate", {}),
        "batch_group": ("paintbridge-inpaint", {"count": 2}),
        "inpaint_gray8": ("paintbridge-inpaint", {"gray": True}),
        "inpaint_in_group_on_mask": ("paintbridge-inpaint", {"grouped": True, "on_mask": True}),
        "daemon_stopped": ("paintbridge-inpaint", {"endpoint": DEAD_ENDPOINT}),
        "inpaint_no_selection": ("paintbridge-inpaint", {"select": False}),
    }
    for name, (proc, kw) in cases.items():
        if only and name not in only.split(","):
            continue
        try:
            results[name] = case(name, proc, **kw)
        except Exception:
            results[name] = {"exception": traceback.format_exc()}
    for name, fn, kw in (("expand", expand_case, {}),
                         ("expand_daemon_stopped", expand_case, {"endpoint": DEAD_ENDPOINT}),
                         ("upscale", upscale_case, {}),
                         ("upscale_daemon_stopped", upscale_case, {"endpoint": DEAD_ENDPOINT}),
                         *((("control", control_case, {}),) if CONTROL else ())):
        if only and name not in only.split(","):
            continue
        try:
            results[name] = fn(**kw)
        except Exception:
            results[name] = {"exception": traceback.format_exc()}
    try:
        results["undo_group"] = undo_group_trace()
    except Exception:
        results["undo_group"] = {"exception": traceback.format_exc()}
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def auth_main():
    """Inpaint against a daemon started with --auth: the right keys, an unauthorized
    keypair, no client key, an unreadable key file, no keys at all. With PB_ENV_KEYS=1
    (GIMP started with PAINTBRIDGE_SERVER_KEY / PAINTBRIDGE_CLIENT_KEY) the arguments stay
    empty and the environment must do. Writes $PB_OUT/$PB_RESULTS."""
    server_key = os.environ.get("PB_SERVER_KEY", "")

    def key(name):
        return os.environ[name]

    if os.environ.get("PB_ENV_KEYS"):
        cases = {"env_keys": {}}
    else:
        cases = {
            "right_keys": {"server_key": server_key, "client_key": key("PB_CLIENT_KEY")},
            "unauthorized_key": {"server_key": server_key,
                                 "client_key": key("PB_WRONG_CLIENT_KEY")},
            "no_client_key": {"server_key": server_key},
            "missing_key_file": {"server_key": server_key,
                                 "client_key": key("PB_MISSING_CLIENT_KEY")},
            "public_key_file": {"server_key": server_key,
                                "client_key": key("PB_PUBLIC_CLIENT_KEY")},
            "bad_server_key": {"server_key": "not a key",
                               "client_key": key("PB_CLIENT_KEY")},
            "garbled_server_key": {"server_key": "~" * 40,      # 40 long, not Z85
                                   "client_key": key("PB_CLIENT_KEY")},
            "no_keys": {},
        }
    results = {}
    for name, args in cases.items():
        try:
            results[name] = case(name, "paintbridge-inpaint", **args)
        except Exception:
            results[name] = {"exception": traceback.format_exc()}
    with open(os.path.join(OUT, os.environ["PB_RESULTS"]), "w") as f:
        json.dump(results, f, indent=1)


if os.environ.get("PB_SUITE") == "auth":
    auth_main()
else:
    main()

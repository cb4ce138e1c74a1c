"""Run inside Krita: ``kritarunner -s kritadoc_check OUT.json ENDPOINT`` (see
tests/test_krita_document.py).

Exercises the installed plugin's document adapter on real Krita documents, 8-bit, 16-bit
integer and 32-bit float, and through a real daemon: read region + soft selection, add
result layers and batch groups, refuse CMYK, leave the source layer byte-identical.
Writes one JSON object of findings; the pytest side asserts on it.
"""

import json
import struct
import time
import traceback

from PyQt5.QtCore import QByteArray

from krita import Krita, Selection
from paintbridge.document import KritaDocument
from paintbridge.plugin.client import Patch
from paintbridge.plugin.region import Rect
from paintbridge.plugin.session import GenerationSettings, Session, UnsupportedDocument, prepare

W, H = 64, 48
SEL = Rect(20, 14, 20, 16)          # fully selected core
SOFT = 3                            # ring of partly selected pixels around it
BPP = {"U8": 4, "U16": 8, "F32": 16}


def pixel(depth, x, y):
    """A recognisable source pixel, in Krita's layout for the depth."""
    r, g, b = x / W, y / H, 0.25
    if depth == "U8":
        return bytes((int(b * 255), int(g * 255), int(r * 255), 255))
    if depth == "U16":
        return struct.pack("<4H", int(b * 65535), int(g * 65535), int(r * 65535), 65535)
    return struct.pack("<4f", r, g, b, 1.0)


def alpha(depth, px):
    if depth == "U8":
        return px[3] / 255
    if depth == "U16":
        return struct.unpack_from("<H", px, 6)[0] / 65535
    return struct.unpack_from("<f", px, 12)[0]


def mask_bytes():
    out = bytearray(W * H)
    for y in range(H):
        for x in range(W):
            dx = max(SEL.x - x, x - (SEL.right - 1), 0)
            dy = max(SEL.y - y, y - (SEL.bottom - 1), 0)
            d = max(dx, dy)
            out[y * W + x] = 255 if d == 0 else (255 * (SOFT + 1 - d) // (SOFT + 1)
                                                 if d <= SOFT else 0)
    return bytes(out)


def make_doc(depth, model="RGBA"):
    doc = Krita.instance().createDocument(W, H, f"t-{depth}", model, depth, "", 72.0)
    doc.setBatchmode(True)
    layer = doc.rootNode().childNodes()[0]
    if model == "RGBA":
        data = b"".join(pixel(depth, x, y) for y in range(H) for x in range(W))
        layer.setPixelData(QByteArray(data), 0, 0, W, H)
    sel = Selection()
    sel.setPixelData(QByteArray(mask_bytes()), 0, 0, W, H)
    doc.setSelection(sel)
    doc.refreshProjection()
    return doc, layer


def stack(doc):
    """Layers bottom to top (selection masks left out), groups as [name, children]."""
    def walk(node):
        out = []
        for c in node.childNodes():
            if c.type() == "selectionmask":
                continue
            if c.type() == "grouplayer":
                out.append([c.name(), c.type(), c.visible(), walk(c)])
            else:
                out.append([c.name(), c.type(), c.visible()])
        return out
    return walk(doc.rootNode())


def layer_alpha_stats(depth, layer, mask):
    """Alpha of a result layer vs the selection: inside the core, far outside, overall."""
    raw = bytes(layer.pixelData(0, 0, W, H))
    bpp = BPP[depth]
    inside, outside_max, outside_rgb_zero = [], 0.0, True
    for y in range(H):
        for x in range(W):
            px = raw[(y * W + x) * bpp:(y * W + x + 1) * bpp]
            a = alpha(depth, px)
            m = mask[y * W + x]
            if m == 255:
                inside.append(a)
            dx = max(SEL.x - x, x - (SEL.right - 1), 0)
            dy = max(SEL.y - y, y - (SEL.bottom - 1), 0)
            if max(dx, dy) > SOFT + 12:          # beyond the ring, grow and feather
                outside_max = max(outside_max, a)
                outside_rgb_zero &= not any(px)
    cx, cy = SEL.x + SEL.width // 2, SEL.y + SEL.height // 2
    centre = alpha(depth, raw[(cy * W + cx) * bpp:(cy * W + cx + 1) * bpp])
    return {"centre": centre, "inside_min": min(inside), "outside_max": outside_max,
            "outside_zero": outside_rgb_zero}


def min_alpha(depth, layer, doc):
    raw = bytes(layer.pixelData(0, 0, doc.width(), doc.height()))
    bpp = BPP[depth]
    return min(alpha(depth, raw[i:i + bpp]) for i in range(0, len(raw), bpp))


def finish(session, job, timeout=120):
    """Drain the session until the job is done (as the docker's notifier would)."""
    deadline = time.monotonic() + timeout
    while not job.finished and time.monotonic() < deadline:
        session.poll(100)


def check_depth(depth, endpoint, res):
    doc, layer = make_doc(depth)
    before = bytes(layer.pixelData(0, 0, W, H))
    kdoc = KritaDocument(doc, layer)
    out = res[depth] = {"format": kdoc.pixel_format(),
                        "bounds": list(vars(kdoc.selection_bounds()).values())}
    prepared = prepare(kdoc, GenerationSettings(prompt="x", padding=8))
    r = prepared.region
    out["kind"] = prepared.kind
    out["region"] = [r.x, r.y, r.width, r.height]
    out["image_format"] = prepared.image.format
    out["image_ok"] = prepared.image.data == bytes(layer.pixelData(r.x, r.y, r.width, r.height))
    expect = mask_bytes()
    rows = [expect[(r.y + j) * W + r.x:(r.y + j) * W + r.right] for j in range(r.height)]
    out["mask_format"] = prepared.mask.format
    out["mask_ok"] = bytes(prepared.mask.data) == b"".join(rows)
    out["mask_values"] = sorted(set(prepared.mask.data))

    # a synthetic patch: exact round trip of the bytes at their offset
    bpp = BPP[depth]
    data = bytes((i * 7) % 251 for i in range(4 * 3 * bpp))
    names = []
    kdoc.add_results([Patch(5, 6, 4, 3, kdoc.pixel_format(), 1, data)], ["synthetic [seed 1]"])
    syn = kdoc.added[0]
    names.append(syn.name())
    out["patch_roundtrip"] = bytes(syn.pixelData(5, 6, 4, 3)) == data
    out["patch_outside_zero"] = not any(bytes(syn.pixelData(0, 0, W, 6)))
    syn.remove()

    # the real daemon
    session = Session(endpoint)
    out["connected"] = session.check(timeout=10)
    settings = GenerationSettings(prompt="a red square", steps=2, seed=11, count=1)
    job = session.submit(kdoc, settings)
    finish(session, job)
    out["job"] = [job.state.value, job.error_message]
    out["names"] = session.deliver(kdoc)
    new = kdoc.added[0] if kdoc.added else None
    if new is not None:
        out["alpha"] = layer_alpha_stats(depth, new, expect)
        out["result_colorspace"] = [new.colorModel(), new.colorDepth()]
    out["stack"] = stack(doc)
    out["source_identical"] = bytes(layer.pixelData(0, 0, W, H)) == before

    # Upscale ×2 of the whole layer: a new document in the layer's colour space, holding the
    # result layer only; this one untouched
    layers_now, docs = stack(doc), len(Krita.instance().documents())
    job = session.submit(kdoc, GenerationSettings(prompt="", steps=2, seed=5), upscale=2)
    finish(session, job)
    out["upscale_job"] = [job.state.value, job.error_message]
    out["upscale_names"] = session.deliver(kdoc)
    new_doc = kdoc.opened
    if new_doc is not None:
        top = new_doc.rootNode().childNodes()
        out["upscale_doc"] = {"size": [new_doc.width(), new_doc.height()],
                              "documents": len(Krita.instance().documents()) - docs,
                              "stack": stack(new_doc),
                              "colorspace": [top[0].colorModel(), top[0].colorDepth()],
                              "min_alpha": min_alpha(depth, top[0], new_doc)}
        new_doc.close()
    out["upscale_source_identical"] = (bytes(layer.pixelData(0, 0, W, H)) == before
                                       and stack(doc) == layers_now)

    if depth == "U8":   # a batch: a group above the source, first result visible
        job = session.submit(kdoc, GenerationSettings(prompt="batch", steps=2, seed=3, count=2))
        finish(session, job)
        out["batch_job"] = [job.state.value, job.error_message]
        out["batch_names"] = session.deliver(kdoc)
        out["batch_stack"] = stack(doc)
        out["batch_source_identical"] = bytes(layer.pixelData(0, 0, W, H)) == before
        # the controller's hands on results: a stable key (Krita makes new wrappers) and
        # show/hide
        group = next(n for n in doc.rootNode().childNodes() if n.type() == "grouplayer")
        out["group_key_stable"] = (kdoc.key(group) == kdoc.key(kdoc.group)
                                   and kdoc.key(group) != kdoc.key(layer))
        second = kdoc.added[1]
        was = second.visible()
        kdoc.toggle(second)
        out["toggled"] = [was, group.childNodes()[0].visible()]
        kdoc.toggle(second)
    session.close()
    doc.close()


def check_cmyk(endpoint, res):
    doc, layer = make_doc("U8", "CMYKA")
    before = bytes(layer.pixelData(0, 0, W, H))
    layers_before = stack(doc)
    session = Session(endpoint)
    session.check(timeout=10)
    try:
        session.submit(KritaDocument(doc, layer), GenerationSettings(prompt="x"))
        res["cmyk"] = {"refused": False}
    except UnsupportedDocument as exc:
        res["cmyk"] = {"refused": True, "message": str(exc)}
    res["cmyk"]["sent"] = session.job is not None
    res["cmyk"]["unchanged"] = (stack(doc) == layers_before
                                and bytes(layer.pixelData(0, 0, W, H)) == before)
    session.close()
    doc.close()


def check_float_order(res):
    """Krita's float layers are R, G, B, A (integer ones B, G, R, A): prove it by converting."""
    doc = Krita.instance().createDocument(2, 1, "f", "RGBA", "F32", "", 72.0)
    layer = doc.rootNode().childNodes()[0]
    layer.setPixelData(QByteArray(struct.pack("<8f", 1, 0, 0, 1, 0, 0, 1, 1)), 0, 0, 2, 1)
    layer.setColorSpace("RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc")
    res["float_to_u8"] = list(bytes(layer.pixelData(0, 0, 2, 1)))
    doc.close()


def __main__(args):
    out, endpoint = args[0], args[1]
    res = {}
    try:
        for depth in ("U8", "U16", "F32"):
            check_depth(depth, endpoint, res)
        check_cmyk(endpoint, res)
        check_float_order(res)
    except Exception:
        res["exception"] = traceback.format_exc()
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

"""Runs inside GIMP 3, imported by cases.py: the test picture (two layers, a layer mask,
optionally a group) and fingerprints of what a procedure must leave alone or may add. It
records, it judges nothing."""

import hashlib
import struct

from gi.repository import Gegl, Gimp

W, H = 96, 72


def gradient(w, h):
    """An 8-bit RGBA test picture with a different value in every pixel."""
    return bytes(v for y in range(h) for x in range(w)
                 for v in ((x * 255) // max(1, w - 1), (y * 255) // max(1, h - 1),
                           (x * y) % 256, 255))


def make_image(precision=Gimp.Precision.U8_NON_LINEAR, gray=False, grouped=False):
    """Two layers, "bottom" (with a layer mask) and "top" (smaller, offset), bottom active;
    ``grouped`` puts "bottom" into a layer group "folder"."""
    base = Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB
    kind = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE
    img = Gimp.Image.new_with_precision(W, H, base, precision)
    bottom = Gimp.Layer.new(img, "bottom", W, H, kind, 100.0, Gimp.LayerMode.NORMAL)
    parent = None
    if grouped:
        parent = Gimp.GroupLayer.new(img, "folder")
        img.insert_layer(parent, None, 0)
    img.insert_layer(bottom, parent, 0)
    buf = bottom.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, W, H), "R'G'B'A u8", gradient(W, H))
    buf.flush()
    mask = bottom.create_mask(Gimp.AddMaskType.WHITE)
    bottom.add_mask(mask)
    top = Gimp.Layer.new(img, "top", 40, 30, kind, 60.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(top, None, 0)
    top.set_offsets(4, 6)
    tb = top.get_buffer()
    tb.set(Gegl.Rectangle.new(0, 0, 40, 30), "R'G'B'A u8", gradient(40, 30)[::-1])
    tb.flush()
    img.set_selected_layers([bottom])
    return img, bottom, top


def raw(drawable):
    """All of a drawable's pixels as float (lossless for every precision: identity checks)."""
    buf = drawable.get_buffer()
    fmt = "Y float" if isinstance(drawable, Gimp.Channel) else "RGBA float"
    return bytes(buf.get(Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height()),
                         1.0, fmt, Gegl.AbyssPolicy.NONE))


def composite(img):
    """The visible image as 8-bit RGBA, row-major."""
    dup = img.duplicate()
    merged = dup.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    _, ox, oy = merged.get_offsets()
    data = bytes(merged.get_buffer().get(Gegl.Rectangle.new(-ox, -oy, W, H), 1.0,
                                         "R'G'B'A u8", Gegl.AbyssPolicy.NONE))
    dup.delete()
    return data


def tree(items):
    out = []
    for item in items:
        entry = {"name": item.get_name()}
        if item.is_group_layer():
            entry["children"] = tree(item.get_children())
        else:
            _, x, y = item.get_offsets()
            entry.update(x=x, y=y, w=item.get_width(), h=item.get_height())
        out.append(entry)
    return out


def digest(data):
    return hashlib.sha256(data).hexdigest()


def state(img, bottom, top):
    """Everything the plug-in must leave alone, fingerprinted."""
    sel = Gimp.Selection.bounds(img)
    return {"bottom": digest(raw(bottom)), "bottom_mask": digest(raw(bottom.get_mask())),
            "top": digest(raw(top)), "selection": list(sel[1:]),
            "selection_px": digest(raw(img.get_selection())),
            "size": [img.get_width(), img.get_height()],
            "precision": img.get_precision().value_nick}


def alpha_stats(layer, img):
    """Where a result layer is opaque, in canvas coordinates, and whether its values use
    the depth of the image (16-bit values that are not 8-bit values scaled)."""
    w, h = layer.get_width(), layer.get_height()
    _, ox, oy = layer.get_offsets()
    a8 = bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8",
                                      Gegl.AbyssPolicy.NONE))
    alpha = [(ox + i % w, oy + i // w) for i in range(w * h) if a8[4 * i + 3]]
    xs, ys = [p[0] for p in alpha] or [0], [p[1] for p in alpha] or [0]
    out = {"name": layer.get_name(), "opaque": len(alpha),
           "box": [min(xs), min(ys), max(xs) + 1, max(ys) + 1]}
    if not img.get_precision().value_nick.startswith("u8"):
        d16 = bytes(layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0,
                                           "R'G'B'A u16", Gegl.AbyssPolicy.NONE))
        vals = struct.unpack(f"<{len(d16) // 2}H", d16)
        rgb = [v for i, v in enumerate(vals) if i % 4 != 3 and vals[i - i % 4 + 3] == 65535]
        out["not_8bit"] = sum(v % 257 != 0 for v in rgb)
        out["rgb_values"] = len(rgb)
    return out


def changes(before, after, box):
    """Pixels of the composite that changed inside and outside ``box`` (x1, y1, x2, y2)."""
    inside = outside = n_in = 0
    for i in range(W * H):
        x, y = i % W, i // W
        diff = before[4 * i:4 * i + 4] != after[4 * i:4 * i + 4]
        if box[0] <= x < box[2] and box[1] <= y < box[3]:
            n_in += 1
            inside += diff
        else:
            outside += diff
    return {"inside": inside, "inside_total": n_in, "outside": outside}


def walk(items):
    for item in items:
        if item.is_group_layer():
            yield from walk(item.get_children())
        else:
            yield item

"""Procedural shapes dataset: images, object/random/full masks and captions with ground truth.

Everything is drawn with numpy from a seeded ``numpy.random.Generator`` so that training and
evaluation are reproducible and every sample carries its exact ground truth (shape kind, colour,
box, background colour) for the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SIZE = 64
"""Native resolution of the default model, in pixels."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (240, 220, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 220),
    "purple": (135, 40, 175),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
"""Named colours used for shapes and backgrounds (far apart in RGB so the scorer is unambiguous)."""

SHAPES = ("circle", "square", "triangle")
BACKGROUNDS = ("solid", "gradient", "striped", "textured")
BG_WEIGHTS = (0.4, 0.25, 0.15, 0.2)
MASK_KINDS = ("object", "random", "full")
MASK_WEIGHTS = (0.75, 0.05, 0.2)
CAPTION_DROPOUT = 0.1

WORDS = (
    ["a", "an", "and", "on", "the", "of", "with", "in", "background", "shape"]
    + list(SHAPES)
    + list(COLOURS)
    + ["gray", "grey"]
)
"""Words that get a single token in the tokenizer built offline."""


@dataclass
class Shape:
    """One drawn shape: kind, colour name and its bounding box (x0, y0, x1, y1), exclusive end."""

    kind: str
    colour: str
    box: tuple[int, int, int, int]

    def phrase(self) -> str:
        return f"{article(self.colour)} {self.colour} {self.kind}"


@dataclass
class Scene:
    """An image with its ground truth; ``image`` is uint8 HxWx3."""

    image: np.ndarray
    bg_colour: str
    bg_kind: str
    shapes: list[Shape] = field(default_factory=list)

    def caption(self, rng: np.random.Generator | None = None) -> str:
        order = list(self.shapes)
        if rng is not None and len(order) > 1 and rng.random() < 0.5:
            order.reverse()
        parts = " and ".join(s.phrase() for s in order)
        bg = f"on {article(self.bg_colour)} {self.bg_colour} background"
        return f"{parts} {bg}" if parts else bg[3:]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def shape_mask(kind: str, box: tuple[int, int, int, int], size: int = SIZE) -> np.ndarray:
    """Boolean mask of a crisp shape filling ``box``; triangles point up, base at the bottom."""
    x0, y0, x1, y1 = box
    if size == SIZE:
        yy, xx = _YY, _XX
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    inside = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    if kind == "square":
        return inside
    w, h = x1 - x0, y1 - y0
    cx, cy = x0 + w / 2, y0 + h / 2
    if kind == "circle":
        return ((xx - cx) / (w / 2)) ** 2 + ((yy - cy) / (h / 2)) ** 2 <= 1.0
    if kind == "triangle":
        frac = (yy - y0) / h
        return inside & (np.abs(xx - cx) <= frac * (w / 2))
    raise ValueError(f"unknown shape {kind!r}")


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int) -> np.ndarray:
    c = np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3)
    return np.clip(c, 0, 255)


def background(kind: str, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Float HxWx3 background of one named colour: solid, gradient, striped or textured."""
    base = _jitter(COLOURS[colour], rng, 10)
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = base
    if kind == "solid":
        return img
    # A lighter/darker variant of the same colour keeps the colour name true.
    shade = 0.7 if base.mean() > 128 else 1.0
    other = np.clip(base * shade + (0 if shade < 1 else 60), 0, 255)
    if kind == "gradient":
        ang = rng.uniform(0, 2 * np.pi)
        t = (np.cos(ang) * (_XX - SIZE / 2) + np.sin(ang) * (_YY - SIZE / 2)) / SIZE + 0.5
        t = np.clip(t, 0, 1)[..., None]
        return base * (1 - t) + other * t
    if kind == "striped":
        period = rng.integers(6, 13)
        direction = rng.integers(0, 3)
        coord = (_XX, _YY, _XX + _YY)[direction]
        on = ((coord + rng.integers(0, period)) % period) < period / 2
        img[on] = other
        return img
    if kind == "textured":
        lo = rng.normal(0, 1, (SIZE // 8, SIZE // 8, 3)).astype(np.float32)
        noise = np.kron(lo, np.ones((8, 8, 1), np.float32))
        noise += rng.normal(0, 0.5, (SIZE, SIZE, 3)).astype(np.float32)
        return np.clip(img + noise * 14, 0, 255)
    raise ValueError(f"unknown background {kind!r}")


def _place(size: int, taken: list[tuple[int, int, int, int]], rng: np.random.Generator,
           margin: int = 3) -> tuple[int, int, int, int] | None:
    """A square box of side ``size`` that does not touch boxes already placed."""
    for _ in range(30):
        x0 = int(rng.integers(1, SIZE - size))
        y0 = int(rng.integers(1, SIZE - size))
        box = (x0, y0, x0 + size, y0 + size)
        if all(
            box[2] + margin <= t[0] or t[2] + margin <= box[0]
            or box[3] + margin <= t[1] or t[3] + margin <= box[1]
            for t in taken
        ):
            return box
    return None


def render_scene(rng: np.random.Generator, n_shapes: int | None = None, bg_kind: str | None = None,
                 bg_colour: str | None = None,
                 shapes: list[tuple[str, str, int]] | None = None) -> Scene:
    """Draw a random scene; ``shapes`` may fix (kind, colour, side) of the shapes to draw."""
    names = list(COLOURS)
    bg_kind = bg_kind or str(rng.choice(BACKGROUNDS, p=BG_WEIGHTS))
    bg_colour = bg_colour or str(rng.choice(names))
    img = background(bg_kind, bg_colour, rng)
    if shapes is None:
        n = n_shapes if n_shapes is not None else int(rng.choice([1, 2], p=[0.5, 0.5]))
        shapes = []
        for _ in range(n):
            col = str(rng.choice([c for c in names if c != bg_colour]))
            shapes.append((str(rng.choice(SHAPES)), col, int(rng.integers(14, 31))))
    placed: list[Shape] = []
    for kind, col, side in shapes:
        box = _place(side, [s.box for s in placed], rng)
        if box is None:
            continue
        img[shape_mask(kind, box)] = _jitter(COLOURS[col], rng, 12)
        placed.append(Shape(kind, col, box))
    return Scene(np.clip(img + 0.5, 0, 255).astype(np.uint8), bg_colour, bg_kind, placed)


def object_box(shape: Shape, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The mask box used around one shape: its bbox dilated by a few pixels per side."""
    m = int(rng.integers(2, 6))
    x0, y0, x1, y1 = shape.box
    j = rng.integers(0, 2, 4)
    return (max(0, x0 - m - j[0]), max(0, y0 - m - j[1]),
            min(SIZE, x1 + m + j[2]), min(SIZE, y1 + m + j[3]))


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), bool)
    m[box[1]:box[3], box[0]:box[2]] = True
    return m


def edge_map(scene: Scene) -> np.ndarray:
    """Bool HxW: the pixels on either side of every shape's outline (a 2 px band).

    Training weights these pixels up, so the autoencoder and the UNet keep corners and edges
    crisp instead of rounding them off (rounded squares read as circles).
    """
    s = np.zeros((SIZE, SIZE), bool)
    for sh in scene.shapes:
        s |= shape_mask(sh.kind, sh.box)
    p = np.pad(s, 1, mode="edge")
    nb = (p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:])
    grow = s | nb[0] | nb[1] | nb[2] | nb[3]
    shrink = s & nb[0] & nb[1] & nb[2] & nb[3]
    return grow & ~shrink


def training_sample(rng: np.random.Generator, edges: bool = False) -> tuple:
    """(image uint8 HxWx3, mask bool HxW, caption) drawn with the training mixture.

    With ``edges`` the shape-outline band (:func:`edge_map`) comes last; it draws no random
    numbers, so the samples are the same either way.
    """
    scene = render_scene(rng)
    kind = str(rng.choice(MASK_KINDS, p=MASK_WEIGHTS))
    if kind == "object" and scene.shapes:
        target = scene.shapes[int(rng.integers(len(scene.shapes)))]
        mask = box_mask(object_box(target, rng))
        caption = target.phrase()
        if rng.random() < 0.5:
            caption += f" on {article(scene.bg_colour)} {scene.bg_colour} background"
    elif kind == "random":
        w, h = rng.integers(12, 41, 2)
        x0, y0 = int(rng.integers(0, SIZE - w + 1)), int(rng.integers(0, SIZE - h + 1))
        mask = box_mask((x0, y0, x0 + int(w), y0 + int(h)))
        caption = scene.caption(rng)
    else:
        mask = np.ones((SIZE, SIZE), bool)
        caption = scene.caption(rng)
    if rng.random() < CAPTION_DROPOUT:
        caption = ""
    if edges:
        return scene.image, mask, caption, edge_map(scene)
    return scene.image, mask, caption


def training_batch(rng: np.random.Generator, n: int, edges: bool = False) -> tuple:
    """A batch: images float32 Nx3xHxW in [-1, 1], masks float32 Nx1xHxW, captions.

    With ``edges``, a fourth item: the shape-outline bands, float32 Nx1xHxW.
    """
    imgs, masks, caps, eds = [], [], [], []
    for _ in range(n):
        im, m, c, e = training_sample(rng, edges=True)
        imgs.append(im)
        masks.append(m)
        caps.append(c)
        eds.append(e)
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    mk = np.stack(masks).astype(np.float32)[:, None]
    if edges:
        return x, mk, caps, np.stack(eds).astype(np.float32)[:, None]
    return x, mk, caps


def vae_batch(rng: np.random.Generator, n: int, edges: bool = False):
    """Scenes only (no masks) for autoencoder training, float32 Nx3xHxW in [-1, 1].

    A quarter are the pipeline's masked images (mask area set to 0, i.e. mid grey) so that the
    encoder sees exactly what the inpaint pipeline feeds it. With ``edges``, also the
    shape-outline bands (float32 Nx1xHxW, cleared where the image was masked out).
    """
    out, eds = [], []
    for _ in range(n):
        im, m, _, e = training_sample(rng, edges=True)
        x = im.astype(np.float32) / 127.5 - 1.0
        if rng.random() < 0.25 and not m.all():
            x[m] = 0.0
            e = e & ~m
        out.append(x)
        eds.append(e)
    x = np.stack(out).transpose(0, 3, 1, 2).copy()
    if edges:
        return x, np.stack(eds).astype(np.float32)[:, None]
    return x

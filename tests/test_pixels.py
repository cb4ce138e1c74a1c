"""Pixel maths: format conversions, the soft selection alpha, scaling, patch cutting."""

from __future__ import annotations

import numpy as np
import pytest

from paintbridge.backend.jobs import pixels
from paintbridge.plugin.protocol import FORMATS, FrameSpec

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("fmt", [f for f, (c, _) in FORMATS.items() if c == 4])
def test_formats_round_trip(fmt: str) -> None:
    rng = np.random.default_rng(0)
    depth = FORMATS[fmt][1]
    if depth == 4:
        raw = rng.random((5, 7, 4), dtype=np.float32).astype("<f4").tobytes()
    else:
        raw = rng.integers(0, 256**depth, (5, 7, 4)).astype({1: "u1", 2: "<u2"}[depth]).tobytes()
    decoded = pixels.decode_frame(raw, FrameSpec("image", 7, 5, fmt))
    assert decoded.shape == (5, 7, 4) and decoded.dtype == np.float32
    assert pixels.encode_frame(decoded, fmt) == raw


def test_bgra_is_krita_order() -> None:
    bgra = bytes([10, 20, 30, 40])  # B, G, R, A
    px = pixels.decode_frame(bgra, FrameSpec("image", 1, 1, "bgra8"))
    assert np.allclose(px[0, 0] * 255, [30, 20, 10, 40])


def test_float_frames_are_sanitised() -> None:
    raw = np.array([[np.nan, np.inf, -3.0, 0.5]], "<f4").tobytes()
    px = pixels.decode_frame(raw, FrameSpec("image", 1, 1, "rgbaf32"))
    assert px.tolist() == [[[0.0, 1.0, 0.0, 0.5]]]


def soft_alpha(mask: np.ndarray, grow_px: int, feather: int) -> np.ndarray:
    """Selection -> patch alpha, as recipe.prepare builds it: grown, then feathered inwards."""
    return pixels.feather_inward(pixels.grow(mask, grow_px), feather)


def square_mask(size: int = 64, lo: int = 24, hi: int = 40) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[lo:hi, lo:hi] = 1.0
    return m


def test_alpha_without_grow_is_zero_outside_selection() -> None:
    m = square_mask()
    for feather in (0, 1, 3, 6):
        a = soft_alpha(m, 0, feather)
        assert (a[m == 0] == 0).all()
    assert (soft_alpha(m, 0, 0) == m).all()


def test_grow_and_feather() -> None:
    m = square_mask()
    a = soft_alpha(m, 4, 4)
    grown = np.zeros_like(m)
    grown[20:44, 20:44] = 1
    assert (a[grown == 0] == 0).all()       # exactly zero beyond the grown box
    assert a[32, 32] == 1.0                 # opaque core
    row = a[32, 18:32]
    assert (np.diff(row) >= 0).all()        # ramps up monotonically towards the inside
    assert 0.3 < a[32, 24] < 0.7            # grow == feather: half-way at the boundary


def test_thin_selection_keeps_a_core() -> None:
    m = np.zeros((40, 40), np.float32)
    m[10:13, 5:35] = 1.0
    a = soft_alpha(m, 0, 16)
    assert a.max() > 0 and (a[m == 0] == 0).all()


def test_soft_selection_values_are_kept() -> None:
    m = np.full((16, 16), 0.5, np.float32)
    assert np.allclose(soft_alpha(m, 0, 2), 0.5)


def test_model_size() -> None:
    assert pixels.model_size(256, 256, 512) == (512, 512)
    assert pixels.model_size(1024, 512, 512) == (728, 360)
    w, h = pixels.model_size(4000, 50, 512)
    assert w == 1024 and h % 8 == 0 and h >= 8
    assert all(s % 8 == 0 for s in pixels.model_size(333, 777, 64))


def test_resize_identity_and_range() -> None:
    x = np.random.default_rng(0).random((10, 12, 3), dtype=np.float32)
    assert pixels.resize(x, 12, 10) is x
    y = pixels.resize(x, 30, 25)
    assert y.shape == (25, 30, 3) and y.min() >= 0 and y.max() <= 1


def test_patch_is_cut_to_alpha_and_transparent_outside() -> None:
    rgb = np.ones((20, 30, 3), np.float32)
    alpha = np.zeros((20, 30), np.float32)
    alpha[5:8, 10:20] = 1.0
    alpha[8, 10] = 1e-4                     # quantises to 0 in 8 bits
    p = pixels.make_patch(rgb, alpha, (100, 200), "rgba8")
    assert (p.x, p.y, p.width, p.height) == (110, 205, 10, 3)
    px = np.frombuffer(p.data, np.uint8).reshape(3, 10, 4)
    assert (px == 255).all()
    p16 = pixels.make_patch(rgb, alpha, (0, 0), "rgba16")
    assert (p16.width, p16.height) == (10, 4)   # 1e-4 survives 16-bit quantisation

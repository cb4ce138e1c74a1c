"""Raw pixel frames on the wire: the formats, what a header says about each frame, and the
checks that run before any buffer is touched. Standard library only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ErrorCode, ProtocolError
from .limits import Limits

#: pixel format name -> (channels, bytes per channel). Byte orders are named in full:
#: ``bgra8`` is Krita's 8-bit order; floats are little-endian IEEE 754.
FORMATS: dict[str, tuple[int, int]] = {
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "rgba16": (4, 2),
    "bgra16": (4, 2),
    "rgbaf32": (4, 4),
    "gray8": (1, 1),
    "gray16": (1, 2),
    "grayf32": (1, 4),
}
IMAGE_FORMATS = tuple(f for f, (c, _) in FORMATS.items() if c == 4)
MASK_FORMATS = tuple(f for f, (c, _) in FORMATS.items() if c == 1)


@dataclass(frozen=True)
class FrameSpec:
    """What the header says about one raw frame."""

    role: str
    width: int
    height: int
    format: str

    @property
    def nbytes(self) -> int:
        return frame_nbytes(self.width, self.height, self.format)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "width": self.width, "height": self.height,
                "format": self.format}


def frame_nbytes(width: int, height: int, fmt: str) -> int:
    channels, depth = FORMATS[fmt]
    return width * height * channels * depth


def _int_field(obj: Mapping[str, Any], key: str, lo: int, hi: int, where: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.{key} must be an integer", key)
    if not lo <= value <= hi:
        raise ProtocolError(ErrorCode.TOO_LARGE if value > hi else ErrorCode.BAD_FIELD,
                            f"{where}.{key} = {value} is outside {lo}..{hi}", key)
    return value


def parse_frame_specs(header: Mapping[str, Any], limits: Limits) -> list[FrameSpec]:
    """Validate the ``frames`` list (sizes, formats, limits) before any buffer is touched."""
    raw = header.get("frames", [])
    if not isinstance(raw, list):
        raise ProtocolError(ErrorCode.BAD_FIELD, "'frames' must be a list", "frames")
    if len(raw) > limits.max_frames:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"{len(raw)} frames declared; limit {limits.max_frames}", "frames")
    specs = []
    for i, item in enumerate(raw):
        where = f"frames[{i}]"
        if not isinstance(item, dict):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where} must be an object", "frames")
        role = item.get("role")
        if not isinstance(role, str) or not role:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{where}.role must be a string", "role")
        fmt = item.get("format")
        if fmt not in FORMATS:
            raise ProtocolError(ErrorCode.BAD_FIELD,
                                f"{where}.format must be one of {', '.join(FORMATS)}", "format")
        width = _int_field(item, "width", 1, limits.max_side, where)
        height = _int_field(item, "height", 1, limits.max_side, where)
        if width * height > limits.max_pixels:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"{where} is {width}x{height} = {width * height} pixels; "
                                f"limit {limits.max_pixels}", "frames")
        specs.append(FrameSpec(role, width, height, fmt))
    return specs


def check_frame_buffers(specs: Sequence[FrameSpec], buffers: Sequence[Any]) -> None:
    """Frame count and every frame length must match the header exactly."""
    if len(buffers) != len(specs):
        raise ProtocolError(ErrorCode.BAD_FRAME,
                            f"header describes {len(specs)} frames but {len(buffers)} arrived")
    for i, (spec, buf) in enumerate(zip(specs, buffers, strict=True)):
        size = len(buf)
        if size != spec.nbytes:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                f"frame {i + 1} ({spec.role}) is {size} bytes; "
                                f"{spec.width}x{spec.height} {spec.format} needs {spec.nbytes}")

"""Wire protocol v1: multipart ZeroMQ messages, a JSON header and raw pixel frames.

Frame 0 is a UTF-8 JSON object with ``"v": 1``; frames 1..n are raw pixel buffers that the
header's ``frames`` list describes (role, width, height, format), in order. Both ends validate
with the functions here, so a malformed message is refused with the same ``code`` whichever
side sees it. See docs/protocol.md for the full specification.

Only the standard library is used: this module runs inside the hosts' Pythons.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import controls as _controls
from . import loraspec
from . import params as _params
from .errors import VERSION, ErrorCode, ProtocolError
from .frames import (
    FORMATS,
    IMAGE_FORMATS,
    MASK_FORMATS,
    FrameSpec,
    check_frame_buffers,
    frame_nbytes,
    parse_frame_specs,
)
from .limits import Limits
from .params import WireEnum

#: the wire's names in one place (frames, errors and limits live in their own modules)
__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_PORT", "EVENTS", "FORMATS", "IMAGE_FORMATS", "KINDS",
           "MASK_FORMATS", "REQUEST_OPS", "SAMPLERS", "UPSCALE_FACTORS", "VERSION", "ErrorCode",
           "Event", "FrameSpec", "Kind", "Limits", "Op", "PreprocessRequest", "ProtocolError",
           "Stage", "SubmitRequest", "check_frame_buffers", "decode_header", "encode_header",
           "frame_nbytes", "job_id", "parse_frame_specs", "parse_preprocess", "parse_submit",
           "submit_header", "validate_params"]

DEFAULT_PORT = 47610
DEFAULT_ENDPOINT = f"tcp://127.0.0.1:{DEFAULT_PORT}"

KINDS = _params.KINDS
Kind = _params.Kind
#: what an upscale job may enlarge by (the submit header's ``scale``)
UPSCALE_FACTORS = (2, 3, 4)
SAMPLERS = tuple(_params.SAMPLERS)


class Op(WireEnum):
    """Request operations (a request header's ``op``)."""

    HELLO = "hello"
    MODELS = "models"
    SUBMIT = "submit"
    CANCEL = "cancel"
    FETCH = "fetch"
    STATUS = "status"
    ECHO = "echo"
    PREPROCESS = "preprocess"   # a control frame through its preprocessor, sent back


class Event(WireEnum):
    """What the daemon sends back (an event header's ``event``)."""

    HELLO = "hello"
    MODELS = "models"
    STATUS = "status"
    ECHO = "echo"
    PREPROCESS = "preprocess"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"
    CANCELLED = "cancelled"


class Stage(WireEnum):
    """What a running job is doing (a ``progress`` event's ``stage``)."""

    LOADING = "loading"        # its model is being loaded: no steps yet
    DENOISING = "denoising"    # step of total
    RETRYING = "retrying"      # its cluster worker stopped: it runs again from the start


REQUEST_OPS = tuple(o.value for o in Op)
EVENTS = tuple(e.value for e in Event)

_JOB_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


# --------------------------------------------------------------------------- encoding


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def encode_header(header: Mapping[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def decode_header(raw: bytes, limits: Limits | None = None) -> dict[str, Any]:
    """Parse frame 0. NaN/Infinity literals are refused (plain JSON has none)."""
    limit = (limits or Limits()).max_header_bytes
    if len(raw) > limit:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header is {len(raw)} bytes; limit {limit}")
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame 0 is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "frame 0 must be a JSON object")
    version = header.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError(ErrorCode.BAD_VERSION, "header needs an integer 'v'", "v")
    if version != VERSION:
        raise ProtocolError(ErrorCode.BAD_VERSION,
                            f"protocol version {version} is not supported; this end speaks "
                            f"{VERSION}", "v")
    return header


def job_id(header: Mapping[str, Any], required: bool) -> str | None:
    """The client-chosen job id, if it is a valid one (echoed back in replies)."""
    job = header.get("job")
    if job is None and not required:
        return None
    if not isinstance(job, str) or not _JOB_ID.match(job):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            "'job' must be 1-64 characters of letters, digits, _ . : -", "job")
    return job


# --------------------------------------------------------------------------- parameters


def validate_params(kind: str, params: Any, limits: Limits) -> dict[str, Any]:
    """Check every submit parameter against its row in :data:`params.PARAMS` (type and
    range); fill in the defaults for the kind."""
    if not isinstance(params, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, "'params' must be an object", "params")
    unknown = sorted(set(params) - set(_params.BY_NAME) - {"controls"})
    if unknown:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"unknown parameter(s): {', '.join(unknown)}",
                            unknown[0])
    out: dict[str, Any] = {}
    for spec in _params.PARAMS:
        value = params.get(spec.name)
        if value is None:
            if spec.name in params and not spec.nullable:
                raise ProtocolError(ErrorCode.BAD_FIELD, f"{spec.name} must not be null",
                                    spec.name)
            out[spec.name] = spec.default_for(kind)
        else:
            out[spec.name] = _check_param(spec, value, limits)
    try:   # a list of objects, not a host widget: its own schema (controls.FIELDS)
        out["controls"] = _controls.check(params.get("controls"), limits.max_controls)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), "controls") from None
    return out


def _check_param(spec: _params.Param, value: Any, limits: Limits) -> Any:
    name, hi = spec.name, spec.limit(limits)
    if spec.wire == "loras":
        try:
            return loraspec.check(value, int(hi or 0))
        except ValueError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), name) from None
    if spec.type is str:
        if not isinstance(value, str):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"{name} must be a string", name)
        if hi is not None and len(value) > hi:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"{name} is {len(value)} characters; limit {int(hi)}", name)
        if spec.choices and not spec.from_daemon and value not in spec.choices:
            raise ProtocolError(ErrorCode.BAD_FIELD,
                                f"{name} must be one of {', '.join(spec.choices)}", name)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name} must be a number", name)
    if spec.type is int and not isinstance(value, int):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name} must be an integer", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"{name} must be finite", name)
    lo = spec.lo
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"{name} = {value} is outside {lo or 0:g}..{hi:g}", name)
    if spec.lo_open and value == lo:
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"{name} must be > {lo:g} ({lo:g} would change nothing)", name)
    return spec.type(value)


# --------------------------------------------------------------------------- submit


@dataclass
class SubmitRequest:
    """A validated ``submit``: what the daemon's job runner needs, frames still raw."""

    job: str
    kind: Kind
    params: dict[str, Any]
    offset: tuple[int, int]
    size: tuple[int, int]
    image: FrameSpec | None = None
    mask: FrameSpec | None = None
    image_data: Any = None  # the raw buffers, still unparsed
    mask_data: Any = None
    result_format: str = "rgba8"
    preview: bool = False
    live: bool = False     # replaces this client's previous live job
    scale: int = 1         # an upscale's factor: the result is size × scale
    controls: list[FrameSpec] = field(default_factory=list)   # one per params.controls
    control_data: list[Any] = field(default_factory=list)

    @property
    def result_size(self) -> tuple[int, int]:
        return self.size[0] * self.scale, self.size[1] * self.scale


def parse_submit(header: Mapping[str, Any], buffers: Sequence[Any],
                 limits: Limits) -> SubmitRequest:
    """Validate a whole submit message; raise ProtocolError naming the first bad field."""
    job = job_id(header, required=True)
    assert job is not None
    raw_kind = header.get("kind")
    if raw_kind not in KINDS:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"kind must be one of {', '.join(KINDS)}",
                            "kind")
    kind = Kind(raw_kind)
    params = validate_params(kind, header.get("params", {}), limits)
    specs = parse_frame_specs(header, limits)
    check_frame_buffers(specs, buffers)
    by_role: dict[str, tuple[FrameSpec, Any]] = {}
    controls: list[tuple[FrameSpec, Any]] = []
    for spec, buf in zip(specs, buffers, strict=True):
        if spec.role == "control":
            controls.append((spec, buf))
            continue
        if spec.role not in ("image", "mask"):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"frame role {spec.role!r} is not "
                                "'image', 'mask' or 'control'", "role")
        if spec.role in by_role:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"two '{spec.role}' frames", "role")
        by_role[spec.role] = (spec, buf)
    image = by_role.get("image")
    mask = by_role.get("mask")
    if image and image[0].format not in IMAGE_FORMATS:
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"the image frame must be one of {', '.join(IMAGE_FORMATS)}",
                            "format")
    if mask and mask[0].format not in MASK_FORMATS:
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"the mask frame must be one of {', '.join(MASK_FORMATS)}", "format")
    if kind in ("img2img", "inpaint", "upscale") and image is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{kind} needs an image frame")
    if kind == "inpaint" and mask is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "inpaint needs a mask frame (the selection)")
    if kind == "txt2img" and image is not None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "txt2img takes no image frame, only a mask")
    if kind == "upscale" and mask is not None:
        raise ProtocolError(ErrorCode.BAD_FRAME, "upscale takes no mask frame: it enlarges "
                            "the whole image frame")
    if image and mask and (image[0].width, image[0].height) != (mask[0].width, mask[0].height):
        raise ProtocolError(ErrorCode.BAD_FRAME, "image and mask frames differ in size")
    first = image or mask
    if first is not None:
        size = (first[0].width, first[0].height)
    else:
        size = _pair(header, "size", 1, limits.max_side)
        if size[0] * size[1] > limits.max_pixels:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"size {size} exceeds max_pixels", "size")
    _check_controls(params["controls"] or [], [c[0] for c in controls], size, kind)
    offset = _pair(header, "offset", -(2**31), 2**31 - 1) if "offset" in header else (0, 0)
    default_format = image[0].format if image else "rgba8"
    result_format = header.get("result_format", default_format)
    if result_format not in IMAGE_FORMATS:
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"result_format must be one of {', '.join(IMAGE_FORMATS)}",
                            "result_format")
    preview, live = header.get("preview", False), header.get("live", False)
    if not isinstance(preview, bool):
        raise ProtocolError(ErrorCode.BAD_FIELD, "preview must be true or false", "preview")
    if not isinstance(live, bool):
        raise ProtocolError(ErrorCode.BAD_FIELD, "live must be true or false", "live")
    scale = _scale(header, kind, size, limits)
    if live and kind == "upscale":
        raise ProtocolError(ErrorCode.BAD_FIELD, "an upscale cannot be live", "live")
    return SubmitRequest(job=job, kind=kind, params=params, offset=offset, size=size,
                         image=image[0] if image else None, mask=mask[0] if mask else None,
                         image_data=image[1] if image else None,
                         mask_data=mask[1] if mask else None,
                         result_format=result_format, preview=preview, live=live,
                         scale=scale, controls=[c[0] for c in controls],
                         control_data=[c[1] for c in controls])


def _check_controls(items: list[dict[str, Any]], frames: list[FrameSpec],
                    size: tuple[int, int], kind: str) -> None:
    """One control frame per ``params.controls`` item, each the size of the region."""
    if items and kind == "upscale":
        raise ProtocolError(ErrorCode.BAD_FIELD, "controls steer txt2img, img2img and "
                            "inpaint jobs, not upscales", "controls")
    if len(frames) != len(items):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{len(items)} control(s) in params.controls "
                            f"but {len(frames)} 'control' frame(s)", "controls")
    for i, spec in enumerate(frames):
        if (spec.width, spec.height) != size:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                f"control frame {i + 1} is {spec.width}x{spec.height}; the "
                                f"region is {size[0]}x{size[1]}", "controls")


def _scale(header: Mapping[str, Any], kind: str, size: tuple[int, int], limits: Limits) -> int:
    """An upscale's factor (2 when absent), its result checked against the frame limits
    before anything is allocated; other kinds take none."""
    if kind != "upscale":
        if "scale" in header:
            raise ProtocolError(ErrorCode.BAD_FIELD, "'scale' is only for upscale jobs",
                                "scale")
        return 1
    scale = header.get("scale", 2)
    if type(scale) is not int or scale not in UPSCALE_FACTORS:
        raise ProtocolError(ErrorCode.BAD_FIELD, "scale must be one of "
                            f"{', '.join(map(str, UPSCALE_FACTORS))}", "scale")
    width, height = size[0] * scale, size[1] * scale
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"{size[0]}x{size[1]} ×{scale} is {width}x{height}, over the "
                            f"limits ({limits.max_side} px a side, {limits.max_pixels} pixels)",
                            "scale")
    return scale


def _pair(header: Mapping[str, Any], key: str, lo: int, hi: int) -> tuple[int, int]:
    value = header.get(key)
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"'{key}' must be a list of two integers", key)
    if not all(lo <= v <= hi for v in value):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"'{key}' values must be within {lo}..{hi}",
                            key)
    return value[0], value[1]


def submit_header(job: str, kind: str, params: Mapping[str, Any], frames: Sequence[FrameSpec],
                  offset: tuple[int, int] = (0, 0), size: tuple[int, int] | None = None,
                  result_format: str | None = None, preview: bool = False,
                  live: bool = False, scale: int | None = None) -> dict[str, Any]:
    """Build a submit header (the client side of parse_submit)."""
    header: dict[str, Any] = {"v": VERSION, "op": "submit", "job": job, "kind": kind,
                              "params": dict(params), "offset": list(offset),
                              "frames": [f.to_json() for f in frames]}
    if size is not None:
        header["size"] = list(size)
    if result_format is not None:
        header["result_format"] = result_format
    if preview:
        header["preview"] = True
    if live:
        header["live"] = True
    if scale is not None:
        header["scale"] = scale
    return header


@dataclass
class PreprocessRequest:
    """A validated ``preprocess``: one control frame and what to do to it."""

    preprocess: str
    frame: FrameSpec
    data: Any
    result_format: str = "rgba8"


def parse_preprocess(header: Mapping[str, Any], buffers: Sequence[Any],
                     limits: Limits) -> PreprocessRequest:
    """``{"op": "preprocess", "preprocess": NAME | "type": TYPE, "frames": [control]}``:
    the map a control would use, for a host to show as a layer."""
    specs = parse_frame_specs(header, limits)
    check_frame_buffers(specs, buffers)
    if len(specs) != 1 or specs[0].role != "control":
        raise ProtocolError(ErrorCode.BAD_FRAME, "preprocess takes exactly one 'control' frame",
                            "frames")
    kind = header.get("type")
    if kind is not None and kind not in _controls.TYPES:
        raise ProtocolError(ErrorCode.BAD_FIELD, f"type must be one of "
                            f"{', '.join(_controls.TYPES)}", "type")
    name = header.get("preprocess")
    if name is None:
        if kind is None:
            raise ProtocolError(ErrorCode.BAD_FIELD, "say 'preprocess' (or a control 'type')",
                                "preprocess")
        name = _controls.preprocessor({"type": kind})
    try:
        name = _controls.check_preprocess(name)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), "preprocess") from None
    result_format = header.get("result_format", "rgba8")
    if result_format not in IMAGE_FORMATS:
        raise ProtocolError(ErrorCode.BAD_FIELD,
                            f"result_format must be one of {', '.join(IMAGE_FORMATS)}",
                            "result_format")
    return PreprocessRequest(name, specs[0], buffers[0], result_format)

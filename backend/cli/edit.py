"""``paintbridge edit``: what a host plugin does, with image files instead of a document.

Reads the image and mask, sends only the region the job needs (plugin.region), shows
progress, and writes the composited image plus the raw patches. Uses the client from
``plugin/``, PIL and numpy; never torch, so it starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from paintbridge.plugin import controls
from paintbridge.plugin.client import DaemonError, Frame, Job, JobRequest, JobState, Patch
from paintbridge.plugin.params import PARAMS
from paintbridge.plugin.protocol import KINDS, UPSCALE_FACTORS, ErrorCode, ProtocolError, Stage
from paintbridge.plugin.region import Rect, job_region

from .common import ClientUnusable, ExitCode, client_options, fail, open_client, seconds


class EditFailed(Exception):
    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: the images ``-o`` can write (the patch files are always PNG: they need their alpha)
OUTPUT_SUFFIXES = {".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
                   ".jpg": "JPEG", ".jpeg": "JPEG"}


def check_output(output: str) -> str:
    """The format ``-o`` asks for, checked before the job is sent: a result that cannot be
    written would be work thrown away."""
    out = Path(output)
    fmt = OUTPUT_SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        raise EditFailed(f"-o {output}: give a file name ending in "
                         f"{', '.join(OUTPUT_SUFFIXES)}", ExitCode.USAGE)
    folder = out.parent
    if out.is_dir():
        raise EditFailed(f"-o {output} is a folder: give a file name", ExitCode.USAGE)
    if not folder.is_dir():
        raise EditFailed(f"-o {output}: no such folder {folder}", ExitCode.USAGE)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise EditFailed(f"-o {output}: cannot write in {folder}", ExitCode.USAGE)
    return fmt


def _gray8(im: Image.Image) -> np.ndarray:
    """A grayscale image as 8 bits, keeping its whole range: 16-bit PNGs open as mode I;16
    (or I), which Pillow's convert("L") clips at 255 instead of scaling."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(im)
        return np.rint(wide.astype(np.float32) / 257.0).clip(0, 255).astype(np.uint8)
    if im.mode == "F":
        floats = np.asarray(im, np.float32)
        top = 1.0 if floats.max(initial=0.0) <= 1.0 else 255.0
        return np.rint(floats * (255.0 / top)).clip(0, 255).astype(np.uint8)
    return np.asarray(im.convert("L"))


def _rgba8(im: Image.Image) -> np.ndarray:
    if im.mode == "RGBA":   # no converted copy on the way: one full-size copy fewer
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = _gray8(im)
        rgba = np.empty((*gray.shape, 4), np.uint8)
        rgba[..., :3] = gray[..., None]
        rgba[..., 3] = 255
        return rgba
    return np.asarray(im.convert("RGBA"))


def _load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with Image.open(args.image) as im:
            image = _rgba8(im)
        mask = None
        if args.mask:
            with Image.open(args.mask) as im:
                mask = _gray8(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise EditFailed(f"cannot read input: {exc}", ExitCode.USAGE) from None
    if mask is not None and mask.shape != image.shape[:2]:
        raise EditFailed(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]}", ExitCode.USAGE)
    return image, mask


def _controls(args: argparse.Namespace, shape: tuple[int, ...]
              ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """``--control TYPE:FILE[:MODEL[:STRENGTH]]``: the wire items and the images, each the
    size of the input image."""
    items, images = [], []
    for text in args.control:
        try:
            item, path = controls.parse_spec(text)
            with Image.open(path) as im:
                pixels = _rgba8(im)
        except ValueError as exc:
            raise EditFailed(str(exc), ExitCode.USAGE) from None
        except (OSError, Image.DecompressionBombError) as exc:
            raise EditFailed(f"--control {text}: cannot read it: {exc}", ExitCode.USAGE) from None
        if pixels.shape[:2] != shape[:2]:
            raise EditFailed(f"--control {text}: it is {pixels.shape[1]}x{pixels.shape[0]}; "
                             f"the image is {shape[1]}x{shape[0]}", ExitCode.USAGE)
        items.append(item)
        images.append(pixels)
    return items, images


def _bounds(mask: np.ndarray) -> Rect | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Rect(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                int(rows[-1] - rows[0] + 1))


def composite(image: np.ndarray, patch: Patch, in_place: bool = False) -> np.ndarray:
    """Patch over image (straight alpha), as a host draws a new layer above the source.
    Float maths only inside the patch: a full-size float copy of an 8000² image is 1 GB.
    ``in_place`` draws into ``image`` itself (for the last output, when it is writable)."""
    out = image if in_place and image.flags.writeable else image.copy()
    px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
    ys, xs = slice(patch.y, patch.y + patch.height), slice(patch.x, patch.x + patch.width)
    under = out[ys, xs].astype(np.float32)
    over = px.astype(np.float32)
    a = over[..., 3:4] / 255.0
    under_a = under[..., 3:4] / 255.0
    out_a = a + under_a * (1 - a)
    rgb = (over[..., :3] * a + under[..., :3] * under_a * (1 - a)) / np.maximum(out_a, 1e-6)
    out[ys, xs, :3] = np.rint(rgb).clip(0, 255).astype(np.uint8)
    out[ys, xs, 3:4] = np.rint(out_a * 255.0).clip(0, 255).astype(np.uint8)
    return out


def _frame(pixels: np.ndarray, fmt: str) -> Frame:
    """A frame over the pixels themselves: a whole-image region is not copied again."""
    flat = np.ascontiguousarray(pixels).reshape(-1)
    return Frame(pixels.shape[1], pixels.shape[0], fmt, flat.data)


def progress_line(job: Job) -> str | None:
    """One line for where the job stands: queued, loading its model, or a bar of steps."""
    if job.state is JobState.QUEUED:
        return f"queued ({job.position} ahead)" if job.position else "queued"
    if job.state is JobState.RUNNING and job.stage == Stage.LOADING:
        return f"loading model {job.model}…"
    if job.state is JobState.RUNNING and job.total:
        done = int(30 * job.step / job.total)
        return f"[{'#' * done}{'.' * (30 - done)}] {job.step}/{job.total} steps"
    return None


class _Bar:
    """The progress line on a terminal (nothing when stderr is a file or a pipe)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, job: Job) -> None:
        text = progress_line(job)
        if self.tty and text is not None:
            sys.stderr.write(f"\r{text:60s}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 60 + "\r")


def run_edit(args: argparse.Namespace) -> ExitCode:
    fmt = check_output(args.output)
    with open_client(args) as client:   # a bad endpoint or key file: before any reading
        image, mask = _load(args)
        items, maps = _controls(args, image.shape)
        job = _submit_and_wait(args, client, image, mask, items, maps)
    return _write(args, image, job, fmt)


def _submit_and_wait(args: argparse.Namespace, client: Any, image: np.ndarray,
                     mask: np.ndarray | None, items: list[dict[str, Any]] | None = None,
                     maps: list[np.ndarray] | None = None) -> Job:
    height, width = image.shape[:2]
    selection = _bounds(mask) if mask is not None else None
    if mask is not None and selection is None:
        raise EditFailed("the mask selects nothing (it is all black)", ExitCode.USAGE)
    kind = args.kind if args.kind != "auto" else ("inpaint" if mask is not None else "img2img")
    if kind == "inpaint" and mask is None:
        raise EditFailed("inpaint needs --mask", ExitCode.USAGE)
    upscaling = kind == "upscale"
    try:
        region = ((selection or Rect(0, 0, width, height)) if upscaling else
                  job_region(kind, Rect(0, 0, width, height), selection, args.padding,
                             args.grow))
    except ValueError as exc:
        raise EditFailed(str(exc), ExitCode.USAGE) from None
    ys = slice(region.y, region.bottom)
    xs = slice(region.x, region.right)
    rgba = _frame(image[ys, xs], "rgba8")
    # an upscale enlarges the mask's bounding box: the mask itself is not sent
    sel = _frame(mask[ys, xs], "gray8") if mask is not None and not upscaling else None
    # the table's "no value" spellings (seed -1, an empty model) mean what they do in hosts
    raw = {p.name: getattr(args, p.name) for p in PARAMS}
    raw = {k: ", ".join(v) if isinstance(v, list) else v for k, v in raw.items()}  # --lora …
    try:
        given = {p.name: p.wire_value(p.from_widget(raw[p.name])) for p in PARAMS
                 if kind in p.kinds and raw[p.name] is not None}
    except ValueError as exc:   # a LoRA entry that is not NAME:WEIGHT
        raise EditFailed(str(exc), ExitCode.USAGE) from None
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if items:
        if upscaling:
            raise EditFailed("--control steers txt2img, img2img and inpaint, not upscale",
                             ExitCode.USAGE)
        params["controls"] = items
    control_frames = [_frame(m[ys, xs], "rgba8") for m in maps or []]
    bar = _Bar()
    try:
        client.hello(timeout=args.timeout)   # the daemon's limits, checked before sending
        job = client.submit(JobRequest(kind, params, image=None if kind == "txt2img" else rgba,
                                       mask=sel, offset=(region.x, region.y),
                                       size=(region.width, region.height), result_format="rgba8",
                                       scale=args.scale if upscaling else None,
                                       controls=control_frames))
    except ProtocolError as exc:
        raise EditFailed(f"invalid request: {exc.message}", ExitCode.USAGE) from None
    except DaemonError as exc:
        unreachable = exc.code in (ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT)
        raise EditFailed(exc.message, ExitCode.UNREACHABLE if unreachable
                         else ExitCode.FAILED) from None
    try:
        client.wait(job, timeout=args.job_timeout, on_update=bar)
    except KeyboardInterrupt:
        client.cancel(job)
        client.wait(job, timeout=10)
        bar.close()
        raise EditFailed("interrupted: job cancelled", ExitCode.INTERRUPTED) from None
    finally:
        bar.close()
    if job.state is JobState.CANCELLED:
        raise EditFailed(f"the job was cancelled: {job.error_message or 'by this client id'}",
                         ExitCode.FAILED)
    if job.state is not JobState.DONE:
        silent = job.error_code in (ErrorCode.TIMEOUT, ErrorCode.DISCONNECTED)
        raise EditFailed(f"{job.error_message or job.state.value} [{job.error_code}]",
                         ExitCode.UNREACHABLE if silent else ExitCode.FAILED)
    return job


def _write(args: argparse.Namespace, image: np.ndarray, job: Job, fmt: str) -> ExitCode:
    out = Path(args.output)
    summary = []
    flattened = False
    upscaled = job.kind == "upscale"
    for i, patch in enumerate(job.patches):
        target = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        if upscaled:   # a new, larger image: the result is the whole of it
            result = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
        else:
            result = composite(image, patch, in_place=i == len(job.patches) - 1)
        try:
            if fmt == "JPEG":   # no alpha in JPEG: flatten onto white, and say so
                flattened = flattened or bool((result[..., 3] < 255).any())
                Image.fromarray(_on_white(result)).save(target, fmt, quality=95)
            else:
                Image.fromarray(result).save(target, fmt, **({"lossless": True}
                                                             if fmt == "WEBP" else {}))
            patch_file = target.with_name(f"{target.stem}.patch.png")
            px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
            Image.fromarray(px, "RGBA").save(patch_file)
        except (OSError, ValueError) as exc:
            raise EditFailed(f"cannot write {target}: {exc}", ExitCode.FAILED) from None
        summary.append({"output": str(target), "patch": str(patch_file), "x": patch.x,
                        "y": patch.y, "width": patch.width, "height": patch.height,
                        "seed": patch.seed})
    if flattened:
        print(f"paintbridge: note: {out.name} is JPEG, which has no transparency: transparent "
              "parts are flattened onto white (use .png or .webp to keep them)",
              file=sys.stderr)
    print(json.dumps({"model": job.info.get("model"), "seconds": job.info.get("seconds"),
                      "results": summary}))
    return ExitCode.OK


def _on_white(rgba: np.ndarray, rows: int = 256) -> np.ndarray:
    """RGB over white, a band of rows at a time (no full-size float copy)."""
    rgb = np.ascontiguousarray(rgba[..., :3])
    for top in range(0, rgba.shape[0], rows):
        band = rgba[top:top + rows]
        a = band[..., 3:4].astype(np.float32) / 255.0
        if (a < 1).any():
            blended = band[..., :3].astype(np.float32) * a + 255.0 * (1 - a)
            rgb[top:top + rows] = np.rint(blended).clip(0, 255).astype(np.uint8)
    return rgb


#: older spellings of `edit` options, still accepted
EDIT_ALIASES = {"negative_prompt": ("--negative",), "guidance": ("--cfg",)}
#: where the command line differs from a host's panel
EDIT_HELP = {"model": "model name (default: the daemon's default model)",
             "count": "variations, seeds SEED, SEED+1, …: one output file each"}


def add_parser(sub: Any) -> None:
    e = sub.add_parser(
        "edit", help="edit an image through a running daemon",
        description="Edit an image through a running daemon, as a host plugin does.",
        epilog="On success it prints one JSON line on stdout: {\"model\", \"seconds\", "
               "\"results\": [{\"output\", \"patch\", \"x\", \"y\", \"width\", \"height\", "
               "\"seed\"}]}. Exit codes: 0 done, 1 the daemon failed the job, 2 bad usage or "
               "input, 3 no daemon reachable, 130 interrupted.")
    client_options(e)
    e.add_argument("image", help="input image (PNG, JPEG, ...)")
    e.add_argument("--mask", help="grayscale mask: white = selected, grey = partly selected")
    e.add_argument("--kind", choices=("auto", *KINDS), default="auto",
                   help="auto: inpaint with a mask, else img2img; upscale: the image (or "
                        "the mask's bounding box) enlarged --scale times, OUT the new image")
    e.add_argument("--scale", type=int, choices=UPSCALE_FACTORS, default=2,
                   help="how many times an upscale enlarges (default 2)")
    for row in PARAMS:   # one option per row of the parameter table
        names = [f"--{row.arg_name}", *EDIT_ALIASES.get(row.name, ())]
        default = None if row.unset is not None else row.start
        fixed = list(row.choices) if row.choices and not row.from_daemon else None
        facts = [t for t in (row.range_text(), row.default_text() and
                             f"default {row.default_text()}") if t]
        text = EDIT_HELP.get(row.name, row.help)
        if facts:   # into the help's own closing parenthesis, if it has one
            text = (f"{text[:-1]}; " if text.endswith(")") else f"{text} (") + \
                f"{'; '.join(facts)})"
        if row.wire == "loras":   # --lora NAME:WEIGHT, repeatable, as A1111 users write it
            e.add_argument("--lora", *names, dest=row.name, action="append", metavar="LORA",
                           help=f"{text}; repeatable")
            continue
        e.add_argument(*names, dest=row.name, type=row.type, default=default, choices=fixed,
                       required=row.name == "prompt", help=text)
    e.add_argument("--control", action="append", default=[],
                   metavar="TYPE:FILE[:MODEL[:STRENGTH]]",
                   help="steer with a control image the size of IMAGE (repeatable, up to 4): "
                        "TYPE is one of " + ", ".join(controls.TYPES) + " (TYPE/PREPROCESS "
                        "picks the preprocessor: " + ", ".join(controls.PREPROCESSORS) + "); "
                        "MODEL a "
                        "ControlNet's name (default: one of the type for the model); "
                        "STRENGTH 0-2 (default 1)")
    e.add_argument("-o", "--output", required=True,
                   help="the image with the result laid over it: .png, .webp (lossless), .tif "
                        "or .jpg (transparency flattened onto white); beside it OUT.patch.png, "
                        "the result alone with its alpha; with --count N also OUT-1 … OUT-(N-1)")
    e.add_argument("--job-timeout", type=seconds, default=600.0,
                   help="give up when the daemon is silent this long during a job, in seconds "
                        "(default 600)")
    e.set_defaults(func=cmd_edit)


def cmd_edit(args: argparse.Namespace) -> int:
    try:
        return run_edit(args)
    except ClientUnusable as exc:
        return fail(str(exc))
    except DaemonError as exc:
        return fail(exc.message, ExitCode.FAILED)
    except EditFailed as exc:
        return fail(str(exc), exc.exit_code)

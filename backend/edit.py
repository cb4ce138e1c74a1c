"""``paintbridge edit``: what a host plugin does, with image files instead of a document.

Reads the image and mask, sends only the region the job needs (plugin.region), shows
progress, and writes the composited image plus the raw patches. Uses the client from
``plugin/``, PIL and numpy; never torch, so it starts fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from paintbridge.plugin.client import Client, DaemonError, Frame, Job, JobState, Patch
from paintbridge.plugin.params import PARAMS
from paintbridge.plugin.protocol import ErrorCode, ProtocolError, Stage
from paintbridge.plugin.region import Rect, job_region

from .cli import ExitCode


class EditFailed(Exception):
    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        image = np.asarray(Image.open(args.image).convert("RGBA"))
        mask = None
        if args.mask:
            mask = np.asarray(Image.open(args.mask).convert("L"))
    except (OSError, ValueError) as exc:
        raise EditFailed(f"cannot read input: {exc}", ExitCode.USAGE) from None
    if mask is not None and mask.shape != image.shape[:2]:
        raise EditFailed(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                         f"{image.shape[1]}x{image.shape[0]}", ExitCode.USAGE)
    return image, mask


def _bounds(mask: np.ndarray) -> Rect | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Rect(int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                int(rows[-1] - rows[0] + 1))


def composite(image: np.ndarray, patch: Patch) -> np.ndarray:
    """Patch over image (straight alpha), as a host draws a new layer above the source."""
    out = image.astype(np.float32)
    px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
    px = px.astype(np.float32)
    ys, xs = slice(patch.y, patch.y + patch.height), slice(patch.x, patch.x + patch.width)
    a = px[..., 3:4] / 255.0
    under = out[ys, xs]
    under_a = under[..., 3:4] / 255.0
    out_a = a + under_a * (1 - a)
    rgb = (px[..., :3] * a + under[..., :3] * under_a * (1 - a)) / np.maximum(out_a, 1e-6)
    out[ys, xs, :3] = rgb
    out[ys, xs, 3:4] = out_a * 255.0
    return np.rint(out).clip(0, 255).astype(np.uint8)


def progress_line(job: Job) -> str | None:
    """One line for where the job stands: queued, loading its model, or a bar of steps."""
    if job.state is JobState.QUEUED and job.position:
        return f"queued ({job.position} ahead)"
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
    image, mask = _load(args)
    height, width = image.shape[:2]
    selection = _bounds(mask) if mask is not None else None
    if mask is not None and selection is None:
        raise EditFailed("the mask selects nothing (it is all black)", ExitCode.USAGE)
    kind = args.kind if args.kind != "auto" else ("inpaint" if mask is not None else "img2img")
    if kind == "inpaint" and mask is None:
        raise EditFailed("inpaint needs --mask", ExitCode.USAGE)
    try:
        region = job_region(kind, Rect(0, 0, width, height), selection, args.padding,
                            args.grow)
    except ValueError as exc:
        raise EditFailed(str(exc), ExitCode.USAGE) from None
    ys = slice(region.y, region.bottom)
    xs = slice(region.x, region.right)
    rgba = Frame(region.width, region.height, "rgba8",
                 np.ascontiguousarray(image[ys, xs]).tobytes())
    sel = None
    if mask is not None:
        sel = Frame(region.width, region.height, "gray8",
                    np.ascontiguousarray(mask[ys, xs]).tobytes())
    # the table's "no value" spellings (seed -1, an empty model) mean what they do in hosts
    given = {p.name: p.from_widget(getattr(args, p.name)) for p in PARAMS
             if kind in p.kinds and getattr(args, p.name) is not None}
    params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    bar = _Bar()
    with Client(args.endpoint, server_key=args.server_key, client_key=args.client_key) as client:
        try:
            client.hello(timeout=args.timeout)
            job = client.submit(kind, params, image=None if kind == "txt2img" else rgba,
                                mask=sel, offset=(region.x, region.y),
                                size=(region.width, region.height), result_format="rgba8")
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
    if job.state is not JobState.DONE:
        silent = job.error_code in (ErrorCode.TIMEOUT, ErrorCode.DISCONNECTED)
        raise EditFailed(f"{job.error_message or job.state.value} [{job.error_code}]",
                         ExitCode.UNREACHABLE if silent else ExitCode.FAILED)
    return _write(args, image, job)


def _write(args: argparse.Namespace, image: np.ndarray, job: Job) -> ExitCode:
    out = Path(args.output)
    summary = []
    for i, patch in enumerate(job.patches):
        target = out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        Image.fromarray(composite(image, patch)).save(target)
        patch_file = target.with_name(f"{target.stem}.patch.png")
        px = np.frombuffer(patch.data, np.uint8).reshape(patch.height, patch.width, 4)
        Image.fromarray(px, "RGBA").save(patch_file)
        summary.append({"output": str(target), "patch": str(patch_file), "x": patch.x,
                        "y": patch.y, "width": patch.width, "height": patch.height,
                        "seed": patch.seed})
    print(json.dumps({"model": job.info.get("model"), "seconds": job.info.get("seconds"),
                      "results": summary}))
    return ExitCode.OK

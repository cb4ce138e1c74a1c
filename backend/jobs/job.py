"""One job from the queue to its last event, wherever it runs: the daemon's own worker
thread and every cluster replica (backend/cluster/dispatch.py) run this same code.

It resolves and loads the job's model, runs ``recipe.run`` and turns every outcome into
protocol events, handed to ``emit(header, frames, end)``: progress as it goes, then exactly
one ``result``, ``error`` or ``cancelled`` with ``end`` true. Nothing here knows a socket.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paintbridge.plugin.protocol import ErrorCode, Stage, SubmitRequest

from ..models.adapters import JobLora, LoraError
from ..models.controlnets import AskedControl, ControlNetCache, ControlNetError
from ..models.device import DTYPES, DeviceChoice, is_out_of_memory
from ..models.embeddings import EmbeddingEntry
from ..models.registry import LoadedModel, ModelEntry, ModelError, ModelRegistry, empty_device_cache
from ..models.upscalers import UpscalerError, Upscalers
from . import paths, pixels, recipe

log = logging.getLogger(__name__)

#: (event header without "v"/"job", frames, whether it ends the job)
Emit = Callable[[dict[str, Any], list[Any], bool], None]

OOM_ADVICE = ("out of memory: select a smaller region (or lower the count or the context "
              "padding), use a smaller model, or start the daemon with --dtype float16 on a GPU")
OOM_LOADING_ADVICE = ("out of memory loading model '{}': use a smaller model, keep fewer "
                      "models loaded (--cache-size 1), or --dtype float16 on a GPU")


@dataclass(frozen=True)
class AdmittedJob:
    """A submit as the daemon resolved it at the door (backend/door/admission.py): the
    request with its params as they will run (the model's name, the prompt without its
    ``<lora:…>`` tags, each LoRA and control named) and what those names found. The worker,
    a cluster replica and ``fetch`` read it; nothing rewrites it."""

    request: SubmitRequest
    loras: tuple[JobLora, ...] = ()
    embeddings: tuple[EmbeddingEntry, ...] = ()   # the ones the prompts name
    controls: tuple[AskedControl, ...] = ()

    @property
    def model(self) -> str:
        return self.request.params["model"]

    def portable(self) -> AdmittedJob:
        """The same job with its frames as arrays: ZeroMQ frames do not travel through Ray
        or pickle (a cluster replica's payload)."""
        req = self.request

        def array(data: Any) -> Any:
            return None if data is None else np.frombuffer(memoryview(data), np.uint8).copy()

        return dataclasses.replace(self, request=dataclasses.replace(
            req, image_data=array(req.image_data), mask_data=array(req.mask_data),
            control_data=[array(d) for d in req.control_data]))


@dataclass
class ActiveJob:
    """An admitted job on its way: where it stands, and the flag that cancels it."""

    client: bytes
    admitted: AdmittedJob
    cancel: threading.Event = field(default_factory=threading.Event)
    stage: Stage | None = None  # written by the worker, read by fetch
    step: int = 0
    total: int = 0
    replaced_by: str | None = None   # the live job that took over from this one
    retries: int = 0   # times a cluster replica died under it (backend/cluster/dispatch.py)

    @property
    def request(self) -> SubmitRequest:
        return self.admitted.request

    def progress_event(self) -> dict[str, Any]:
        """Where the running job stands: loading its model, or at a denoising step."""
        if self.stage == Stage.LOADING:
            return {"event": "progress", "stage": Stage.LOADING,
                    "model": self.admitted.model}
        if self.stage == Stage.RETRYING:
            return {"event": "progress", "stage": Stage.RETRYING, "retry": self.retries}
        return {"event": "progress", "stage": Stage.DENOISING, "step": self.step,
                "total": self.total}


class JobRunner:
    """Runs jobs on one device (the recipe, jobs/recipe.py, is what it runs): its registry (a
    model cache), upscalers and dtype."""

    def __init__(self, registry: ModelRegistry, device: DeviceChoice, upscalers: Upscalers,
                 dtype_forced: bool = False,
                 stopping: Callable[[], bool] = lambda: False,
                 whole_max_pixels: int = paths.WHOLE_MAX_PIXELS) -> None:
        self.registry = registry
        self.whole_max_pixels = whole_max_pixels
        self.device = device
        self.upscalers = upscalers
        self.dtype_forced = dtype_forced
        self.stopping = stopping
        self.controlnets = ControlNetCache()

    def model_dtype(self, entry: Any) -> Any:
        """The device's dtype, unless the model asks for another on CPU (e.g. tiny models
        that gain nothing from bf16) and the user did not force one."""
        hint = entry.defaults.get("dtype")
        if self.dtype_forced or self.device.device.type != "cpu" or hint not in DTYPES:
            return self.device.dtype
        return DTYPES[hint]

    def run(self, job: ActiveJob, emit: Emit) -> None:
        """The whole job; whatever goes wrong ends in one event (the next job still runs)."""
        try:
            self._run(job, emit)
        except Exception as exc:
            log.exception("job %s failed outside its stages", job.request.job)
            self.fail(emit, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def _run(self, job: ActiveJob, emit: Emit) -> None:
        req = job.request
        if job.cancel.is_set():
            emit(self.cancelled(job), [], True)
            return
        started = time.monotonic()
        try:
            entry = self.registry.resolve(req.params["model"])
        except KeyError as exc:
            self.fail(emit, ErrorCode.UNKNOWN_MODEL, exc.args[0])
            return
        loaded = self._load(entry, job, emit)
        if loaded is None:
            return

        def progress(step: int, total: int, preview: Any) -> None:
            job.stage, job.step, job.total = Stage.DENOISING, step, total
            event = job.progress_event()
            frames = []
            if preview is not None:
                h, w = preview.shape[:2]
                event["preview"] = {"width": w, "height": h, "format": "rgba8"}
                frames.append(pixels.encode_frame(preview, "rgba8"))
            emit(event, frames, False)

        try:
            nets = [recipe.JobControl(c.item, self.controlnets.get(
                        c.entry, self.device.device, self.model_dtype(entry)))
                    for c in job.admitted.controls]
        except ControlNetError as exc:
            self.fail(emit, ErrorCode.BAD_FIELD, str(exc), field="controls")
            return
        try:
            job.stage = Stage.DENOISING
            results = recipe.run(req, loaded, job.cancel, progress, list(job.admitted.loras),
                                 list(job.admitted.embeddings), self.upscalers, nets,
                                 self.whole_max_pixels)
        except recipe.JobCancelled:
            emit(self.cancelled(job), [], True)
            return
        except recipe.BadInput as exc:
            self.fail(emit, ErrorCode.BAD_FRAME, str(exc))
            return
        except LoraError as exc:   # nothing of the LoRA stays loaded
            self.fail(emit, ErrorCode.BAD_FIELD, str(exc), field="loras")
            return
        except recipe.EmbeddingError as exc:
            self.fail(emit, ErrorCode.BAD_FIELD, str(exc), field="prompt")
            return
        except UpscalerError as exc:   # a file that is not an upscaler, or not a safe one
            self.fail(emit, ErrorCode.BAD_FIELD, str(exc), field="upscaler")
            return
        except recipe.StageFailed as exc:  # the daemon keeps serving whatever a model does
            cause = exc.__cause__ or exc
            if is_out_of_memory(cause):
                log.warning("job %s ran out of memory: %s", req.job, cause)
                self.fail(emit, ErrorCode.OUT_OF_MEMORY, OOM_ADVICE)
            else:
                log.error("job %s failed while %s", req.job, exc.stage, exc_info=cause)
                ours = exc.stage in recipe.OUR_STAGES   # not the model's doing
                self.fail(emit, ErrorCode.INTERNAL if ours else ErrorCode.MODEL_ERROR,
                          f"model '{entry.name}' failed while {exc.stage}: "
                          f"{type(cause).__name__}: {cause}")
            results = None
        if results is None:  # outside the except block, so its traceback's tensors are free
            gc.collect()
            empty_device_cache()
            return
        if job.cancel.is_set():
            emit(self.cancelled(job), [], True)
            return
        patches = [{"x": r.patch.x, "y": r.patch.y, "width": r.patch.width,
                    "height": r.patch.height, "format": r.patch.format, "seed": r.seed}
                   for r in results]
        emit({"event": "result", "model": entry.name, "patches": patches,
              "seconds": round(time.monotonic() - started, 3), "path": results[0].path},
             [r.patch.data for r in results], True)

    def _load(self, entry: ModelEntry, job: ActiveJob, emit: Emit) -> LoadedModel | None:
        """The job's model, loaded (cached); None after failing the job with a message that
        names the model, whatever loading raised."""
        failure: tuple[str, str] | None = None
        try:
            if not self.registry.is_loaded(entry.name):  # say so: loading takes a while
                job.stage = Stage.LOADING
                emit(job.progress_event(), [], False)
            return self.registry.load(entry, self.device.device, self.model_dtype(entry))
        except ModelError as exc:
            failure = (ErrorCode.MODEL_ERROR, str(exc))
        except Exception as exc:   # e.g. a device the model's weights cannot move to
            if is_out_of_memory(exc):
                log.warning("loading %s ran out of memory: %s", entry.name, exc)
                failure = (ErrorCode.OUT_OF_MEMORY, OOM_LOADING_ADVICE.format(entry.name))
            else:
                log.exception("loading %s failed", entry.name)
                failure = (ErrorCode.MODEL_ERROR, f"model '{entry.name}' could not be loaded "
                                                  f"({entry.path}): {type(exc).__name__}: {exc}")
        self.fail(emit, *failure)   # outside the except: its traceback's tensors go
        gc.collect()
        empty_device_cache()
        return None

    def cancelled(self, job: ActiveJob) -> dict[str, Any]:
        """The end of a cancelled job; at shutdown it says why (the client did not ask), a
        replaced live job names its successor."""
        if self.stopping():
            return {"event": "cancelled", "message": "the daemon is shutting down"}
        if job.replaced_by is not None:
            return {"event": "cancelled", "replaced_by": job.replaced_by}
        return {"event": "cancelled"}

    @staticmethod
    def fail(emit: Emit, code: str, message: str, field: str | None = None) -> None:
        emit({"event": "error", "code": code, "message": message,
              **({"field": field} if field else {})}, [], True)

"""Admission: a parsed submit resolved once, at the door, into one :class:`AdmittedJob`.

The model's name, the LoRAs (``params.loras`` and the prompt's ``<lora:NAME:W>`` tags), the
embeddings the prompts name, each control's ControlNet and the upscaler are looked up here,
before anything is queued; a name that does not resolve is refused with the field it came
from. The worker, a cluster replica and ``fetch`` read the admitted job; nothing downstream
rewrites the request (the parsed one is not touched either: admission builds new params).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from paintbridge.plugin import loraspec
from paintbridge.plugin.protocol import ErrorCode, Limits, ProtocolError, SubmitRequest

from ..jobs.job import AdmittedJob
from ..models.adapters import JobLora
from ..models.controlnets import AskedControl, ControlNetLibrary
from ..models.embeddings import EmbeddingEntry, EmbeddingLibrary
from ..models.loras import LoraLibrary
from ..models.registry import ModelEntry, ModelRegistry
from ..models.upscalers import UpscalerError, Upscalers


def _width(arch: Any, cross_dim: int | None) -> str:
    """An architecture in words, with the width ControlNets must match."""
    return f"{arch or 'unknown'}, cross-attention width {cross_dim}"


def _refuse(message: str, field: str, code: str = ErrorCode.BAD_FIELD) -> ProtocolError:
    return ProtocolError(code, message, field)


class Admission:
    """The lookups a submit needs, over the daemon's libraries (each rescans itself)."""

    def __init__(self, registry: ModelRegistry, loras: LoraLibrary,
                 embeddings: EmbeddingLibrary, controlnets: ControlNetLibrary,
                 upscalers: Upscalers, limits: Limits) -> None:
        self.registry = registry
        self.loras = loras
        self.embeddings = embeddings
        self.controlnets = controlnets
        self.upscalers = upscalers
        self.limits = limits

    def admit(self, request: SubmitRequest) -> AdmittedJob:
        """The job as it will run; ProtocolError (naming the field) for what does not
        resolve. ``request`` itself is left as it was."""
        params = copy.deepcopy(request.params)
        model = self._model(params["model"])
        params["model"] = model.name
        if params.get("upscaler"):
            try:
                self.upscalers.entry(params["upscaler"])
            except UpscalerError as exc:
                raise _refuse(str(exc), "upscaler") from None
        prompt, loras = self._loras(params, model)
        params["prompt"] = prompt
        if loras:
            params["loras"] = [{"name": lo.entry.name, "weight": lo.weight} for lo in loras]
        embeddings = self._embeddings(params, model)
        controls = self._controls(params["controls"] or [], model)
        if controls:
            params["controls"] = [c.item for c in controls]
        return AdmittedJob(dataclasses.replace(request, params=params), tuple(loras),
                           tuple(embeddings), tuple(controls))

    def _model(self, name: str | None) -> ModelEntry:
        try:
            entry = self.registry.resolve(name)
        except KeyError as exc:
            raise _refuse(exc.args[0], "model", ErrorCode.UNKNOWN_MODEL) from None
        if entry.error:
            raise _refuse(f"model '{entry.name}': {entry.error}", "model",
                          ErrorCode.MODEL_ERROR)
        return entry

    def _loras(self, params: dict[str, Any], model: ModelEntry) -> tuple[str, list[JobLora]]:
        """The prompt without its ``<lora:…>`` tags, and every LoRA asked for, looked up."""
        try:
            prompt, tagged = loraspec.from_prompt(params["prompt"])
        except ValueError as exc:
            raise _refuse(f"prompt: {exc}", "prompt") from None
        asked = list(params["loras"] or []) + tagged
        if not asked:
            return params["prompt"], []
        try:
            asked = loraspec.check(asked, self.limits.max_loras)
        except ValueError as exc:
            raise _refuse(str(exc), "loras") from None
        out = []
        for item in asked:
            try:
                entry = self.loras.resolve(item["name"])
            except KeyError as exc:
                raise _refuse(exc.args[0], "loras") from None
            if entry.error:
                raise _refuse(f"LoRA '{entry.name}' is not usable: {entry.error}", "loras")
            if entry.arch == "sdxl" and not model.xl or entry.arch in ("sd1", "sd2") \
                    and model.xl:
                raise _refuse(f"LoRA '{entry.name}' is for {entry.arch}; model "
                              f"'{model.name}' is {model.arch}", "loras")
            out.append(JobLora(entry, item["weight"], item.get("text_encoder_weight")))
        return prompt, out

    def _embeddings(self, params: dict[str, Any], model: ModelEntry) -> list[EmbeddingEntry]:
        """The embeddings whose names the prompts use as words (A1111's rule)."""
        named = self.embeddings.named_in(params["prompt"], params["negative_prompt"])
        for e in named:
            if e.error:
                raise _refuse(f"embedding '{e.name}' is not usable: {e.error}", "prompt")
            if e.arch is not None and (e.arch == "sdxl") != model.xl:
                raise _refuse(f"embedding '{e.name}' is for {e.arch}; model '{model.name}' "
                              f"is {model.arch}", "prompt")
        return named

    def _controls(self, items: list[dict[str, Any]], model: ModelEntry) -> list[AskedControl]:
        """Each control's ControlNet: the one named, or one of its type made for the model's
        architecture (the cross-attention width tells it)."""
        width = model.cross_dim
        out = []
        for i, item in enumerate(items):
            where = f"controls[{i}]"
            if item["model"] is None:
                entry = self.controlnets.pick(item["type"], width)
                if entry is None:
                    raise _refuse(f"{where}: no {item['type']} ControlNet for model "
                                  f"'{model.name}' ({_width(model.arch, width)}): put one in "
                                  "a ControlNet folder (paintbridge serve --controlnets DIR) "
                                  "or name one in 'model'", "controls")
            else:
                try:
                    entry = self.controlnets.resolve(item["model"])
                except KeyError as exc:
                    raise _refuse(f"{where}.model: {exc.args[0]}", "controls") from None
                if entry.error:
                    raise _refuse(f"{where}.model: ControlNet '{entry.name}' is not usable: "
                                  f"{entry.error}", "controls")
                if entry.cross_dim != width:
                    raise _refuse(f"{where}.model: ControlNet '{entry.name}' is for "
                                  f"{_width(entry.arch, entry.cross_dim)}; model "
                                  f"'{model.name}' is {_width(model.arch, width)}", "controls")
            out.append(AskedControl({**item, "model": entry.name}, entry))
        return out

"""LoRAs on a loaded model: loaded once with diffusers' own loader (peft underneath), switched
per job, switched off for jobs without any.

A job with no LoRA runs the base layers only (peft's disabled adapters call the wrapped
layer and nothing else), so its output is bit for bit what a daemon that never saw a LoRA
gives. A LoRA that fails to load is deleted again before the error goes out: nothing of it
stays on the model.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .errors import plain_reason
from .loras import LoraEntry

log = logging.getLogger("paintbridge.adapters")

#: adapters kept loaded per model (least recently used go first)
MAX_LOADED = 16
class LoraError(Exception):
    """A LoRA that cannot be used on this model; the message names both."""


@dataclass(frozen=True)
class JobLora:
    entry: LoraEntry
    weight: float
    text_encoder_weight: float | None = None


class Adapters:
    """The LoRAs loaded into one model's pipeline, keyed by file version."""

    def __init__(self, model_name: str, pipe: Any, xl: bool) -> None:
        self.model_name = model_name
        self.pipe = pipe
        self.xl = xl
        self._loaded: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        self._count = 0
        self._active = False
        #: what the active adapters are (names and weights), () when off: part of the key
        #: under which text-encoder outputs are cached
        self.state: tuple[Any, ...] = ()

    def use(self, wanted: list[JobLora]) -> None:
        """Make exactly ``wanted`` active (none: every adapter off)."""
        if not wanted:
            if self._active:
                self.pipe.disable_lora()
                self._active = False
                self.state = ()
            return
        names = [self._adapter(lo.entry) for lo in wanted]
        weights: list[Any] = []
        for lo in wanted:
            if lo.text_encoder_weight is None or not lo.entry.text_encoder:
                weights.append(lo.weight)
            else:
                te = lo.text_encoder_weight
                weights.append({"unet": lo.weight, "text_encoder": te,
                                **({"text_encoder_2": te} if self.xl else {})})
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=weights)
        self._active = True
        self.state = tuple(zip(names, map(repr, weights), strict=True))

    def _adapter(self, entry: LoraEntry) -> str:
        st = entry.path.stat()
        key = (str(entry.path), st.st_size, st.st_mtime_ns)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        self._check_fits(entry)
        while len(self._loaded) >= MAX_LOADED:
            _, old = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(old)
        self._count += 1
        name = f"pb{self._count}"
        try:
            self.pipe.load_lora_weights(str(entry.path.parent), weight_name=entry.path.name,
                                        adapter_name=name)
        except Exception as exc:
            self._forget(name)
            raise LoraError(f"LoRA '{entry.name}' cannot be used with model "
                            f"'{self.model_name}': {plain_reason(exc)}") from exc
        if name not in self._names():   # nothing in it fitted any layer of this model
            self._forget(name)
            raise LoraError(f"LoRA '{entry.name}' changes no layer of model "
                            f"'{self.model_name}': it was made for another architecture")
        self._loaded[key] = name
        log.info("LoRA %s loaded into %s as %s", entry.name, self.model_name, name)
        return name

    def _check_fits(self, entry: LoraEntry) -> None:
        """What only the loaded model can tell (the daemon refused a LoRA of the wrong
        architecture at submit already)."""
        width = self.pipe.unet.config.cross_attention_dim
        if entry.cross_dim is not None and entry.cross_dim != width:
            raise LoraError(f"LoRA '{entry.name}' was trained for a cross-attention width "
                            f"of {entry.cross_dim}; model '{self.model_name}' has {width}")

    def _names(self) -> set[str]:
        listed = self.pipe.get_list_adapters()
        return {n for names in listed.values() for n in names}

    def _forget(self, name: str) -> None:
        """Whatever a failed load left behind, gone."""
        if name in self._names():
            try:
                self.pipe.delete_adapters(name)
            except Exception:   # noqa: BLE001 - best effort; the load error is what matters
                log.exception("could not delete the half-loaded adapter %s", name)

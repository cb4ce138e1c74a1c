"""Model registry: find the models users already have, infer what they are, load them offline.

Sources, in order: the embedded default model shipped in the package, explicit entries from
the config file, and every model folder (A1111's ``models/Stable-diffusion``, ComfyUI's
``models/checkpoints`` or any folder), scanned for diffusers folders (``model_index.json``)
and single-file ``.safetensors`` checkpoints. Names are what clients send; a name is looked
up in the scanned table, never joined to a path, and nothing that resolves outside its
model folder (``..``, symlinks) is listed.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paintbridge.plugin.params import WireEnum
from paintbridge.plugin.protocol import Limits, ProtocolError, validate_params

from ..settings import DTYPE_NAMES
from . import folders
from .adapters import Adapters
from .embeddings import Embeddings
from .errors import plain_reason
from .families import ARCH_CROSS_DIM, Arch
from .prompt_cache import PromptCache

log = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "default_model"
EMBEDDED_NAME = "default"


class Source(WireEnum):
    """Where an entry came from; config-file entries are a folder or a single file too."""

    EMBEDDED = "embedded"        # the default model shipped in the package
    FOLDER = "folder"            # a diffusers folder (model_index.json)
    SINGLE_FILE = "single_file"  # an A1111/ComfyUI .safetensors checkpoint


class ModelError(Exception):
    """A model that exists but cannot be used (unsupported, broken, missing config)."""


@dataclass
class ModelEntry:
    name: str
    path: Path
    source: Source
    arch: Arch | None = None         # None until inspected, and when unusable
    config: Path | None = None       # explicit config folder for a single file
    error: str | None = None         # why it cannot be used
    defaults: dict[str, Any] = field(default_factory=dict)  # from paintbridge.json
    cross_dim: int | None = None     # the width its cross-attention reads (ControlNets match it)

    @property
    def inpainting(self) -> bool:
        return self.arch is not None and self.arch.inpainting

    @property
    def xl(self) -> bool:
        return self.arch is not None and self.arch.xl

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "source": self.source, "arch": self.arch,
                               "inpainting": self.inpainting, "usable": self.error is None}
        if self.error:
            out["error"] = self.error
        if "native_size" in self.defaults:
            out["native_size"] = self.defaults["native_size"]
        return out


# --------------------------------------------------------------------------- inspection


def single_file_arch(path: Path) -> str:
    """diffusers' own architecture inference on a single file, reading only its header:
    keys map to meta tensors of the right shape, no weights are read."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors import safe_open

    shapes: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
            shapes[key] = torch.empty(f.get_slice(key).get_shape(), device="meta")
    if not any(k.startswith("model.diffusion_model.") for k in shapes):
        raise ModelError("not a Stable Diffusion checkpoint (no model.diffusion_model.* keys)")
    return infer_diffusers_model_type(shapes)


def folder_arch(path: Path) -> Arch:
    index = json.loads((path / "model_index.json").read_text())
    unet_cfg = json.loads((path / "unet" / "config.json").read_text())
    xl = "text_encoder_2" in index or "XL" in index.get("_class_name", "")
    inpaint = unet_cfg.get("in_channels") == 9
    return {(False, False): Arch.V1, (False, True): Arch.INPAINTING,
            (True, False): Arch.XL_BASE, (True, True): Arch.XL_INPAINT}[(xl, inpaint)]


#: what a paintbridge.json may set
DEFAULT_KEYS = ("native_size", "steps", "guidance", "sampler", "dtype")


def _check_default(key: str, value: Any) -> Any:
    """One paintbridge.json value, or ValueError saying what is wrong with it. The rows it
    shares with requests are checked by the same table as a request's parameters."""
    if key in ("steps", "guidance", "sampler"):
        try:
            return validate_params("img2img", {key: value}, Limits())[key]
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
    if key == "native_size":
        if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 4096 \
                or value % 8:
            raise ValueError("native_size must be a multiple of 8 in 8..4096")
        return value
    if key == "dtype":
        if value not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}")
        return value
    raise ValueError(f"unknown key (known: {', '.join(DEFAULT_KEYS)})")


def _read_defaults(path: Path) -> dict[str, Any]:
    """Per-model defaults a model folder may state in ``paintbridge.json``; a value that
    would fail every job is dropped at scan time with a warning naming the file."""
    cfg = path / "paintbridge.json" if path.is_dir() else path.with_suffix(".paintbridge.json")
    if not cfg.is_file():
        return {}
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", cfg, exc)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring %s: not a JSON object", cfg)
        return {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        try:
            out[key] = _check_default(key, value)
        except ValueError as exc:
            log.warning("%s: ignoring %r: %s", cfg, key, exc)
    return out


def _inspect(entry: ModelEntry) -> ModelEntry:
    if entry.error:   # refused by name already (a pickle file)
        return entry
    try:
        if entry.source is Source.SINGLE_FILE:
            arch = single_file_arch(entry.path)
        else:
            arch = folder_arch(entry.path)
        try:
            entry.arch = Arch(arch)
        except ValueError:
            raise ModelError(f"architecture '{arch}' is not supported "
                             f"(supported: {', '.join(Arch)})") from None
        entry.cross_dim = ARCH_CROSS_DIM[entry.arch]
        if entry.source is not Source.SINGLE_FILE:   # a folder says its own (the embedded 64)
            unet_cfg = json.loads((entry.path / "unet" / "config.json").read_text())
            entry.cross_dim = int(unet_cfg.get("cross_attention_dim") or entry.cross_dim)
    except ModelError as exc:
        entry.error = str(exc)
    except Exception as exc:  # a corrupt file must not break the listing
        entry.error = f"cannot read {entry.path.name}: {exc}"
    entry.defaults = {**few_step_defaults(entry.name), **_read_defaults(entry.path)}
    return entry


#: the lcm sampler's steps and guidance (LCM-distilled models and LCM LoRAs are made for 4-8
#: steps at low guidance), also for a job that picks it on a model with other defaults
LCM_DEFAULTS = {"steps": 6, "guidance": 1.5}
#: few-step distilled checkpoints, told by the words their files are named with, and what
#: they are made to run with (their model cards); a paintbridge.json beside them wins
FEW_STEP = (("lcm", {**LCM_DEFAULTS, "sampler": "lcm"}),
            ("turbo", {"steps": 4, "guidance": 1.0, "sampler": "euler_a"}),
            ("lightning", {"steps": 4, "guidance": 1.0, "sampler": "euler"}),
            ("hyper", {"steps": 4, "guidance": 1.0, "sampler": "euler"}))


def few_step_defaults(name: str) -> dict[str, Any]:
    """Defaults for a checkpoint whose name says it is distilled for few steps (as
    ``sdxl_lightning_4step``, ``sd_turbo``, ``dreamshaper-lcm`` are): live painting with
    its 20-step defaults would waste most of each job."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    for word, defaults in FEW_STEP:
        if word in words:
            return dict(defaults)
    return {}


#: checkpoints in Python's pickle format, which can run code when opened: never loaded
PICKLE_SUFFIXES = (".ckpt",)
PICKLE_REFUSED = ("pickle files (.ckpt) are unsafe, they can run code when opened: use the "
                  ".safetensors version of this model")


def discover(root: Path) -> list[ModelEntry]:
    """Every diffusers folder and .safetensors file under ``root``."""
    found: list[ModelEntry] = []
    for path in folders.walk(root, is_leaf=lambda d: (d / "model_index.json").is_file()):
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            found.append(ModelEntry(name, path, Source.FOLDER))
        elif path.suffix == ".safetensors":
            found.append(ModelEntry(name, path, Source.SINGLE_FILE))
        elif path.suffix in PICKLE_SUFFIXES:   # listed, so the user learns why not
            found.append(ModelEntry(name, path, Source.SINGLE_FILE, error=PICKLE_REFUSED))
    return found


# --------------------------------------------------------------------------- loading


#: diffusers' AutoPipeline that runs each task (a job kind) on a loaded model's components
_AUTO_PIPELINES = {"txt2img": "AutoPipelineForText2Image",
                   "img2img": "AutoPipelineForImage2Image",
                   "inpaint": "AutoPipelineForInpainting"}


class LoadedModel:
    """One model's weights on the device, and the pipelines that share them (from_pipe)."""

    def __init__(self, entry: ModelEntry, base: Any) -> None:
        self.entry = entry
        self.base = base
        # the loaded pipeline is the txt2img one, or an inpainting model's one for all tasks
        self._pipes: dict[str, Any] = {self.task("txt2img"): base}
        self.scheduler = base.scheduler  # the model's own; jobs derive theirs from it
        self.adapters = Adapters(entry.name, base, entry.xl)   # its LoRAs, shared by tasks
        self.embeddings = Embeddings(entry.name, base)          # and its embeddings
        self.prompts = PromptCache()                            # and its recent prompts
        vae_scale = 2 ** (len(base.vae.config.block_out_channels) - 1)
        self.native_size = int(entry.defaults.get("native_size")
                               or base.unet.config.sample_size * vae_scale)

    def task(self, kind: str) -> str:
        """The pipeline task that runs job ``kind`` on this model.

        An inpainting (9-channel) model runs everything through its inpaint pipeline: a
        full mask with strength < 1 is image-to-image, with strength 1 text-to-image.
        AutoPipeline cannot know this: it maps class names, so it would pair a 9-channel UNet
        with a 4-channel text-to-image pipeline.
        """
        return "inpaint" if self.entry.inpainting else kind

    def pipeline(self, kind: str, controlnet: Any = None) -> Any:
        """The pipeline that runs job ``kind`` on this model, sharing its components; with
        a ControlNet (or a MultiControlNetModel), AutoPipeline's ControlNet variant of it,
        made for the job (from_pipe copies no weights)."""
        import diffusers

        task = self.task(kind)
        if controlnet is not None:
            auto = getattr(diffusers, _AUTO_PIPELINES[task])
            pipe = auto.from_pipe(self.base, controlnet=controlnet)
            pipe.set_progress_bar_config(disable=True)
            return pipe
        if task not in self._pipes:
            auto = getattr(diffusers, _AUTO_PIPELINES[task])
            self._pipes[task] = auto.from_pipe(self.base)
        pipe = self._pipes[task]
        pipe.set_progress_bar_config(disable=True)
        return pipe


def load_pipeline(entry: ModelEntry, device: Any, dtype: Any) -> Any:
    """Load offline: folders as saved, single files with the config folders we ship."""
    import diffusers as d
    import transformers

    from . import shipped_configs
    from .device import is_out_of_memory

    d.utils.logging.disable_progress_bar()  # a daemon's log is not a terminal
    transformers.utils.logging.disable_progress_bar()
    if entry.error or entry.arch is None:
        raise ModelError(entry.error or f"model '{entry.name}' is not usable")
    # A table, not AutoPipeline: AutoPipeline has no from_single_file, and for a folder it
    # trusts model_index.json's class name, while the arch we inferred from the weights
    # (a 9-channel UNet is inpainting whatever the folder says) is what must decide.
    cls = {Arch.V1: d.StableDiffusionPipeline, Arch.INPAINTING: d.StableDiffusionInpaintPipeline,
           Arch.XL_BASE: d.StableDiffusionXLPipeline,
           Arch.XL_INPAINT: d.StableDiffusionXLInpaintPipeline}[entry.arch]
    extra: dict[str, Any] = {}
    if not entry.xl:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)  # torch_dtype rename
            if entry.source is Source.SINGLE_FILE:
                config = entry.config or shipped_configs.config_dir(entry.arch)
                extra.update(shipped_configs.load_tokenizers(entry.arch))
                pipe = cls.from_single_file(str(entry.path), config=str(config),
                                            local_files_only=True, torch_dtype=dtype, **extra)
            else:   # safetensors only: a folder's .bin weights are pickles
                pipe = cls.from_pretrained(str(entry.path), local_files_only=True,
                                           use_safetensors=True, torch_dtype=dtype, **extra)
    except ModelError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise  # not the model's fault: the daemon says so, with advice
        raise ModelError(f"cannot load '{entry.name}' ({entry.path}): "
                         f"{plain_reason(exc)}") from exc
    pipe.to(device)
    if device.type in ("cpu", "cuda"):
        import torch

        pipe.unet.to(memory_format=torch.channels_last)
        # not the VAE on the CPU: there, with one thread, torch's channels-last kernels
        # decoded a 512² picture 6 dB worse than the same VAE laid out plainly (orange for
        # yellow, soft edges; bench/fidelity.py found it, tests/test_fidelity.py guards it)
        if device.type == "cuda":
            pipe.vae.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ModelRegistry:
    """The table of known models (rescanned on demand) and an LRU cache of loaded ones."""

    def __init__(self, roots: list[Path] | None = None,
                 explicit: list[ModelEntry] | None = None, include_embedded: bool = True,
                 default: str | None = None, cache_size: int = 2) -> None:
        self.roots = [Path(r).expanduser() for r in roots or []]
        self.explicit = list(explicit or [])
        self.include_embedded = include_embedded
        self.default_name = default
        self.cache_size = max(1, cache_size)
        self._entries: dict[str, ModelEntry] = {}
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # scan (main thread) vs load (worker thread)

    def scan(self) -> list[ModelEntry]:
        entries: list[ModelEntry] = []
        if self.include_embedded and (EMBEDDED_DIR / "model_index.json").is_file():
            entries.append(ModelEntry(EMBEDDED_NAME, EMBEDDED_DIR, Source.EMBEDDED))
        entries.extend(self.explicit)
        for root in self.roots:
            entries.extend(discover(root))
        table: dict[str, ModelEntry] = {}
        for entry in entries:
            if entry.name in table:
                log.warning("model name '%s' is taken; skipping %s", entry.name, entry.path)
                continue
            old = self._entries.get(entry.name)
            if old is not None and (old.path, old.source) == (entry.path, entry.source):
                table[entry.name] = old
            else:
                table[entry.name] = _inspect(entry)
        with self._lock:
            self._entries = table
        return list(table.values())

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    @property
    def default(self) -> str | None:
        usable = [e.name for e in self._entries.values() if e.error is None]
        if self.default_name in usable:
            return self.default_name
        return usable[0] if usable else None

    def resolve(self, name: str | None) -> ModelEntry:
        """Name -> entry; raises KeyError with a message a user can act on."""
        if name is None:
            name = self.default
            if name is None:
                raise KeyError("no usable model: put a checkpoint in a model folder "
                               "(paintbridge serve --models DIR)")
        entry = self._entries.get(name)
        if entry is None:
            self.scan()
            entry = self._entries.get(name)
        if entry is None:
            raise KeyError(f"unknown model '{name}'; known: "
                           f"{', '.join(sorted(self._entries)) or 'none'}")
        return entry

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def is_loaded(self, name: str) -> bool:
        """Whether a job on ``name`` starts at once (else it loads first: seconds to minutes)."""
        return name in self._loaded

    def load(self, entry: ModelEntry, device: Any, dtype: Any) -> LoadedModel:
        """Cached load (worker thread only); evicts the least recently used model."""
        if entry.name in self._loaded:
            self._loaded.move_to_end(entry.name)
            return self._loaded[entry.name]
        while len(self._loaded) >= self.cache_size:
            _, old = self._loaded.popitem(last=False)
            del old
            gc.collect()
            empty_device_cache()
        model = LoadedModel(entry, load_pipeline(entry, device, dtype))
        self._loaded[entry.name] = model
        return model


def empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()

"""The artist's ControlNet files: where they are, what each is for, and loading them offline.

Listed from headers only (tensor names and shapes, a folder's ``config.json``): the layout
(original ``control_model.*`` single files as lllyasviel published them, diffusers folders,
diffusers-keyed single files as the SDXL ControlNets come), the architecture (the width the
cross-attention reads: 768 SD 1.x, 1024 SD 2.x, 2048 SDXL; any other width is a model of
its own, like the embedded one's 64) and, from the file name, the control type.

Folders: ``--controlnets DIR``, A1111's ``models/ControlNet`` and the ControlNet extension's
``extensions/sd-webui-controlnet/models``, ComfyUI's ``models/controlnet``, and the scribble
ControlNet trained here for the embedded model (``backend/default_controlnets/``). Loaded with
diffusers' ``ControlNetModel`` (single files with the config folders this package ships),
cached like models.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paintbridge.plugin import controls

from . import folders
from .errors import plain_reason

log = logging.getLogger("paintbridge.controlnets")

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "default_controlnets"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: cross-attention width -> architecture name (as the LoRA table names them)
CROSS_DIM_ARCH = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
PICKLE_SUFFIXES = (".pth", ".ckpt", ".bin", ".pt")
PICKLE_REFUSED = ("pickle files are unsafe, they can run code when opened: use the "
                  ".safetensors version of this ControlNet (the fp16 safetensors editions "
                  "of ControlNet 1.1 load as they are)")
#: words in file names -> control type (control_v11p_sd15_scribble, t2i-…, controlnet-canny-…)
TYPE_WORDS = (
    ("scribble", "scribble"), ("lineart", "lineart"), ("line_art", "lineart"),
    ("softedge", "softedge"), ("hed", "softedge"), ("pidi", "softedge"),
    ("canny", "canny"), ("depth", "depth"), ("normal", "normal"), ("normalbae", "normal"),
    ("openpose", "pose"), ("pose", "pose"), ("seg", "segmentation"),
    ("segmentation", "segmentation"), ("mlsd", "mlsd"), ("tile", "tile"),
)


class ControlNetError(Exception):
    """A ControlNet that cannot be used, with what to do about it."""


@dataclass
class ControlNetEntry:
    name: str
    path: Path
    layout: str | None = None        # "original", "diffusers" (single file), "folder"
    arch: str | None = None          # sd1 / sd2 / sdxl / None (a width of its own)
    cross_dim: int | None = None
    type: str | None = None          # from the name or the folder's paintbridge.json
    size: int = 0
    config: str | None = None        # the shipped config folder a single file loads with
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "arch": self.arch,
                               "cross_dim": self.cross_dim, "layout": self.layout,
                               "size": self.size, "usable": self.error is None}
        if self.error:
            out["error"] = self.error
        return out


def type_from_name(name: str) -> str | None:
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    for word, kind in TYPE_WORDS:
        if word in words:
            return kind
    joined = "".join(words)
    for word, kind in TYPE_WORDS:   # "controlnet_v11p_sd15s2_lineart_anime", "openposexl"
        if len(word) > 3 and word in joined:
            return kind
    return None


def default_dirs(model_roots: Iterable[Path]) -> list[Path]:
    """A1111's models/ControlNet (and its extension's models folder), ComfyUI's
    models/controlnet, beside the checkpoint folders given."""
    roots = list(model_roots)
    extension = "../../extensions/sd-webui-controlnet/models"   # A1111 only
    return (folders.beside_checkpoints(roots, "../ControlNet", "../controlnet")
            + [d for d in folders.beside_checkpoints(roots, extension, extension)
               if d.parent.name == "sd-webui-controlnet"])


def _is_folder(path: Path) -> bool:
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "ControlNetModel"
    except (OSError, ValueError):
        return False


def discover(root: Path) -> list[ControlNetEntry]:
    found = []
    for path in folders.walk(root, is_leaf=_is_folder):
        name = path.relative_to(root).as_posix()
        if path.is_dir():
            found.append(ControlNetEntry(name, path, "folder"))
        elif path.suffix.lower() == ".safetensors":
            found.append(ControlNetEntry(name.rsplit(".", 1)[0], path))
        elif path.suffix.lower() in PICKLE_SUFFIXES:
            found.append(ControlNetEntry(name.rsplit(".", 1)[0], path, error=PICKLE_REFUSED))
    return found


def _shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def _cross_dim(shapes: dict[str, list[int]]) -> int | None:
    for key, shape in shapes.items():
        if key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def inspect(entry: ControlNetEntry) -> ControlNetEntry:
    entry.type = type_from_name(entry.name)
    if entry.error:
        return entry
    try:
        if entry.layout == "folder":
            config = json.loads((entry.path / "config.json").read_text())
            weights = sorted(entry.path.glob("diffusion_pytorch_model*.safetensors"))
            if not weights:
                raise ControlNetError("the folder has no .safetensors weights (.bin "
                                      "weights are pickles, never loaded)")
            entry.size = sum(w.stat().st_size for w in weights)
            entry.cross_dim = int(config["cross_attention_dim"])
            extra = entry.path / "paintbridge.json"
            if extra.is_file():
                entry.type = json.loads(extra.read_text()).get("type") or entry.type
        else:
            entry.size = entry.path.stat().st_size
            shapes = _shapes(entry.path)
            keys = list(shapes)
            if any(k.startswith("control_model.") for k in keys) or \
                    "input_hint_block.0.weight" in shapes:
                entry.layout = "original"
            elif "controlnet_cond_embedding.conv_in.weight" in shapes:
                entry.layout = "diffusers"
            elif any("lora" in k for k in keys[:50]):
                raise ControlNetError("a Control-LoRA, not a ControlNet: not supported")
            else:
                raise ControlNetError("not a ControlNet (no control_model.* or "
                                      "controlnet_cond_embedding.* tensors)")
            entry.cross_dim = _cross_dim(shapes)
            entry.config = _config_for(CROSS_DIM_ARCH.get(entry.cross_dim or 0), shapes)
        entry.arch = CROSS_DIM_ARCH.get(entry.cross_dim or 0)
        if entry.layout != "folder" and entry.config is None and \
                not _sidecar(entry.path).is_file():
            raise ControlNetError(f"no configuration for a {entry.arch or 'cross-attention '}"
                                  f"{'' if entry.arch else entry.cross_dim} ControlNet single "
                                  f"file: put its diffusers config.json beside it as "
                                  f"{_sidecar(entry.path).name}")
        if entry.type is not None and entry.type not in controls.TYPES:
            entry.type = None
    except ControlNetError as exc:
        entry.error = str(exc)
    except Exception as exc:   # a corrupt file must not break the listing
        entry.error = f"cannot read {entry.path.name}: {exc}"
    return entry


def _config_for(arch: str | None, shapes: dict[str, list[int]]) -> str | None:
    """The shipped config of a single file: SD1's, or one of SDXL's three sizes, told
    apart by the tensors diffusers' own single-file detection looks at."""
    if arch == "sd1":
        return "controlnet_v1"
    if arch != "sdxl":
        return None
    block = "down_blocks.1.attentions.0."
    if any(k.startswith(block + "transformer_blocks.0.attn1.to_k.") or
           k.startswith("control_model.input_blocks.4.1.transformer_blocks.0.attn1.to_k.")
           for k in shapes):
        return "controlnet_xl"
    if any(k.startswith(block + "norm.") for k in shapes):
        return "controlnet_xl_mid"
    return "controlnet_xl_small"


def _sidecar(path: Path) -> Path:
    """A single file's own diffusers config (``NAME.config.json``), for widths we ship no
    config for."""
    return path.with_name(path.name.rsplit(".", 1)[0] + ".config.json")


class ControlNetLibrary(folders.Library[ControlNetEntry]):
    kind = "ControlNet"

    def __init__(self, roots: Iterable[Path], shipped: bool = True) -> None:
        roots = list(roots)
        if shipped and SHIPPED_DIR.is_dir():
            roots.append(SHIPPED_DIR)
        super().__init__(roots, discover, inspect)

    def resolve(self, name: str) -> ControlNetEntry:
        entries = {e.name: e for e in self.fresh()}
        entry = entries.get(name)
        if entry is None:
            self.scan()
            entries = {e.name: e for e in self.entries()}
            entry = entries.get(name)
        if entry is None:
            raise KeyError(f"unknown ControlNet '{name}'; known: "
                           f"{', '.join(sorted(entries)) or 'none'}")
        return entry

    def pick(self, control_type: str, cross_dim: int | None) -> ControlNetEntry | None:
        """A usable ControlNet of the type for a model of this cross-attention width."""
        for entry in self.fresh():
            if entry.error is None and entry.type == control_type and \
                    entry.cross_dim == cross_dim:
                return entry
        return None


def load(entry: ControlNetEntry, device: Any, dtype: Any) -> Any:
    """The ControlNetModel, offline; ControlNetError (with the file named) otherwise."""
    from diffusers import ControlNetModel

    if entry.error:
        raise ControlNetError(f"ControlNet '{entry.name}' is not usable: {entry.error}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            if entry.layout == "folder":
                net = ControlNetModel.from_pretrained(str(entry.path), local_files_only=True,
                                                      use_safetensors=True, torch_dtype=dtype)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    sidecar = _sidecar(entry.path)
                    if sidecar.is_file():   # from_single_file takes a folder
                        shutil.copy(sidecar, Path(tmp) / "config.json")
                        config = Path(tmp)
                    else:
                        config = CONFIGS / (entry.config or "")
                    net = ControlNetModel.from_single_file(
                        str(entry.path), config=str(config), local_files_only=True,
                        torch_dtype=dtype)
    except Exception as exc:
        raise ControlNetError(f"cannot load ControlNet '{entry.name}' ({entry.path}): "
                              f"{plain_reason(exc)}") from exc
    return net.to(device).eval()


class ControlNetCache:
    """Loaded ControlNets, least recently used out first (worker thread only)."""

    def __init__(self, size: int = 4) -> None:
        self.size = max(1, size)
        self._loaded: OrderedDict[tuple[str, Path], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, entry: ControlNetEntry, device: Any, dtype: Any) -> Any:
        key = (entry.name, entry.path)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        net = load(entry, device, dtype)
        with self._lock:
            while len(self._loaded) >= self.size:
                self._loaded.popitem(last=False)
                gc.collect()
            self._loaded[key] = net
        return net

    def names(self) -> list[str]:
        return [k[0] for k in self._loaded]


@dataclass
class AskedControl:
    """A job's control item with its ControlNet looked up (at submit, in the daemon)."""

    item: dict[str, Any]
    entry: ControlNetEntry

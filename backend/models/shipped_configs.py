"""Config-only diffusers folders that let single-file checkpoints load fully offline.

A user's A1111/ComfyUI ``.safetensors`` holds weights only; diffusers needs each component's
config to build the models, and by default fetches them from the Hub. We ship those configs
(no weights) under ``backend/configs/<kind>/`` and the CLIP BPE vocabulary once under
``backend/configs/clip-tokenizer/`` (built by ``scripts/build_clip_tokenizer.py``).

Use as::

    kind = infer_diffusers_model_type(checkpoint)        # "v1", "inpainting", "xl_base", ...
    pipe = Cls.from_single_file(path, config=str(config_dir(kind)), local_files_only=True,
                                **load_tokenizers(kind))

The tokenizers must always be passed. The folders' ``model_index.json`` deliberately lists no
``tokenizer``/``tokenizer_2``: with an entry but no files, diffusers 0.42 + transformers 5
silently build a 2-token CLIPTokenizer (every word -> one id, model_max_length 1e30). Without
an entry, forgetting ``tokenizer=`` fails loudly instead (a TypeError from inside diffusers).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .families import Arch

if TYPE_CHECKING:  # transformers is heavy; import it only when tokenizers are built.
    from transformers import CLIPTokenizer

CONFIG_ROOT: Path = Path(__file__).resolve().parents[1] / "configs"
TOKENIZER_DIR: Path = CONFIG_ROOT / "clip-tokenizer"
SUPPORTED_KINDS: tuple[str, ...] = tuple(a.value for a in Arch)  # one config folder each
MODEL_MAX_LENGTH = 77

# Pad token per tokenizer slot, as in the published repos: SD1.x and SDXL ``tokenizer`` pad
# with <|endoftext|>; SDXL ``tokenizer_2`` (OpenCLIP bigG) pads with "!" (id 0).
_PAD_TOKENS: dict[Arch, dict[str, str]] = {
    Arch.V1: {"tokenizer": "<|endoftext|>"},
    Arch.INPAINTING: {"tokenizer": "<|endoftext|>"},
    Arch.XL_BASE: {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
    Arch.XL_INPAINT: {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
}


def _check_kind(kind: str) -> Arch:
    """Fail early, naming what is supported (e.g. SD2 "v2" checkpoints are not)."""
    try:
        return Arch(kind)
    except ValueError:
        raise ValueError(
            f"unsupported model kind {kind!r}; supported kinds: {', '.join(SUPPORTED_KINDS)}"
        ) from None


def config_dir(kind: str) -> Path:
    """Folder to pass as ``config=`` to ``from_single_file`` for this checkpoint kind."""
    return CONFIG_ROOT / _check_kind(kind).value


def load_tokenizers(kind: str) -> dict[str, CLIPTokenizer]:
    """Build the CLIP tokenizer(s) for ``kind`` from the shipped vocabulary, offline.

    Returns ``{"tokenizer": ...}`` for SD1.x and ``{"tokenizer": ..., "tokenizer_2": ...}``
    for SDXL, ready to pass as keyword arguments to ``from_single_file``.
    """
    arch = _check_kind(kind)
    from transformers import CLIPTokenizer

    tokenizers: dict[str, CLIPTokenizer] = {}
    for name, pad_token in _PAD_TOKENS[arch].items():
        # from_pretrained on the folder: CLIPTokenizer(vocab_file=..., merges_file=...) is
        # silently ignored in transformers 5 (every token becomes one id). Without an explicit
        # model_max_length a bare vocab folder gets 1e30, which breaks prompt truncation.
        tok = CLIPTokenizer.from_pretrained(
            str(TOKENIZER_DIR),
            model_max_length=MODEL_MAX_LENGTH,
            pad_token=pad_token,
            local_files_only=True,
        )
        ids = tok("a photo of a cat")["input_ids"]
        if ids != [49406, 320, 1125, 539, 320, 2368, 49407]:
            raise RuntimeError(f"CLIP tokenizer from {TOKENIZER_DIR} gives non-standard ids {ids}")
        tokenizers[name] = tok
    return tokenizers

"""Textual-inversion embeddings: a word in the prompt that stands for learnt vectors, by the
file's name, as in A1111 ("a photo in inkstyle" uses ``embeddings/inkstyle.safetensors``).

Found in ``--embeddings DIR`` (and ``embedding_dirs`` in the config), A1111's ``embeddings/``
(beside ``models/``) and ComfyUI's ``models/embeddings``; ``.safetensors`` only. Described
from the header (vectors, width, architecture). Used with diffusers' own
``load_textual_inversion``, once per model, under a private token (``<pb-emb-N>``) that the
prompt's whole word is rewritten to: tokenizers match added tokens inside words too, so
registering the name itself would change "pink" once an embedding "ink" was loaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import folders

log = logging.getLogger("paintbridge.embeddings")

PICKLE_SUFFIXES = (".pt", ".bin", ".ckpt", ".pth")
PICKLE_REFUSED = ("pickle files are unsafe, they can run code when opened: use the "
                  ".safetensors version of this embedding")
_WIDTH_ARCH = {768: "sd1", 1024: "sd2"}


@dataclass
class EmbeddingEntry:
    name: str
    path: Path
    vectors: int = 0
    width: int | None = None
    arch: str | None = None
    key: str | None = None          # the tensor that holds the vectors (SD1/2)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "arch": self.arch, "vectors": self.vectors,
                               "width": self.width, "usable": self.error is None}
        if self.error:
            out["error"] = self.error
        return out


def beside_checkpoints(model_roots: Iterable[Path]) -> list[Path]:
    """A1111's ``embeddings/`` (at the web UI's root) and ComfyUI's ``models/embeddings``."""
    return folders.beside_checkpoints(model_roots, "../../embeddings", "../embeddings")


def discover(root: Path) -> list[EmbeddingEntry]:
    found: list[EmbeddingEntry] = []
    for path in folders.walk(root):
        if path.suffix == ".safetensors":
            found.append(EmbeddingEntry(path.stem, path))
        elif path.suffix in PICKLE_SUFFIXES:
            found.append(EmbeddingEntry(path.stem, path, error=PICKLE_REFUSED))
    return found


def inspect(entry: EmbeddingEntry) -> EmbeddingEntry:
    if entry.error:
        return entry
    from safetensors import safe_open

    try:
        with safe_open(str(entry.path), framework="pt") as f:
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:
        entry.error = f"cannot read {entry.path.name}: {exc}"
        return entry
    if "clip_l" in shapes and "clip_g" in shapes:
        entry.arch, entry.vectors, entry.width = "sdxl", shapes["clip_l"][0], shapes["clip_l"][-1]
        return entry
    two_d = {k: s for k, s in shapes.items() if len(s) in (1, 2)}
    key = "emb_params" if "emb_params" in two_d else next(iter(two_d), None) \
        if len(two_d) == 1 else None
    if key is None:
        entry.error = ("not a textual-inversion embedding (no emb_params, no single vector "
                       "tensor, no clip_l/clip_g)")
        return entry
    shape = two_d[key]
    entry.key, entry.vectors, entry.width = key, (shape[0] if len(shape) == 2 else 1), shape[-1]
    entry.arch = _WIDTH_ARCH.get(entry.width)
    return entry


class EmbeddingLibrary(folders.Library[EmbeddingEntry]):
    """The table of embedding files (headers read once per file version)."""

    kind = "embedding"

    def __init__(self, roots: Iterable[Path]) -> None:
        super().__init__(roots, discover, inspect)

    def named_in(self, *texts: str) -> list[EmbeddingEntry]:
        """The embeddings whose names stand as whole words in the texts (A1111's rule)."""
        if not self._entries:
            return []
        words = {w for text in texts for w in re.findall(r"[\w\-.]+", text or "")}
        return [e for name, e in self._entries.items() if name in words]


class Embeddings:
    """The embeddings loaded into one model's tokenizer and text encoder."""

    def __init__(self, model_name: str, pipe: Any) -> None:
        self.model_name = model_name
        self.pipe = pipe
        self._tokens: dict[tuple[str, int, int], str] = {}

    def rewrite(self, wanted: list[EmbeddingEntry], *texts: str) -> list[str]:
        """The texts with each embedding's name replaced by its loaded token (loading it
        the first time); ValueError naming the embedding when it does not fit."""
        out = list(texts)
        for entry in wanted:
            token = self._token(entry)
            pattern = re.compile(rf"(?<![\w\-.]){re.escape(entry.name)}(?![\w\-.])")
            out = [pattern.sub(token, t) if t else t for t in out]
        return out

    def _token(self, entry: EmbeddingEntry) -> str:
        st = entry.path.stat()
        key = (str(entry.path), st.st_size, st.st_mtime_ns)
        if key in self._tokens:
            return self._tokens[key]
        pipe = self.pipe
        xl = getattr(pipe, "text_encoder_2", None) is not None
        width = pipe.text_encoder.get_input_embeddings().weight.shape[1]
        if (entry.arch == "sdxl") != xl or (not xl and entry.width != width):
            raise ValueError(f"embedding '{entry.name}' ({entry.arch or entry.width}) does "
                             f"not fit model '{self.model_name}' (text width {width})")
        token = f"<pb-emb-{len(self._tokens) + 1}>"
        from safetensors.torch import load_file

        tensors = load_file(str(entry.path))
        if xl:
            pipe.load_textual_inversion(tensors["clip_l"], token=token,
                                        text_encoder=pipe.text_encoder,
                                        tokenizer=pipe.tokenizer)
            pipe.load_textual_inversion(tensors["clip_g"], token=token,
                                        text_encoder=pipe.text_encoder_2,
                                        tokenizer=pipe.tokenizer_2)
        else:
            vectors = tensors[entry.key or "emb_params"]
            pipe.load_textual_inversion(vectors.reshape(-1, vectors.shape[-1]), token=token)
        self._tokens[key] = token
        log.info("embedding %s loaded into %s as %s", entry.name, self.model_name, token)
        return token

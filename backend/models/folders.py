"""The user's model folders, walked one way for checkpoints, LoRAs and embeddings.

One walk (sorted, hidden names skipped, nothing that resolves outside the folder, four
levels deep), one rule for the folders A1111 and ComfyUI keep beside their checkpoints, and
one table of files whose headers are read once per file version.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("paintbridge.folders")

MAX_DEPTH = 4


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves inside ``root`` (a symlink or ``..`` out of it does not)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def walk(root: Path, is_leaf: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """Every file under ``root`` (depth <= MAX_DEPTH), and every folder ``is_leaf`` takes
    whole (a diffusers folder), in sorted order; nothing if ``root`` is not a folder."""
    if not root.is_dir():
        return

    def visit(folder: Path, depth: int) -> Iterator[Path]:
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            if child.name.startswith(".") or not inside(child, root):
                continue
            if not child.is_dir():
                yield child
            elif is_leaf(child):
                yield child
            elif depth < MAX_DEPTH:
                yield from visit(child, depth + 1)

    yield from visit(root, 1)


def beside_checkpoints(model_roots: Iterable[Path], a1111: str, comfyui: str) -> list[Path]:
    """The folders of the A1111 / ComfyUI installs whose checkpoint folders are given:
    ``a1111`` relative to ``models/Stable-diffusion``, ``comfyui`` to ``models/checkpoints``
    (e.g. ``../Lora`` and ``../loras``); those that exist."""
    found = []
    for root in model_roots:
        root = Path(root).expanduser()
        relative = {"stable-diffusion": a1111, "checkpoints": comfyui}.get(root.name.lower())
        if relative is None:
            continue
        candidate = Path(os.path.normpath(root / relative))
        if candidate.is_dir():
            found.append(candidate)
    return found


class Entry(Protocol):
    name: str
    path: Path


E = TypeVar("E", bound=Entry)


class Library(Generic[E]):
    """A table of files by name, rescanned on demand; ``inspect`` (a header read) runs once
    per file version (size, modification time)."""

    kind = "file"

    def __init__(self, roots: Iterable[Path], discover: Callable[[Path], list[E]],
                 inspect: Callable[[E], E]) -> None:
        self.roots = [Path(r).expanduser() for r in roots]
        self._discover, self._inspect = discover, inspect
        self._entries: dict[str, E] = {}
        self._seen: dict[Path, tuple[int, int, E]] = {}
        self._scanned = float("-inf")

    def scan(self) -> list[E]:
        table: dict[str, E] = {}
        seen: dict[Path, tuple[int, int, E]] = {}
        for root in self.roots:
            for entry in self._discover(root):
                if entry.name in table:
                    log.warning("%s name '%s' is taken; skipping %s", self.kind, entry.name,
                                entry.path)
                    continue
                try:
                    st = entry.path.stat()
                    version = (st.st_size, st.st_mtime_ns)
                except OSError:
                    version = (-1, -1)
                old = self._seen.get(entry.path)
                entry = old[2] if old is not None and old[:2] == version else \
                    self._inspect(entry)
                seen[entry.path] = (*version, entry)
                table[entry.name] = entry
        self._entries, self._seen = table, seen
        self._scanned = time.monotonic()
        return list(table.values())

    def entries(self) -> list[E]:
        return list(self._entries.values())

    def fresh(self, max_age: float = 10.0) -> list[E]:
        """The table, rescanned when older than ``max_age`` seconds: hosts say hello every
        few seconds, and a file the artist just copied in should show up without a restart."""
        if time.monotonic() - self._scanned > max_age:
            self.scan()
        return self.entries()

"""The tree keeps the design card's shape: one import name, hosts' code free of our internals."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[1]
# GIMP's plug-in folder holds the client as a top-level `plugin` package: its code and the
# scripts that run inside GIMP import it by that name.
GIMP_SIDE = ("gimp", "tests/gimp", "scripts/gimp_doc_pictures.py")


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_bare_backend_or_plugin_imports() -> None:
    """Installed, the folders are paintbridge.backend and paintbridge.plugin: a bare
    `import backend` only works from a checkout (and would collide with other projects)."""
    bad = []
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith((".venv/", ".typecheck/", "build/")) or rel.startswith(GIMP_SIDE):
            continue
        for line, name in _absolute_imports(path):
            if name.split(".")[0] in ("backend", "plugin"):
                bad.append(f"{rel}:{line}: {name}")
    assert bad == []


def test_client_package_needs_only_the_standard_library_and_pyzmq() -> None:
    """plugin/ runs inside Krita's and GIMP's Pythons: no numpy, torch, PIL or daemon code."""
    allowed_third_party = {"zmq"}
    bad = []
    for path in (REPO / "plugin").glob("*.py"):
        for line, name in _absolute_imports(path):
            top = name.split(".")[0]
            if top == "paintbridge" or (top not in _stdlib() and top not in allowed_third_party):
                bad.append(f"{path.name}:{line}: {name}")
    assert bad == []


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__"}


def test_the_protocol_page_names_every_parameter() -> None:
    from paintbridge.plugin.params import PARAMS

    page = (REPO / "docs" / "protocol.md").read_text()
    assert [p.name for p in PARAMS if f"`{p.name}`" not in page] == []

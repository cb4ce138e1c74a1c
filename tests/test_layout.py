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


# ------------------------------------------------------------------ the import graph

PACKAGES = {"plugin": "paintbridge.plugin", "backend": "paintbridge.backend"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for top in PACKAGES for p in (REPO / top).rglob("*.py")}


def _imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of ours that ``name`` imports, at the top or inside a function, with
    ``from . import x`` counted as importing x when x is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    # importing a.b.c runs a and a.b first: those are not the import's subject, leave them
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports_of(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_not_even_inside_functions() -> None:
    """A cycle hidden behind an import inside a function still ties two rooms together:
    neither can be read, tested or moved without the other."""
    graph = import_graph()
    assert "paintbridge.backend.models.registry" in graph   # the walk sees the rooms
    assert _cycles(graph) == []


def test_rooms_import_downwards() -> None:
    """plugin/ is the floor; in backend/ the rooms stand on models/, jobs/ on models/, the
    door and the cluster on jobs/, the command line on all of them."""
    order = ["paintbridge.plugin", "paintbridge.backend.settings", "paintbridge.backend.models",
             "paintbridge.backend.jobs", "paintbridge.backend.cluster",
             "paintbridge.backend.door", "paintbridge.backend.install", "paintbridge.backend"]

    def level(module: str) -> int:
        return max(i for i, room in enumerate(order)
                   if module == room or module.startswith(room + "."))

    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
              if level(b) > level(a)]
    assert upward == []


def test_every_room_is_in_the_wheel() -> None:
    """pyproject lists the packages by hand: a room left out installs without its code
    (a checkout's editable install still finds it, so only the wheel would show it)."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    rooms = {_module_name(p) for top in PACKAGES for p in (REPO / top).rglob("__init__.py")}
    assert rooms - listed == set()


#: how big a module or a function may grow before it is two concepts (the house's rule)
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 100
#: the product's code: what a newcomer reads (tests, benches and dev tools have their own pace)
PRODUCT = ("backend", "plugin", "krita", "gimp")


def _product_files() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (REPO / top).rglob("*.py"))


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [f"{where}:{node.lineno} {node.name} "
            f"({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > limit]


def test_no_module_or_function_outgrows_its_room() -> None:
    big = [f"{p.relative_to(REPO)} ({n} lines)" for p in _product_files()
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long = [f for p in _product_files() for f in _long_functions(p, MAX_FUNCTION_LINES)]
    assert big == [] and long == []


def test_the_size_rule_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "m.py").write_text(f"def short():\n    pass\n\n\ndef f():\n{body}\n")
    assert [f.split()[1] for f in _long_functions(tmp_path / "m.py", MAX_FUNCTION_LINES)] \
        == ["f"]


#: what drives a real host from a test
HOST_CALLS = {"require_krita", "run_krita_gui", "run_kritarunner", "ensure_chroot", "run_gimp"}


def test_every_host_test_is_in_the_host_tier() -> None:
    """`make quick` leaves the host tier out: a test that starts Krita or GIMP must be in it
    (its module is a host module, or it is marked ``host``)."""
    from .conftest import HOST_MODULES

    hidden = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if path.stem in HOST_MODULES:
            continue
        for node in ast.parse(path.read_text()).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            calls = {n.func.id for n in ast.walk(node)
                     if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            marked = any("host" in ast.unparse(d) for d in node.decorator_list)
            if calls & HOST_CALLS and not marked:
                hidden.append(f"{path.name}::{node.name}")
    assert hidden == []

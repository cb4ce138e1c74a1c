"""`paintbridge install gimp` without GIMP: what lands in the plug-ins folder, and that
`--uninstall` removes exactly that (GIMP itself is exercised in tests/test_gimp.py)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from paintbridge.plugin import controls
from paintbridge.plugin.params import PARAMS, SAMPLERS

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "gimp" / "paintbridge" / "paintbridge.py"
#: GIMP calls that take an argument's name first
BY_NAME_CALLS = {"add_string_argument", "add_int_argument", "add_double_argument",
                 "add_choice_argument", "add_boolean_argument", "get_property", "set_property",
                 "find_property", "get_widget"}


def install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", "install", "gimp", *args],
                          capture_output=True, text=True, timeout=60)


def test_install_lays_out_a_gimp3_plug_in_and_uninstall_removes_it(tmp_path: Path) -> None:
    plug_ins = tmp_path / "GIMP" / "3.0" / "plug-ins"
    other = plug_ins / "someone-else" / "someone-else.py"
    other.parent.mkdir(parents=True)
    other.write_text("#!/usr/bin/env python3\n")
    out = install("--plug-ins", str(plug_ins))
    assert out.returncode == 0, out.stderr
    folder = plug_ins / "paintbridge"
    script = folder / "paintbridge.py"
    assert script.read_bytes() == SCRIPT.read_bytes()
    assert script.read_text().startswith("#!/usr/bin/env python3\n")
    assert os.access(script, os.X_OK)
    for name in ("gimp_document.py", "gimp_dialogs.py", "gimp_host.py", "plugin/oneshot.py",
                 "plugin/client.py", "plugin/session.py", "plugin/launcher.py"):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "paintbridge-install.json").read_text())
    assert Path(record["command"][0]).exists()
    # reinstalling replaces the previous install instead of refusing or duplicating it
    assert install("--plug-ins", str(plug_ins)).returncode == 0
    (folder / "__pycache__").mkdir()                      # what running it leaves behind
    (folder / "__pycache__" / "gimp_document.cpython-313.pyc").write_bytes(b"")
    out = install("--plug-ins", str(plug_ins), "--uninstall")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in plug_ins.iterdir()) == ["someone-else"]
    assert other.exists()


def test_install_refuses_a_folder_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "paintbridge").mkdir()
    (tmp_path / "paintbridge" / "mine.txt").write_text("keep")
    out = install("--plug-ins", str(tmp_path))
    assert out.returncode == 1 and "not installed by paintbridge" in out.stderr
    assert (tmp_path / "paintbridge" / "mine.txt").read_text() == "keep"
    out = install("--plug-ins", str(tmp_path), "--uninstall")
    assert out.returncode == 1 and "nothing to uninstall" in out.stderr


def test_default_folder_per_os(monkeypatch, tmp_path: Path) -> None:
    from paintbridge.backend.install import gimp

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert gimp.default_plug_ins() == tmp_path / "cfg" / "GIMP" / "3.0" / "plug-ins"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    assert gimp.default_plug_ins() == tmp_path / "roaming" / "GIMP" / "3.0" / "plug-ins"


def test_the_plug_in_has_no_parameter_table_of_its_own() -> None:
    """The procedures' generation arguments come from plugin/params.py alone: no source of the
    plug-in registers or reads a row's argument by name, spells a row's or a sampler's label,
    or lists rows or samplers, so a new row or sampler needs no GIMP change. The plug-in
    cannot import gi here, so its sources are read."""
    rows = {p.arg_name for p in PARAMS} | {p.name for p in PARAMS} | set(SAMPLERS) | {"cfg"}
    labels = {p.label for p in PARAMS} | set(SAMPLERS.values())
    for source in sorted(SCRIPT.parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            where = f"{source.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in BY_NAME_CALLS and node.args:
                first = node.args[0]
                assert not (isinstance(first, ast.Constant) and first.value in rows), where
            elif isinstance(node, ast.Constant):
                assert node.value not in labels and node.value != "cfg", where
            elif isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)):
                items = node.keys if isinstance(node, ast.Dict) else node.elts
                listed = {n.value for n in items if isinstance(n, ast.Constant)} & rows
                assert len(listed) < 2, f"{where} lists {sorted(listed)}"


def fake_wheel(folder: Path, version: str) -> Path:
    """A stand-in for PyPI's pyzmq wheel, so that vendoring is tested offline."""
    import zipfile

    folder.mkdir()
    wheel = folder / f"pyzmq-{version}-cp312-abi3-manylinux_2_28_x86_64.whl"
    info = f"pyzmq-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("zmq/__init__.py", "FAKE = True\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: pyzmq\nVersion: "
                                       f"{version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
                                    "Tag: cp312-abi3-manylinux_2_28_x86_64\n")
        z.writestr(f"{info}/RECORD", "")
    return wheel


def test_vendors_pyzmq_for_a_bundled_python(tmp_path: Path, monkeypatch) -> None:
    """Where GIMP bundles its own Python, the matching wheel is unpacked into vendor/ (which
    paintbridge.py puts on sys.path), recorded, and removed by --uninstall."""
    from importlib import metadata

    wheels = fake_wheel(tmp_path / "wheels", metadata.version("pyzmq")).parent
    monkeypatch.setenv("PAINTBRIDGE_GIMP_PYTHON", "3.12 manylinux_2_28_x86_64")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    plug_ins = tmp_path / "plug-ins"
    out = install("--plug-ins", str(plug_ins))
    assert out.returncode == 0, out.stderr
    assert "vendored pyzmq-" in out.stdout
    vendored = plug_ins / "paintbridge" / "vendor" / "zmq" / "__init__.py"
    assert vendored.read_text() == "FAKE = True\n"
    assert 'os.path.join(HERE, "vendor")' in SCRIPT.read_text()
    assert install("--plug-ins", str(plug_ins), "--uninstall").returncode == 0
    assert list(plug_ins.iterdir()) == []


def test_vendoring_failure_is_reported(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PAINTBRIDGE_GIMP_PYTHON", "3.12 manylinux_2_28_x86_64")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    out = install("--plug-ins", str(tmp_path / "plug-ins"))
    assert out.returncode == 1 and "could not download pyzmq" in out.stderr


def test_the_plug_in_has_no_control_table_of_its_own() -> None:
    """The control arguments come from plugin/controls.py alone: no source of the plug-in
    spells a control key's argument, label or choice, so a new key (one row of
    controls.FIELDS) is a GIMP argument without a change in gimp/."""
    spelled = {f"control-{f.name.replace('_', '-')}" for f in controls.FIELDS}
    spelled |= {f.label for f in controls.FIELDS} | {f.help for f in controls.FIELDS}
    spelled |= {c for f in controls.FIELDS if f.choices for c in f.choices}
    spelled |= {label for f in controls.FIELDS if f.choices for label in f.choices.values()}
    found = []
    for source in sorted(SCRIPT.parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and node.value in spelled:
                found.append(f"{source.name}:{node.lineno}: {node.value!r}")
    assert found == []

"""`paintbridge install krita`: what it lays into pykrita, kritarc, pyzmq, and --uninstall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from paintbridge.backend.install import krita as ik
from paintbridge.backend.install.common import pip_download_command

REPO = Path(__file__).resolve().parent.parent


def _run(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {"XDG_CONFIG_HOME": str(tmp / "config"), "HOME": str(tmp), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", "install", "krita",
                           "--resources", str(tmp / "res"), *extra], env=env,
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_install_layout_and_uninstall_removes_exactly_that(tmp_path: Path) -> None:
    res = tmp_path / "res"
    (res / "pykrita" / "other").mkdir(parents=True)            # someone else's plugin
    (res / "pykrita" / "other.desktop").write_text("x")
    rc = tmp_path / "config" / "kritarc"
    rc.parent.mkdir()
    rc.write_text("[General]\nfoo=1\n\n[python]\nenable_other=true\n\n[Theme]\nTheme=Dark\n")
    before = _tree(tmp_path)

    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    pk = res / "pykrita"
    assert (pk / "paintbridge.desktop").is_file()
    assert not (pk / "__init__.py").exists()
    for name in ("__init__.py", "docker.py", "document.py", "extension.py", "connection.py",
                 "form.py", "rows.py", "widgets.py",
                 "plugin/__init__.py", "plugin/client.py", "plugin/session.py",
                 "plugin/controller.py", "plugin/editors.py", "plugin/offers.py",
                 "plugin/localdaemon.py", "paintbridge-install.json"):
        assert (pk / "paintbridge" / name).is_file(), name
    assert "Ctrl+Shift+Return" in (res / "actions" / "paintbridge.action").read_text()
    record = json.loads((pk / "paintbridge" / "paintbridge-install.json").read_text())
    assert Path(record["command"][0]).exists()
    text = rc.read_text()
    assert "[python]\nenable_other=true\nenable_paintbridge=true\n" in text
    assert text.startswith("[General]\nfoo=1\n") and "[Theme]\nTheme=Dark" in text

    assert _run(tmp_path).returncode == 0                      # reinstall over itself
    assert _run(tmp_path, "--uninstall").returncode == 0
    assert _tree(tmp_path) == before
    assert rc.read_text() == ("[General]\nfoo=1\n\n[python]\nenable_other=true\n\n"
                              "[Theme]\nTheme=Dark\n")
    assert _run(tmp_path, "--uninstall").returncode == 1       # nothing left to remove


def test_uninstall_into_fresh_folders_leaves_nothing(tmp_path: Path) -> None:
    assert _run(tmp_path).returncode == 0
    assert (tmp_path / "config" / "kritarc").read_text() == "[python]\nenable_paintbridge=true\n"
    assert _run(tmp_path, "--uninstall").returncode == 0
    assert not (tmp_path / "res").exists()
    assert not (tmp_path / "config" / "kritarc").exists()


def test_rc_key_restores_previous_value() -> None:
    text = "[python]\nenable_paintbridge=false\n"
    new, old = ik.set_rc_key(text, "python", "enable_paintbridge", "true")
    assert (new, old) == ("[python]\nenable_paintbridge=true\n", "false")
    assert ik.set_rc_key(new, "python", "enable_paintbridge", old)[0] == text


def test_default_folders_per_os() -> None:
    env = {"HOME": "/h", "APPDATA": "C:/A", "LOCALAPPDATA": "C:/L"}
    assert ik.default_resources("linux", env) == Path("/h/.local/share/krita")
    assert ik.default_resources("linux", {**env, "XDG_DATA_HOME": "/x"}) == Path("/x/krita")
    assert ik.default_resources("win32", env) == Path("C:/A/krita")
    assert ik.default_resources("darwin", env) == Path("/h/Library/Application Support/krita")
    assert ik.default_kritarc("linux", env) == Path("/h/.config/kritarc")
    assert ik.default_kritarc("win32", env) == Path("C:/L/kritarc")
    assert ik.default_kritarc("darwin", env) == Path("/h/Library/Preferences/kritarc")


def test_pip_download_command_for_bundled_python() -> None:
    cmd = pip_download_command("3.10", ik.WHEEL_PLATFORMS["win32"], Path("/d"), python="py")
    assert cmd == ["py", "-m", "pip", "download", "--only-binary", ":all:", "--no-deps",
                   "--implementation", "cp", "--python-version", "3.10",
                   "--platform", "win_amd64", "--dest", "/d", "pyzmq"]
    mac = pip_download_command("3.10", ik.WHEEL_PLATFORMS["darwin"], Path("/d"))
    assert mac.count("--platform") == 4 and "macosx_10_15_universal2" in mac


def test_missing_zmq_prints_apt_command(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ik, "system_python_has_zmq", lambda *a: False)
    assert ik.install(tmp_path / "res", tmp_path / "kritarc", platform="linux") == 0
    assert "sudo apt-get install python3-zmq" in capsys.readouterr().err

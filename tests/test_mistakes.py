"""The mistakes users make on the command line: one line, ``paintbridge: …``, a documented
exit code, never a traceback. Each case runs the real command in a fresh process."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paintbridge.backend.cli import ExitCode
from paintbridge.backend.door import keys

from .conftest import DaemonProc, start_daemon


def run(*args: str, env: dict[str, str] | None = None, shell: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    base = dict(os.environ, **(env or {}))
    if shell is not None:   # a pipeline, as a user types it
        cmd = ["bash", "-o", "pipefail", "-c",
               f"{shlex.quote(sys.executable)} -m paintbridge.backend {shell}"]
    else:
        cmd = [sys.executable, "-m", "paintbridge.backend", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=base, cwd=cwd)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("paintbridge: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("args, env, code, words", [
    (["models", "--endpoint", "garbage"], {}, ExitCode.USAGE,
     "--endpoint 'garbage' is not an endpoint: write tcp://HOST:PORT"),
    (["models"], {"PAINTBRIDGE_ENDPOINT": "http://x:1"}, ExitCode.USAGE,
     "$PAINTBRIDGE_ENDPOINT 'http://x:1': unknown transport 'http'"),
    (["models", "--endpoint", "tcp://127.0.0.1:1", "--server-key", "/nowhere/server.key",
      "--client-key", "/nowhere/me.key_secret"], {}, ExitCode.USAGE,
     "client key /nowhere/me.key_secret: no such file"),
    (["edit", "in.png", "-o", "out.png", "--prompt", "p", "--endpoint", "tcp://host"], {},
     ExitCode.USAGE, "'tcp://host' needs a host and a port"),
    (["serve", "--bind", "garbage", "--no-embedded"], {}, ExitCode.USAGE,
     "--bind 'garbage' is not an endpoint"),
    (["serve", "--no-embedded"], {"PAINTBRIDGE_ENDPOINT": "tcp://*:0x10"}, ExitCode.USAGE,
     "$PAINTBRIDGE_ENDPOINT 'tcp://*:0x10' needs a host and a port"),
    (["install", "krita", "--resources", "FILE"], {}, ExitCode.USAGE,
     "--resources FILE is a file: give the folder"),
    (["install", "gimp", "--plug-ins", "FILE"], {}, ExitCode.USAGE,
     "--plug-ins FILE is a file: give the folder"),
    (["keys", "show", "--dir", "KEYS"], {}, ExitCode.USAGE,
     "no server keys in KEYS: run `paintbridge keys server`"),
    (["keys", "client", "bob smith", "--dir", "KEYS"], {}, ExitCode.USAGE,
     "'bob smith': a client name is 1-64 letters, digits, - and _"),
    (["keys", "client", "../bob", "--dir", "KEYS"], {}, ExitCode.USAGE, "a client name is"),
    (["keys", "client", "--dir", "KEYS"], {}, ExitCode.USAGE, "keys client needs a NAME"),
    (["keys", "server", "bob", "--dir", "KEYS"], {}, ExitCode.USAGE, "takes no name"),
])
def test_mistakes_get_one_line_and_an_exit_code(tmp_path: Path, args: list[str],
                                                env: dict[str, str], code: int,
                                                words: str) -> None:
    (tmp_path / "FILE").write_text("a file, not a folder")
    places = {"FILE": str(tmp_path / "FILE"), "KEYS": str(tmp_path / "keys")}
    args = [places.get(a, a) for a in args]
    done = run(*args, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg"), **env}, cwd=tmp_path)
    assert done.returncode == code, done.stderr
    for token, place in places.items():
        words = words.replace(token, place)
    assert words in one_line(done)
    assert not (tmp_path / "keys" / "authorized").exists()   # a refused name leaves nothing


def test_keys_client_prints_commands_a_shell_takes_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keys.create_server(folder)
    server_key = keys.server_public_key(folder)
    done = run("keys", "client", "bob-laptop", "--dir", str(folder))
    assert done.returncode == 0
    line = next(x for x in done.stdout.splitlines() if "--server-key" in x)
    words = shlex.split(line)       # what the shell passes on, quotes removed
    assert words[words.index("--server-key") + 1] == server_key
    assert words[words.index("--client-key") + 1] == "bob-laptop.key_secret"


def test_keys_show_into_head_ends_quietly(tmp_path: Path) -> None:
    """More output than a pipe holds, so that `head` surely closes it early."""
    folder = tmp_path / "keys"
    keys.create_server(folder)
    _, public = keys.create_client(folder, "first")
    for i in range(4000):
        shutil.copy(public, folder / "authorized" / f"client-{i:04d}.key")
    done = run(shell=f"keys show --dir {shlex.quote(str(folder))} | head -1")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("server public key: ")


def test_models_with_nothing_usable_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    (empty / "old.ckpt").write_bytes(b"never opened")
    d: DaemonProc = start_daemon(tmp_path, "--models", str(empty), "--no-embedded")
    try:
        done = run("models", "--endpoint", d.endpoint)
    finally:
        d.stop()
    assert done.returncode == ExitCode.FAILED
    assert "old.ckpt" in done.stdout and "not loaded: pickle files (.ckpt) are unsafe" \
        in done.stdout
    assert "the daemon has no usable model: start it with --models DIR" in one_line(done)
    assert "1 thread)" in d.output()    # not "1 threads"


@pytest.mark.fast
def test_help_texts_say_ranges_and_defaults_from_the_table() -> None:
    from paintbridge.backend.cli import build_parser
    from paintbridge.plugin.params import PARAMS

    parser = build_parser()
    top = parser.format_help()
    assert "``" not in top and "exit codes:" in top and "130" in top
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    edit = {a.dest: a for a in sub["edit"]._actions}
    assert edit["loras"].option_strings == ["--lora", "--loras"]
    for row in PARAMS:
        text = edit[row.name].help or ""
        assert row.range_text() in text and row.default_text() in text, (row.name, text)
        expected = None if row.unset is not None else row.start
        assert edit[row.name].default == expected, row.name
    assert "(0–512; default 4)" in edit["grow"].help
    assert "-1: random; default -1" in edit["seed"].help
    assert ".patch.png" in edit["output"].help and "OUT-1" in edit["output"].help
    for name in ("keys", "edit", "serve", "models", "install"):
        assert "``" not in sub[name].format_help(), name
    keys_help = sub["keys"].format_help()
    assert "client NAME" in keys_help and "letters, digits" in keys_help
    assert "$PAINTBRIDGE_ENDPOINT" in sub["serve"].format_help()

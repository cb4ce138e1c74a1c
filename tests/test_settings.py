"""Mistakes in the config file and the options: one line naming what to fix, exit 2, no
traceback, and nothing started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paintbridge.backend import cli
from paintbridge.backend.settings import ConfigError, check

WHERE = Path("/etc/paintbridge.json")


@pytest.mark.fast
@pytest.mark.parametrize("data, words", [
    ({"model_dirs": "/a/path"}, "'model_dirs' must be a list of paths"),
    ({"cache_size": "two"}, "'cache_size' must be a whole number"),
    ({"cache_size": 0}, "'cache_size' must be a whole number of at least 1"),
    ({"threads": True}, "'threads' must be a whole number"),
    ({"models": [{"name": "x"}]}, "entry 1 needs a \"path\""),
    ({"models": {"path": "/x"}}, "'models' must be a list"),
    ({"models": [{"path": "/x", "conifg": "/y"}]}, "unknown key(s) conifg"),
    ({"dtype": "fp16"}, "'dtype' must be auto, float32, float16 or bfloat16"),
    ({"bind": ""}, "'bind' must be a non-empty string"),
    ({"replicas": 0}, "'replicas' must be a whole number of at least 1"),
    ({"replica_gpus": "one"}, "'replica_gpus' must be a number from 0 to 64"),
    ({"cluster": 6379}, "'cluster' must be a non-empty string"),
    ([1, 2], "must hold a JSON object"),
])
def test_wrong_values_name_the_file_and_key(data: object, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check(data, WHERE)
    assert words in str(exc.value) and str(WHERE) in str(exc.value)


@pytest.mark.fast
def test_unknown_keys_are_reported_and_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    good = {"model_dirs": ["/m"], "default_model": None, "threads": None, "cache_size": 2,
            "models": [{"path": "/x.safetensors", "name": "x", "config": "/c"}]}
    assert check({**good, "default_modle": "x"}, WHERE) == good
    assert "unknown key 'default_modle'" in capsys.readouterr().err


@pytest.mark.fast
@pytest.mark.parametrize("argv, words", [
    (["serve", "--threads", "-1"], "is less than 1"),
    (["serve", "--cache-size", "two"], "is not a whole number"),
    (["serve", "--replica-gpus", "-1"], "is not between 0 and 64"),
    (["models", "--timeout", "0"], "must be more than 0 seconds"),
    (["edit", "a.png", "-o", "b.png", "--prompt", "p", "--job-timeout", "-5"],
     "must be more than 0 seconds"),
])
def test_option_ranges_are_usage_errors(argv: list[str], words: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == cli.ExitCode.USAGE and words in capsys.readouterr().err


def _serve(tmp_path: Path, *args: str, config: object | None = None
           ) -> subprocess.CompletedProcess:
    if config is not None:
        (tmp_path / "config.json").write_text(
            config if isinstance(config, str) else json.dumps(config))
        args = ("--config", str(tmp_path / "config.json"), *args)
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", "serve", "--bind",
                           "tcp://127.0.0.1:1", *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                               "XDG_CONFIG_HOME": str(tmp_path / "xdg")})


@pytest.mark.parametrize("case", ["model_dirs", "models_entry", "not_json", "missing_folder",
                                  "unknown_default", "missing_config", "replicas_alone"])
def test_serve_refuses_with_one_line(tmp_path: Path, case: str) -> None:
    done = {
        "model_dirs": lambda: _serve(tmp_path, config={"model_dirs": "/"}),
        "models_entry": lambda: _serve(tmp_path, config={"models": [{"name": "x"}]}),
        "not_json": lambda: _serve(tmp_path, config="{models: 1}"),
        "missing_folder": lambda: _serve(tmp_path, "--models", str(tmp_path / "nowhere")),
        "unknown_default": lambda: _serve(tmp_path, "--default-model", "dreamshaper"),
        "missing_config": lambda: _serve(tmp_path, "--config", str(tmp_path / "none.json")),
        "replicas_alone": lambda: _serve(tmp_path, config={"replicas": 4, "cluster": None}),
    }[case]()
    words = {"model_dirs": "'model_dirs' must be a list of paths",
             "models_entry": "needs a \"path\"", "not_json": "is not valid JSON",
             "missing_folder": "no such folder",
             "unknown_default": "'dreamshaper' is not a usable model here (usable: default)",
             "missing_config": "not found",
             "replicas_alone": "--replicas and --replica-gpus need --cluster"}[case]
    assert done.returncode == cli.ExitCode.USAGE, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and "daemon on" not in done.stdout


@pytest.mark.fast
def test_the_docs_table_is_written_from_the_settings_table() -> None:
    """docs/daemon.md's copy is the table's own; `scripts/settings_table.py` rewrites it."""
    from paintbridge.backend.settings import markdown_table

    page = (Path(__file__).resolve().parents[1] / "docs" / "daemon.md").read_text()
    assert markdown_table() in page, "run .venv/bin/python scripts/settings_table.py"


@pytest.mark.fast
def test_a_new_setting_is_one_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """One row gives the option, the config key with its rule, the resolved value (the
    command line over the file over the default) and the docs' line."""
    from paintbridge.backend import settings

    row = settings.Setting("warmup_jobs", "jobs run at start to warm the caches",
                           settings._positive, "--warmup-jobs", settings.at_least_one,
                           default=0)
    monkeypatch.setattr(settings, "SETTINGS", (*settings.SETTINGS, row))
    monkeypatch.setitem(settings.BY_KEY, row.key, row)
    parser = cli.build_parser()
    args = parser.parse_args(["serve", "--warmup-jobs", "3"])
    assert settings.resolve(args, {"warmup_jobs": 5})["warmup_jobs"] == 3
    plain = parser.parse_args(["serve"])
    assert settings.resolve(plain, settings.check({"warmup_jobs": 5}, WHERE))["warmup_jobs"] == 5
    assert settings.resolve(plain, {})["warmup_jobs"] == 0
    with pytest.raises(ConfigError, match="'warmup_jobs' must be a whole number"):
        settings.check({"warmup_jobs": "many"}, WHERE)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--warmup-jobs", "0"])
    assert "| `--warmup-jobs` | `warmup_jobs` | 0 | jobs run at start" in settings.markdown_table()

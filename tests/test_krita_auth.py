"""The docker's Connection settings in the real Krita against a daemon started with
``--auth``: keys set through the widgets connect and Generate works; no keys, an
unauthorized key or an unreadable key file give a clear error and leave the image as it was.
The server key, client key file and a stable client id persist in kritarc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from paintbridge.backend.door import keys
from tests.conftest import TinyModels, start_daemon
from tests.krita.harness import HERE, KritaHome, require_krita, run_krita_gui

LIMIT = 200


@pytest.fixture(scope="module")
def auth_ui(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_krita(full=True)
    home = KritaHome(tmp_path_factory.mktemp("krita-auth"))
    home.install()
    good, other = home.root / "keys", home.root / "other-keys"
    keys.create_server(good)
    right_key, _ = keys.create_client(good, "krita")
    keys.create_server(other)
    wrong_key, _ = keys.create_client(other, "mallory")       # well formed, never authorized
    bad_key = home.root / "not-a-key.key_secret"
    bad_key.write_text("this is not a certificate\n")
    daemon = start_daemon(home.root, "--auth", "--keys", str(good), "--models",
                          str(tiny_models.models_dir), "--no-embedded", "--default-model",
                          "tiny-inpainting", wait=False)
    out = home.root / "out"
    out.mkdir()
    cfg = {"out": str(out), "limit": LIMIT - 20, "server_key": keys.server_public_key(good),
           "right_key": str(right_key), "wrong_key": str(wrong_key), "bad_key": str(bad_key)}
    test_cfg = home.root / "test.json"
    test_cfg.write_text(json.dumps(cfg))
    env = home.env(PAINTBRIDGE_ENDPOINT=daemon.endpoint,
                   PAINTBRIDGE_KRITA_TEST_DRIVER=str(HERE / "auth_driver.py"),
                   PAINTBRIDGE_KRITA_TEST_CONFIG=str(test_cfg))
    try:
        rc, log = run_krita_gui(home, env, LIMIT)
    finally:
        daemon.stop()
    path = out / "result.json"
    assert path.is_file(), f"krita rc={rc}, no result:\n{log[-4000:]}"
    result = json.loads(path.read_text())
    result.update(_rc=rc, _log=log[-4000:], _cfg=cfg, _daemon=daemon.output()[-2000:])
    rc_file = home.config / "kritarc"
    result["_kritarc"] = rc_file.read_text(errors="replace") if rc_file.is_file() else ""
    return result


def test_auth_script_completed(auth_ui: dict[str, Any]) -> None:
    assert auth_ui.get("ok"), auth_ui.get("error", "") + "\n" + auth_ui["_log"]
    assert auth_ui["_rc"] == 0 and auth_ui["docker_found"]
    assert "CurveZMQ on" in auth_ui["_daemon"]


@pytest.mark.parametrize("case", ["plain", "wrong", "bad"])
def test_refused_keys_say_so_and_change_nothing(auth_ui: dict[str, Any], case: str) -> None:
    assert auth_ui.get("ok"), auth_ui.get("error")
    expected = {"plain": "requires keys", "wrong": "refused this client's keys",
                "bad": "Keys not usable"}[case]
    assert "Not connected" in auth_ui[f"status_{case}"], auth_ui[f"status_{case}"]
    assert expected in auth_ui[f"status_{case}"]
    assert expected in auth_ui[f"message_{case}"], auth_ui[f"message_{case}"]
    assert auth_ui[f"idle_{case}"] and auth_ui[f"unchanged_{case}"]


def test_unreadable_key_file_is_reported_at_once(auth_ui: dict[str, Any]) -> None:
    assert auth_ui.get("ok"), auth_ui.get("error")
    assert auth_ui["key_error"].startswith("Keys not usable: ")
    assert "client key" in auth_ui["key_error"]
    assert auth_ui["message_bad_set"] == auth_ui["key_error"]


def test_right_keys_connect_and_generate(auth_ui: dict[str, Any]) -> None:
    assert auth_ui.get("ok"), auth_ui.get("error")
    assert auth_ui["box_hidden_at_start"] and auth_ui["box_shown"]
    assert auth_ui["box_opened_by_refusal"]   # Generate refused: the keys are shown
    assert auth_ui["server_key_typed"]
    assert auth_ui["client_key_picked"] == auth_ui["_cfg"]["right_key"]
    assert auth_ui["key_error_ok"] is None
    assert "Connected to" in auth_ui["status_ok"] and "CurveZMQ" in auth_ui["status_ok"]
    assert auth_ui["layers_ok"] == [["Background", "paintlayer", True],
                                    ["a blue pear [seed 7]", "paintlayer", True]]
    c = auth_ui["compare_ok"]
    assert c["inside_changed"] > 0.9 * c["inside_total"] and c["outside_changed"] == 0, c
    assert auth_ui["source_identical_ok"]
    assert Path(auth_ui["_cfg"]["out"], "docker-auth.png").is_file()


def test_keys_and_client_id_persist(auth_ui: dict[str, Any]) -> None:
    assert auth_ui.get("ok"), auth_ui.get("error")
    saved, cfg = auth_ui["saved"], auth_ui["_cfg"]
    assert saved["server_key"] == cfg["server_key"]
    assert saved["client_key"] == cfg["right_key"]
    assert len(saved["client_id"]) == 32 and saved["client_id"] == auth_ui["session_client_id"]
    section = auth_ui["_kritarc"].split("[paintbridge]", 1)[-1]
    assert f"client_id={saved['client_id']}" in section
    assert "server_key=" in section and f"client_key={cfg['right_key']}" in section

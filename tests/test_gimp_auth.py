"""The GIMP 3 plug-in against a daemon that requires CurveZMQ keys (``serve --auth``), in the
real GIMP 3.0.4 of tests/test_gimp.py's trixie chroot.

The keys are made on the host, as `paintbridge keys` would; the client's secret key file is
copied into the chroot, since GIMP (the client machine here) can only open files it sees,
and the procedures get that chroot-side path. tests/gimp/cases.py (PB_SUITE=auth) calls
paintbridge-inpaint with each set of keys; the tests here judge what it recorded.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from paintbridge.backend.door import keys
from paintbridge.plugin.shared import SECURITY_DOC

from .conftest import start_daemon
from .gimp.harness import (
    assert_changed_inside_only,
    assert_one_result_above,
    assert_untouched,
    ensure_chroot,
    fresh_profile,
    result,
    run_gimp,
)
from .test_gimp import pytestmark  # noqa: F401  (the same skip without root)


def wait_for_keyed_daemon(endpoint: str, server_key: str, client_key: Path, proc: Any,
                          timeout: float = 90) -> None:
    from paintbridge.plugin.client import Client, DaemonError

    deadline = time.monotonic() + timeout
    with Client(endpoint, server_key=server_key, client_key=client_key) as client:
        while True:
            try:
                client.hello(timeout=0.5)
                return
            except DaemonError:
                assert proc.poll() is None, "the --auth daemon exited"
                assert time.monotonic() < deadline, "the --auth daemon did not answer"


@pytest.fixture(scope="module")
def auth(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Keys, a fresh GIMP profile with the plug-in, an --auth daemon on the tiny model, and
    both GIMP runs (keys as arguments; keys from the environment)."""
    chroot = ensure_chroot()
    host_keys = tmp_path_factory.mktemp("gimp-keys")
    other_keys = tmp_path_factory.mktemp("gimp-other-keys")
    keys.create_server(host_keys)
    secret, public = keys.create_client(host_keys, "gimp-box")
    keys.create_server(other_keys)
    wrong, _ = keys.create_client(other_keys, "mallory")    # well-formed, never authorized
    server_key = keys.server_public_key(host_keys)
    work, inside, _ = fresh_profile(chroot, "paintbridge-auth-")
    log_dir = tmp_path_factory.mktemp("gimp-auth")
    daemon = None
    try:
        key_dir = work / "home" / "keys"     # the client machine's copy of its keys
        key_dir.mkdir(parents=True)
        for src in (secret, wrong, public):
            shutil.copy(src, key_dir / src.name)
        daemon = start_daemon(log_dir, "--auth", "--keys", str(host_keys), "--models",
                              str(tiny_models.models_dir), "--default-model",
                              "tiny-inpainting", "--no-embedded", wait=False)
        wait_for_keyed_daemon(daemon.endpoint, server_key, secret, daemon.proc)
        env = {"PB_ENDPOINT": daemon.endpoint, "PB_SUITE": "auth",
               "PB_SERVER_KEY": server_key,
               "PB_CLIENT_KEY": f"{inside}/home/keys/{secret.name}",
               "PB_WRONG_CLIENT_KEY": f"{inside}/home/keys/{wrong.name}",
               "PB_PUBLIC_CLIENT_KEY": f"{inside}/home/keys/{public.name}",
               "PB_MISSING_CLIENT_KEY": f"{inside}/home/keys/nobody.key_secret"}
        runs: dict[str, Any] = {}
        for name, extra in (("args", {}),
                            ("env", {"PB_ENV_KEYS": "1",
                                     "PAINTBRIDGE_SERVER_KEY": server_key,
                                     "PAINTBRIDGE_CLIENT_KEY": env["PB_CLIENT_KEY"]})):
            run = run_gimp(chroot, inside, f"{inside}/cases.py",
                           {**env, **extra, "PB_RESULTS": f"auth-{name}.json"})
            (log_dir / f"gimp-auth-{name}.log").write_text(run.stdout + run.stderr)
            out = work / f"auth-{name}.json"
            assert out.exists(), f"GIMP wrote no results:\n{run.stderr[-4000:]}"
            runs.update(json.loads(out.read_text()))
        yield {"results": runs, "daemon": daemon}
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


def assert_nothing_added(res: dict[str, Any]) -> None:
    assert_untouched(res)
    assert [n["name"] for n in res["tree"]] == ["top", "bottom"]
    assert res["changes"]["inside"] == 0 and res["changes"]["outside"] == 0


@pytest.mark.parametrize("case", ["right_keys", "env_keys"])
def test_authorized_keys_inpaint(auth: dict[str, Any], case: str) -> None:
    """The daemon's public key and an authorized client key, as arguments or from
    PAINTBRIDGE_SERVER_KEY / PAINTBRIDGE_CLIENT_KEY: the job runs, one layer is added."""
    res = result(auth, case)
    assert res["status"] == "success", res["message"]
    assert_untouched(res)
    assert assert_one_result_above(res, "bottom") == "a red apple [seed 7]"
    assert_changed_inside_only(res)
    assert "CurveZMQ on" in auth["daemon"].output()


@pytest.mark.parametrize(("case", "says"), [
    ("unauthorized_key", ["refused this client's keys", "authorizes this client"]),
    ("no_keys", ["requires keys", "PAINTBRIDGE_SERVER_KEY"]),
    ("no_client_key", ["Keys not usable", "needs a client key file"]),
    ("missing_key_file", ["Keys not usable", "nobody.key_secret: no such file"]),
    ("public_key_file", ["Keys not usable", "holds no secret key"]),
    ("bad_server_key", ["Keys not usable", "server key", "40"]),
    ("garbled_server_key", ["Keys not usable", "server key", "Z85"]),
])
def test_refused_or_unusable_keys_are_an_error(auth: dict[str, Any], case: str,
                                               says: list[str]) -> None:
    """Keys the daemon does not admit, or keys that cannot be used: an error status whose
    message says what is wrong, and the image exactly as it was."""
    res = result(auth, case)
    assert res["status"] == "execution-error", res
    for words in says:
        assert words in res["message"], res["message"]
    assert SECURITY_DOC in res["message"], res["message"]    # where to read more
    assert_nothing_added(res)

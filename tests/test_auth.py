"""CurveZMQ: only clients whose public key is authorized reach the daemon; the rest cannot
even say hello, let alone submit a job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq

from paintbridge.backend.door import keys
from paintbridge.plugin.client import Client, DaemonError, Frame, JobRequest, JobState

from .conftest import free_port, start_daemon


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "paintbridge.backend", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    good = tmp_path_factory.mktemp("keys")
    other = tmp_path_factory.mktemp("other-keys")
    out = cli("keys", "server", "--dir", str(good))
    assert out.returncode == 0 and "server public key" in out.stdout, out.stderr
    assert cli("keys", "client", "alice", "--dir", str(good)).returncode == 0
    # mallory has a well-formed keypair that nobody authorized
    keys.create_server(other)
    keys.create_client(other, "mallory")
    return {"good": good, "other": other}


@pytest.fixture(scope="module")
def secure_daemon(tiny_models, key_dirs, tmp_path_factory):
    d = start_daemon(tmp_path_factory.mktemp("secure"), "--auth", "--keys",
                     str(key_dirs["good"]), "--models", str(tiny_models.models_dir),
                     "--no-embedded", wait=False)
    server_key = keys.server_public_key(key_dirs["good"])
    alice = key_dirs["good"] / "clients" / "alice.key_secret"
    with Client(d.endpoint, server_key=server_key, client_key=alice) as client:
        for _ in range(300):
            try:
                client.hello(timeout=0.5)
                break
            except DaemonError:
                assert d.proc.poll() is None, d.output()
    yield d, server_key, alice
    d.stop()


def tiny_job(client: Client) -> JobState:
    img = np.full((32, 32, 4), 200, np.uint8)
    job = client.submit(JobRequest("img2img", {"steps": 2, "seed": 1},
                                   image=Frame(32, 32, "rgba8", img.tobytes())))
    return client.wait(job, timeout=60).state


def test_authorized_client_works(secure_daemon) -> None:
    d, server_key, alice = secure_daemon
    with Client(d.endpoint, server_key=server_key, client_key=alice) as client:
        assert client.hello()["protocol"] == 1
        assert tiny_job(client) is JobState.DONE
    assert "CurveZMQ on" in d.output()


@pytest.mark.parametrize("who", ["unknown key", "wrong server key", "no keys", "plaintext"])
def test_others_are_refused_and_cannot_submit(secure_daemon, key_dirs, who: str) -> None:
    d, server_key, alice = secure_daemon
    if who == "unknown key":
        client = Client(d.endpoint, server_key=server_key,
                        client_key=key_dirs["other"] / "clients" / "mallory.key_secret")
    elif who == "wrong server key":   # an authorized client, given another daemon's key
        client = Client(d.endpoint, server_key=keys.server_public_key(key_dirs["other"]),
                        client_key=alice)
    elif who == "no keys":
        with pytest.raises(DaemonError, match="client key"):
            Client(d.endpoint, server_key=server_key)
        client = Client(d.endpoint)
    else:
        client = Client(d.endpoint)
    with client:
        with pytest.raises(DaemonError) as info:
            client.hello(timeout=1.5)
        assert info.value.code in ("unreachable", "timeout")
        expected = {"unknown key": "refused this client's keys",
                    "wrong server key": "the server key given is not its public key"
                    }.get(who, "requires keys")
        assert expected in info.value.message
        with pytest.raises(DaemonError):
            tiny_job(client)
    # a raw plaintext socket that pushes a submit anyway gets nothing through
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.endpoint)
    s.send_multipart([b'{"v":1,"op":"submit","job":"x","kind":"txt2img","size":[8,8],'
                      b'"params":{"steps":200,"count":8}}'])
    assert s.poll(1000) == 0
    s.close()
    with Client(d.endpoint, server_key=server_key, client_key=alice) as ok:
        status = ok.status()
        assert status["queued"] == 0 and status["busy"] is False


def test_non_loopback_needs_keys(tmp_path: Path, key_dirs) -> None:
    port = free_port()
    out = cli("serve", "--bind", f"tcp://0.0.0.0:{port}", "--no-embedded", "--keys",
              str(tmp_path / "none"))
    assert out.returncode == 2 and "without authentication" in out.stderr
    assert "paintbridge keys server" in out.stderr


def test_bad_keys_and_endpoints_are_clear_errors(key_dirs, tmp_path: Path) -> None:
    alice = key_dirs["good"] / "clients" / "alice.key_secret"
    garbage = tmp_path / "garbage.key_secret"
    garbage.write_text("not a certificate")
    cases = [({"server_key": "~" * 40, "client_key": alice}, "not a valid Z85"),
             ({"server_key": "short", "client_key": alice}, "40 Z85 characters"),
             ({"server_key": keys.server_public_key(key_dirs["good"]),
               "client_key": garbage}, "No public key found"),
             ({"server_key": keys.server_public_key(key_dirs["good"]),
               "client_key": tmp_path / "missing"}, "missing: no such file"),
             ({"server_key": str(tmp_path / "server.key"), "client_key": alice},
              "server.key: no such file")]
    for options, message in cases:
        with pytest.raises(DaemonError, match=message):
            Client("tcp://127.0.0.1:1", **options)
    with pytest.raises(ValueError, match="unknown transport 'nonsense'"):
        Client("nonsense://where")
    with pytest.raises(ValueError, match="'garbage' is not an endpoint"):
        Client("garbage")


def test_keys_are_authorized_and_revoked_without_a_restart(secure_daemon, key_dirs) -> None:
    """A client authorized while the daemon runs gets in; its key deleted, the connection it
    has is refused at its next request and a new one fails the handshake; others go on."""
    d, server_key, alice = secure_daemon
    secret, _ = keys.create_client(key_dirs["good"], "bob")
    with Client(d.endpoint, server_key=server_key, client_key=secret) as bob:
        assert bob.hello(timeout=10)["protocol"] == 1
        (key_dirs["good"] / "authorized" / "bob.key").unlink()
        with pytest.raises(DaemonError) as exc:
            bob.hello(timeout=10)
        assert exc.value.code == "unauthorized", exc.value.message
    with Client(d.endpoint, server_key=server_key, client_key=secret) as again:
        with pytest.raises(DaemonError):
            again.hello(timeout=2)
    with Client(d.endpoint, server_key=server_key, client_key=alice) as client:
        assert client.hello()["protocol"] == 1

"""Facts every end of paintbridge shares, defined once: which endpoints are local, the
environment names, the user's folders, and the words shown to the user.

Standard library only (the hosts' Pythons import it too). The daemon takes its loopback rule
from here, so "local" means the same thing to ``serve --bind`` and to both host plugins.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

ENDPOINT_ENV = "PAINTBRIDGE_ENDPOINT"
SERVER_KEY_ENV = "PAINTBRIDGE_SERVER_KEY"
CLIENT_KEY_ENV = "PAINTBRIDGE_CLIENT_KEY"
SECURITY_DOC = "docs/security.md"
APP = "paintbridge"


def default_endpoint() -> str:
    """$PAINTBRIDGE_ENDPOINT, else the daemon's default loopback endpoint."""
    from .protocol import DEFAULT_ENDPOINT

    return os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT


def endpoint_problem(endpoint: str) -> str | None:
    """What is wrong with an endpoint the user typed, in words (None: it is well formed).
    Checked before ZeroMQ sees it, so that ``garbage`` is not taken for a remote address."""
    from .protocol import DEFAULT_ENDPOINT

    example = f"write tcp://HOST:PORT (e.g. {DEFAULT_ENDPOINT}) or ipc:///path/to/socket"
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        return f"'{endpoint}' is not an endpoint: {example}"
    if scheme not in ("tcp", "ipc", "inproc"):
        return f"'{endpoint}': unknown transport '{scheme}': {example}"
    if not rest:
        return f"'{endpoint}' names no address: {example}"
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not host or not (port == "*" or port.isdigit()
                                         and 0 < int(port) < 65536):
            return f"'{endpoint}' needs a host and a port from 1 to 65535: {example}"
    return None


def is_loopback(endpoint: str) -> bool:
    """ipc:// and inproc:// are local; tcp:// must name a loopback host ("*", interface
    names and host names other than localhost are not provably loopback)."""
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    try:
        host = urlsplit(endpoint).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """The user's paintbridge folder, the same on every system so that keys made once are
    found by every tool: ``$XDG_CONFIG_HOME/paintbridge``, else ``~/.config/paintbridge``.
    The daemon's ``config.json`` and the ``keys/`` folder live there."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / APP


def keys_dir(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / "keys"


# ---------------------------------------------------------------- words shown to the user


def keys_unusable(detail: str) -> str:
    return (f"Keys not usable: {detail}. The server key is the daemon's public key "
            "(40 characters, or its server.key file); the client key is this machine's "
            f"NAME.key_secret file (see {SECURITY_DOC}).")


def keys_refused(endpoint: str, where: str) -> str:
    """The daemon turned the keys down; ``where`` says where the host takes them."""
    return (f"The daemon at {endpoint} refused this client's keys: check {where}, and that "
            "the daemon authorizes this client (its public key in the daemon's "
            f"keys/authorized folder; see {SECURITY_DOC}).")


def server_key_wrong(endpoint: str, where: str) -> str:
    return (f"The daemon at {endpoint} did not accept the handshake: the server key given is "
            "not its public key (`paintbridge keys show` prints it on the daemon's machine), "
            f"or it runs without keys. Check {where} (see {SECURITY_DOC}).")


def handshake_failed(endpoint: str, where: str, failure: str | None, uses_keys: bool) -> str:
    """Words for a failed handshake: ``failure`` is the client's ``handshake_failure``
    (None when the host saw a refusal that ZeroMQ did not report)."""
    if not uses_keys:
        return keys_required(endpoint, where)
    if failure == "mismatch":
        return server_key_wrong(endpoint, where)
    return keys_refused(endpoint, where)


def keys_required(endpoint: str, where: str) -> str:
    return (f"The daemon at {endpoint} requires keys: give {where} (or set {SERVER_KEY_ENV} "
            f"and {CLIENT_KEY_ENV}; see {SECURITY_DOC}).")


def cluster_text(cluster: dict) -> str:
    """A cluster daemon's workers in a few words (its hello's ``cluster``)."""
    n, gpus = cluster.get("replicas", 0), cluster.get("gpus_per_replica")
    kind = "" if gpus is None else "GPU " if gpus else "CPU "
    return f"a cluster of {n} {kind}worker{'s' if n != 1 else ''}"


def stage_text(stage: str | None, step: int = 0, total: int = 0, model: str | None = None,
               position: int | None = None, retry: int = 0) -> str:
    """A running job's state in a few words, the same in every host; a job run again
    after its worker stopped says so until it ends (the step bar started over)."""
    if stage == "retrying":
        return f"A worker stopped: running the job again (retry {retry})…"
    again = f" (retry {retry}: a worker stopped)" if retry else ""
    if stage == "loading":
        return (f"Loading model {model}…" if model else "Loading the model…") + again
    if stage == "queued":
        return f"Queued ({position} ahead)…" if position else "Queued…"
    if total:
        return f"Step {step}/{total}{again}"
    return "Starting…"

"""The plug-in's connection to the daemon: endpoint and CurveZMQ keys from the procedure's
arguments (or the environment), a session that uses them, and messages that say what to fix
when no daemon answers. No GimpUi here: batch runs import it too."""

from __future__ import annotations

import os
import socket

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402
from paintbridge_errors import PaintbridgeError  # noqa: E402

SERVER_KEY_ENV = "PAINTBRIDGE_SERVER_KEY"    # plugin.client's names
CLIENT_KEY_ENV = "PAINTBRIDGE_CLIENT_KEY"
SECURITY_DOC = "docs/security.md"


def is_loopback(endpoint: str) -> bool:
    host = endpoint.split("://", 1)[-1].rsplit(":", 1)[0]
    return endpoint.startswith("ipc://") or host in ("127.0.0.1", "localhost", "[::1]", "::1")


def connection_from_config(config: Gimp.ProcedureConfig) -> tuple[str, str, str]:
    """(endpoint, server key, client key file) from the arguments, each falling back to its
    environment variable when empty; "" where neither gives one."""
    from plugin.client import default_endpoint

    endpoint = (config.get_property("endpoint") or "").strip() or default_endpoint()
    server_key = ((config.get_property("server-key") or "").strip()
                  or os.environ.get(SERVER_KEY_ENV, "").strip())
    client_key = ((config.get_property("client-key") or "").strip()
                  or os.environ.get(CLIENT_KEY_ENV, "").strip())
    client_key = os.path.expanduser(client_key) if client_key else ""
    return endpoint, server_key, client_key


def open_session(endpoint: str, server_key: str, client_key: str):  # -> Session
    """A session with CurveZMQ when there is a server key (a client key alone is not used,
    as in plugin.client); unusable keys are the plug-in's error, raised before anything is
    sent, so the image stays as it was."""
    from plugin.client import DaemonError
    from plugin.session import Session

    try:
        return Session(endpoint, server_key=server_key or None, client_key=client_key or None)
    except DaemonError as exc:
        raise PaintbridgeError(f"Paintbridge cannot use the keys: {exc.message}. The server "
                               "key is the daemon's public key (40 characters); the client "
                               "key is this machine's NAME.key_secret file (see "
                               f"{SECURITY_DOC}).") from exc
    except ValueError as exc:   # a malformed endpoint
        raise PaintbridgeError(f"Paintbridge: {exc}") from exc


def listening(endpoint: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at a tcp:// endpoint. ZeroMQ does not
    always report a handshake refused for want of keys (the daemon may hang up first), so
    this tells "nothing runs there" from "something runs there and refuses us"."""
    if not endpoint.startswith("tcp://"):
        return False
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def handshake_refused(session) -> bool:
    """The daemon is there but would not complete the handshake (keys refused, or keys
    missing for a daemon that requires them)."""
    client = session.client
    return client.auth_refused or (not client.connected and listening(session.endpoint))


def can_offer_start(endpoint: str, server_key: str, session=None) -> bool:
    """Only a local daemon without keys can be started from the plug-in, and only where
    none runs yet (not where one that requires keys refused us)."""
    if server_key or not is_loopback(endpoint):
        return False
    return session is None or not handshake_refused(session)


def not_connected(session, server_key: str, client_key: str, offered: bool) -> str:
    """Why no daemon answers, and what to do about it."""
    message = f"Paintbridge: {session.last_error}"
    if handshake_refused(session):
        where = f"Paintbridge: the daemon at {session.endpoint}"
        if server_key:
            return (f"{where} refused this client's keys. Check the server key, the client "
                    f"key file ({client_key}) and that the daemon authorizes this client (its "
                    f"public key in the daemon's keys/authorized folder; see {SECURITY_DOC}).")
        return (f"{where} requires keys: give the filter the daemon's server key and this "
                "machine's client key file, or set PAINTBRIDGE_SERVER_KEY and "
                f"PAINTBRIDGE_CLIENT_KEY (see {SECURITY_DOC}).")
    if offered:
        return (f"{message} (or run this filter from the Filters ▸ Paintbridge menu, which "
                "offers to start it).")
    return f"{message}."


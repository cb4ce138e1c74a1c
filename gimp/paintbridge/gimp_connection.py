"""The plug-in's connection to the daemon: the endpoint and CurveZMQ key arguments, their
values (or the environment's), a session that uses them, and messages that say what to fix
when no daemon answers. The rules and words are plugin.hosts's, shared with Krita. No GimpUi
here: batch runs import it too."""

from __future__ import annotations

import os
import socket

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402
from paintbridge_errors import PaintbridgeError  # noqa: E402

from plugin import hosts  # noqa: E402
from plugin.protocol import DEFAULT_ENDPOINT  # noqa: E402

#: the connection's arguments, shown in the dialog's "Daemon" expander
DAEMON_FIELDS = ["endpoint", "server-key", "client-key"]
#: where this host takes the keys, for plugin.hosts's messages
KEYS_WHERE = ("the filter's Server key and Client key arguments (under \"Daemon\" in its "
              "dialog)")
RW = GObject.ParamFlags.READWRITE


def add_arguments(proc: Gimp.Procedure) -> None:
    proc.add_string_argument("endpoint", "Daemon _endpoint", "ZeroMQ endpoint of the daemon; "
                             f"empty: ${hosts.ENDPOINT_ENV} or {DEFAULT_ENDPOINT}", "", RW)
    proc.add_string_argument("server-key", "Ser_ver key", "The daemon's public key (40 Z85 "
                             "characters, printed by `paintbridge serve`, or its server.key "
                             "file) for a daemon that requires keys; empty: "
                             f"${hosts.SERVER_KEY_ENV}, or none for a local daemon", "", RW)
    # A string, not a file argument: GIMP itself refuses a missing file with an unreadable
    # "value out of range", where the plug-in says which file and why; the dialog adds a
    # file chooser button to its entry.
    proc.add_string_argument("client-key", "C_lient key", "This machine's secret key file "
                             "(NAME.key_secret from `paintbridge keys client NAME`); empty: "
                             f"${hosts.CLIENT_KEY_ENV}", "", RW)


def connection_from_config(config: Gimp.ProcedureConfig) -> tuple[str, str, str]:
    """(endpoint, server key, client key file) from the arguments, each falling back to its
    environment variable when empty; "" where neither gives one."""
    from plugin.hosts import default_endpoint

    endpoint = (config.get_property("endpoint") or "").strip() or default_endpoint()
    server_key = ((config.get_property("server-key") or "").strip()
                  or os.environ.get(hosts.SERVER_KEY_ENV, "").strip())
    client_key = ((config.get_property("client-key") or "").strip()
                  or os.environ.get(hosts.CLIENT_KEY_ENV, "").strip())
    client_key = os.path.expanduser(client_key) if client_key else ""
    return endpoint, server_key, client_key


def open_session(endpoint: str, server_key: str, client_key: str):  # -> Session
    """A session with CurveZMQ when there is a server key (a client key alone is not used,
    as in plugin.client); unusable keys are the plug-in's error, raised before anything is
    sent, so the image stays as it was."""
    from plugin.session import Session

    try:
        session = Session(endpoint, server_key=server_key or None,
                          client_key=client_key or None)
    except ValueError as exc:   # a malformed endpoint
        raise PaintbridgeError(f"Paintbridge: {exc}") from exc
    if session.key_error:
        session.close()
        raise PaintbridgeError(f"Paintbridge: {session.key_error}")
    return session


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
    return session.auth_refused or (not session.handshaken and listening(session.endpoint))


def refusal(session) -> str | None:
    """Why the daemon turns this client away, when it is the keys."""
    return session.refusal(KEYS_WHERE, refused=handshake_refused(session))


def can_offer_start(endpoint: str, server_key: str, session=None) -> bool:
    """Only a local daemon without keys can be started from the plug-in, and only where
    none runs yet (not where one that requires keys refused us)."""
    if server_key or not hosts.is_loopback(endpoint):
        return False
    return session is None or not handshake_refused(session)


def not_connected(session, offered: bool) -> str:
    """Why no daemon answers, and what to do about it."""
    said = refusal(session)
    if said is not None:
        return f"Paintbridge: {said}"
    message = f"Paintbridge: {session.last_error}"
    if offered:
        return (f"{message} (or run this filter from the Filters ▸ Paintbridge menu, which "
                "offers to start it).")
    return f"{message}."

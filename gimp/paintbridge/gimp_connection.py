"""The plug-in's connection to the daemon: the endpoint and CurveZMQ key arguments, their
values (or the environment's), a session that uses them, and messages that say what to fix
when no daemon answers, and :func:`connect`, which brings them together for one run. The rules
and words are plugin.shared's, shared with Krita. No GimpUi here (the dialogs are imported
only when the user is there): batch runs import it too."""

from __future__ import annotations

import os
import socket

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GObject  # noqa: E402

from plugin import shared  # noqa: E402
from plugin.oneshot import PaintbridgeError  # noqa: E402
from plugin.protocol import DEFAULT_ENDPOINT  # noqa: E402

#: the connection's arguments, shown in the dialog's "Daemon" expander
DAEMON_FIELDS = ["endpoint", "server-key", "client-key"]
#: where this host takes the keys, for plugin.shared's messages
KEYS_WHERE = ("the filter's Server key and Client key arguments (under \"Daemon\" in its "
              "dialog)")
RW = GObject.ParamFlags.READWRITE
START_WAIT_S = 120.0     # how long a freshly started daemon may take to answer


def add_arguments(proc: Gimp.Procedure) -> None:
    proc.add_string_argument("endpoint", "Daemon _endpoint", "ZeroMQ endpoint of the daemon; "
                             f"empty: ${shared.ENDPOINT_ENV} or {DEFAULT_ENDPOINT}", "", RW)
    proc.add_string_argument("server-key", "Ser_ver key", "The daemon's public key (40 Z85 "
                             "characters, printed by `paintbridge serve`, or its server.key "
                             "file) for a daemon that requires keys; empty: "
                             f"${shared.SERVER_KEY_ENV}, or none for a local daemon", "", RW)
    # A string, not a file argument: GIMP itself refuses a missing file with an unreadable
    # "value out of range", where the plug-in says which file and why; the dialog adds a
    # file chooser button to its entry.
    proc.add_string_argument("client-key", "C_lient key", "This machine's secret key file "
                             "(NAME.key_secret from `paintbridge keys client NAME`); empty: "
                             f"${shared.CLIENT_KEY_ENV}", "", RW)


def connection_from_config(config: Gimp.ProcedureConfig) -> tuple[str, str, str]:
    """(endpoint, server key, client key file) from the arguments, each falling back to its
    environment variable when empty; "" where neither gives one."""
    from plugin.shared import default_endpoint

    endpoint = (config.get_property("endpoint") or "").strip() or default_endpoint()
    server_key = ((config.get_property("server-key") or "").strip()
                  or os.environ.get(shared.SERVER_KEY_ENV, "").strip())
    client_key = ((config.get_property("client-key") or "").strip()
                  or os.environ.get(shared.CLIENT_KEY_ENV, "").strip())
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
    if server_key or not shared.is_loopback(endpoint):
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


def connect(procedure: Gimp.Procedure, config: Gimp.ProcedureConfig,
            run_mode: Gimp.RunMode):  # -> Session | None
    """A session whose daemon answers, or None when the user cancelled. From the menu (a
    dialog, or Repeat with the last values) a daemon that does not answer is offered to be
    started (loopback, no keys); in the dialog the user can still correct the endpoint and
    the keys, so there a connection problem is shown in it. Scripts and batch runs are never
    asked anything: the problem is their error."""
    with_user = run_mode != Gimp.RunMode.NONINTERACTIVE
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    session, problem, ready = None, None, False
    try:
        connection = connection_from_config(config)
        session = open_session(*connection)
    except PaintbridgeError as exc:
        if not interactive:
            raise
        connection, problem = None, str(exc)
    try:
        if with_user and session is not None and not session.check(timeout=1.0):
            endpoint, server_key, _ = connection
            if can_offer_start(endpoint, server_key, session):
                import gimp_dialogs

                if not gimp_dialogs.offer_daemon(session, endpoint, START_WAIT_S):
                    return None
            elif interactive:
                problem = not_connected(session, False)
            else:
                raise PaintbridgeError(not_connected(session, False))
        if interactive:
            import gimp_dialogs

            if not gimp_dialogs.settings_dialog(procedure, config, session, problem):
                return None
            changed = connection_from_config(config)
            if session is None or changed != connection:
                if session is not None:
                    session.close()
                    session = None
                connection = changed
                session = open_session(*connection)
        endpoint, server_key, _ = connection
        if not session.connected and not session.check(timeout=2.0):
            raise PaintbridgeError(not_connected(session, can_offer_start(endpoint, server_key,
                                                                          session)))
        ready = True
        return session
    finally:
        if session is not None and not ready:
            session.close()

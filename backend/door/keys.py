"""CurveZMQ keys for remote daemons: ``paintbridge keys``.

Layout of the keys folder (default ``~/.config/paintbridge/keys``), in pyzmq's certificate
format (``zmq.auth.create_certificates``):

- ``server.key`` / ``server.key_secret`` — the daemon's keypair; ``server.key`` holds the
  public key that clients are given;
- ``clients/NAME.key`` / ``clients/NAME.key_secret`` — a keypair to copy to one client machine;
- ``authorized/NAME.key`` — the public keys the daemon admits (delete one to revoke it).

Only clients whose public key lies in ``authorized/`` get past ZeroMQ's ZAP handler.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from paintbridge.plugin import shared

#: a client's name becomes file names and appears in commands: keep it shell- and path-safe
CLIENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
CLIENT_NAME_RULE = ("a client name is 1-64 letters, digits, - and _ (not starting with -), "
                    "e.g. bob-laptop")


def check_client_name(name: str) -> str:
    """The name, or ValueError with the rule: the one check for every place that takes one."""
    if not CLIENT_NAME.fullmatch(name or ""):
        raise ValueError(f"{name!r}: {CLIENT_NAME_RULE}")
    return name


def default_dir() -> Path:
    return shared.keys_dir()


@dataclass(frozen=True)
class ServerKeys:
    public: bytes
    secret: bytes
    authorized: Path


class AuthorizedKeys:
    """The public keys in ``authorized/``, read again whenever the folder changes, so that a
    key deleted there is refused from then on without a restart: at the next handshake (the
    ZAP handler asks :meth:`callback`) and at the next request of a connection that is
    already up (the daemon asks :meth:`admits` with the connection's key)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._seen: tuple = ()
        self._keys: frozenset[bytes] = frozenset()
        self.refresh()

    def _listing(self) -> tuple:
        try:
            return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.folder.glob("*.key")))
        except OSError:
            return ()

    def refresh(self) -> None:
        listing = self._listing()
        with self._lock:
            if listing == self._seen:
                return
            try:
                keys = frozenset(zmq.auth.load_certificates(str(self.folder)))
            except (OSError, ValueError):
                keys = frozenset()     # an unreadable folder admits nobody
            self._seen, self._keys = listing, keys

    def admits(self, public_z85: bytes) -> bool:
        self.refresh()
        return public_z85 in self._keys

    def callback(self, domain: str, key: bytes) -> bool:   # pyzmq's credentials provider
        return self.admits(key)


def _private(path: Path) -> None:
    if os.name == "posix":
        path.chmod(0o600)


def create_server(keys_dir: Path, force: bool = False) -> Path:
    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / "authorized").mkdir(exist_ok=True)
    if (keys_dir / "server.key_secret").exists() and not force:
        raise FileExistsError(f"{keys_dir / 'server.key_secret'} exists (use --force to replace "
                              "it; every client then needs the new public key)")
    public, secret = zmq.auth.create_certificates(keys_dir, "server")
    _private(Path(secret))
    return Path(public)


def create_client(keys_dir: Path, name: str) -> tuple[Path, Path]:
    """A client keypair, its public key authorized at once. Returns (secret file, public)."""
    check_client_name(name)
    clients = keys_dir / "clients"
    clients.mkdir(parents=True, exist_ok=True)
    (keys_dir / "authorized").mkdir(exist_ok=True)
    if (clients / f"{name}.key_secret").exists():
        raise FileExistsError(f"client '{name}' exists in {clients}")
    public, secret = zmq.auth.create_certificates(clients, name)
    _private(Path(secret))
    shutil.copy(public, keys_dir / "authorized" / f"{name}.key")
    return Path(secret), Path(public)


def load_server(keys_dir: Path) -> ServerKeys:
    """The daemon's keys; raises FileNotFoundError with the command that creates them."""
    secret_file = keys_dir / "server.key_secret"
    if not secret_file.is_file():
        raise FileNotFoundError(f"no server keys in {keys_dir}: run `paintbridge keys server`")
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    authorized = keys_dir / "authorized"
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise FileNotFoundError(f"no client is authorized in {authorized}: run "
                                "`paintbridge keys client NAME`")
    return ServerKeys(public, secret, authorized)


def server_public_key(keys_dir: Path) -> str:
    """The daemon's public key; FileNotFoundError with the command that creates it."""
    path = keys_dir / "server.key"
    if not path.is_file():
        raise FileNotFoundError(f"no server keys in {keys_dir}: run `paintbridge keys server`")
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a key file ({exc})") from None
    return public.decode()

"""What every ``paintbridge`` command shares: exit codes, the one message style, the client
options and the client they open."""

from __future__ import annotations

import argparse
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from paintbridge.plugin import shared
from paintbridge.plugin.protocol import DEFAULT_ENDPOINT
from paintbridge.plugin.shared import ENDPOINT_ENV


class ExitCode(IntEnum):
    """What a script can rely on; the numbers are the interface (EXIT_CODES)."""

    OK = 0
    FAILED = 1        # the daemon refused or failed the job
    USAGE = 2         # bad usage or input
    UNREACHABLE = 3   # no daemon reachable, or it went silent
    INTERRUPTED = 130  # Ctrl+C (128 + SIGINT); the job is cancelled


EXIT_CODES = """exit codes:
  0    done
  1    the daemon refused or failed the job (or had no usable model)
  2    bad usage or input (the message says which)
  3    no daemon reachable, or it went silent
  130  interrupted by Ctrl+C (the job is cancelled)"""


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> ExitCode:
    print(f"paintbridge: {message}", file=sys.stderr)
    return code


def config_path() -> Path:
    return shared.config_dir() / "config.json"


class Parser(argparse.ArgumentParser):
    """argparse with the one message style: ``paintbridge: …`` on one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"paintbridge: {message} (see `{self.prog} --help`)\n")


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


def client_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--endpoint", default=None,
                   help=f"daemon endpoint (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")
    c.add_argument("--timeout", type=seconds, default=10.0,
                   help="seconds to wait for the daemon to answer (default 10)")
    c.add_argument("--server-key", help="a remote daemon's public key (or its server.key "
                                        "file); turns on CurveZMQ "
                                        f"(env {shared.SERVER_KEY_ENV})")
    c.add_argument("--client-key", help="this client's secret key file "
                                        f"(env {shared.CLIENT_KEY_ENV})")


class ClientUnusable(Exception):
    """A client that cannot even be made (a malformed endpoint, unusable keys)."""


def open_client(args: argparse.Namespace) -> Any:
    from paintbridge.plugin.client import Client, DaemonError

    try:
        return Client(args.endpoint, server_key=args.server_key, client_key=args.client_key)
    except ValueError as exc:   # the endpoint
        source = "--endpoint" if args.endpoint else f"${ENDPOINT_ENV}"
        raise ClientUnusable(f"{source} {exc}") from None
    except DaemonError as exc:  # the keys
        raise ClientUnusable(shared.keys_unusable(exc.message)) from None

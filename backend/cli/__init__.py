"""The ``paintbridge`` command: ``serve`` (the daemon) and the headless client commands.

One module per command (``serve``, ``edit``, ``listing`` for ``models``, ``keys``,
``install``), each adding its own parser; every mistake is one line on stderr,
``paintbridge: …``, and an exit code (``common.EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import os
import sys

from paintbridge.plugin import __version__

from . import edit, install, keys, listing, serve
from .common import EXIT_CODES, ExitCode, Parser, config_path

__all__ = ["ExitCode", "build_parser", "config_path", "main"]

DESCRIPTION = ("Stable Diffusion editing for Krita and GIMP: the daemon (serve) and the "
               "command-line clients.")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="paintbridge", description=DESCRIPTION, epilog=EXIT_CODES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"paintbridge {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in (serve, listing, edit, keys, install):
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()
    except BrokenPipeError:   # `paintbridge keys show | head -1`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return ExitCode.OK
    return code


if __name__ == "__main__":
    sys.exit(main())

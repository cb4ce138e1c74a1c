"""``paintbridge keys``: CurveZMQ keys for a remote daemon (docs/security.md)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from .common import ExitCode, fail


def add_parser(sub: Any) -> None:
    kp = sub.add_parser(
        "keys", help="create CurveZMQ keys for a remote daemon",
        description="Keys let a daemon listen beyond this machine (docs/security.md).",
        epilog="  server       make the daemon's keypair (once, on the daemon's machine)\n"
               "  client NAME  make and authorize a keypair for one client machine; prints "
               "the\n               options to use there, quoted for a shell\n"
               "  show         print the daemon's public key and the authorized clients",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kp.add_argument("what", choices=["server", "client", "show"], help="what to do (below)")
    kp.add_argument("name", nargs="?", help="the client's name, for 'client': letters, digits, "
                                            "- and _ (e.g. bob-laptop)")
    kp.add_argument("--dir", help="keys folder (default ~/.config/paintbridge/keys)")
    kp.add_argument("--force", action="store_true", help="replace existing server keys")
    kp.set_defaults(func=cmd_keys)



def cmd_keys(args: argparse.Namespace) -> int:
    from ..door import keys

    keys_dir = Path(args.dir).expanduser() if args.dir else keys.default_dir()
    if args.what == "client" and not args.name:
        return fail("keys client needs a NAME (e.g. `paintbridge keys client bob-laptop`)")
    if args.what != "client" and args.name:
        return fail(f"keys {args.what} takes no name (got {args.name!r})")
    try:
        if args.what == "server":
            public = keys.create_server(keys_dir, force=args.force)
            print(f"server keys written to {keys_dir}")
            print(f"server public key (give it to clients): {keys.server_public_key(keys_dir)}")
            print(f"  file: {public}")
        elif args.what == "client":
            secret, _ = keys.create_client(keys_dir, args.name)
            server = "SERVER_PUBLIC_KEY"    # a placeholder until `keys server` has run
            if (keys_dir / "server.key").exists():
                server = shlex.quote(keys.server_public_key(keys_dir))
            print(f"client '{args.name}' authorized; copy {secret} to that machine and use "
                  "(quoted for a shell):")
            print(f"  --client-key {shlex.quote(secret.name)} --server-key {server}")
            if server == "SERVER_PUBLIC_KEY":
                print("  (no server keys yet: run `paintbridge keys server`, then `paintbridge "
                      "keys show` prints the key)")
        else:
            print(f"server public key: {keys.server_public_key(keys_dir)}")
            for f in sorted((keys_dir / "authorized").glob("*.key")):
                print(f"authorized client: {f.stem}")
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except BrokenPipeError:
        raise
    except OSError as exc:   # a keys folder that cannot be written
        return fail(f"cannot write keys in {keys_dir}: {exc}", ExitCode.FAILED)
    return ExitCode.OK

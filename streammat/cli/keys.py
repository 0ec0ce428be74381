"""``streammat keys generate DIR``: CURVE key pairs for secure ZeroMQ streams."""

from __future__ import annotations

import argparse

from ..errors import OutputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="manage CURVE keys for secure ZeroMQ streams")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = ksub.add_parser(
        "generate",
        help="write a server and a client key pair",
        description=(
            "Write DIR/server.key(+_secret), DIR/client.key(+_secret) and "
            "DIR/authorized_clients/client.key. The publisher uses --publish-secure DIR "
            "(needs server.key_secret and authorized_clients/); subscribers use --secure DIR "
            "(need client.key_secret and server.key)."
        ),
    )
    g.add_argument("directory", metavar="DIR")
    g.add_argument("--force", action="store_true", help="replace existing keys")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..transport.security import generate_keys, has_keys, require_curve  # zmq: only when keys are made

    require_curve()
    if not args.force and has_keys(args.directory):
        raise OutputError(f"{args.directory} already holds keys; use --force to replace them")
    paths = generate_keys(args.directory, overwrite=args.force)
    for name, path in paths.items():
        print(f"{name:20} {path}")
    return 0

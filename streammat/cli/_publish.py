"""CLI glue for publishing matted frames over ZeroMQ (used by ``process`` and ``live``)."""

from __future__ import annotations

import argparse

from ..sinks.base import Sink
from ..sinks.publisher import SINK_LAYOUTS, PublisherSink
from ..transport.reliable import DEFAULT_BACKLOG
from ..transport.security import ServerSecurity

__all__ = ["add_publish_arguments", "publish_sinks"]


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("ZeroMQ publishing (wire format: docs/protocol.md)")
    g.add_argument(
        "--publish",
        metavar="URL",
        action="append",
        default=[],
        help="publish matted frames on this endpoint, e.g. tcp://*:5555 or ipc:///tmp/mat (repeatable)",
    )
    g.add_argument("--topic", default="", help="topic prefix of published messages (default: none)")
    g.add_argument(
        "--layout",
        choices=SINK_LAYOUTS,
        default="rgba",
        help="rgba (one plane), rgb+a (colour and alpha planes) or a (alpha only); default rgba",
    )
    g.add_argument(
        "--compress",
        choices=("none", "zstd", "zlib"),
        default="none",
        help="lossless per-plane compression for thin links (default none: raw, zero-copy)",
    )
    g.add_argument(
        "--publish-secure",
        metavar="KEYS_DIR",
        default=None,
        help="require CURVE encryption and client keys from KEYS_DIR (made by: streammat keys generate KEYS_DIR)",
    )
    g.add_argument(
        "--publish-hwm",
        type=int,
        default=None,
        metavar="N",
        help="frames queued per subscriber before its frames are dropped (default 16)",
    )

    g.add_argument(
        "--publish-wait",
        type=int,
        default=0,
        metavar="N",
        help="before the first frame, wait (up to 10 s) until N subscribers are connected",
    )
    g.add_argument(
        "--publish-reliable",
        action="store_true",
        help="also serve receivers started with --reliable: they get every frame, and when one falls "
        f"{DEFAULT_BACKLOG} frames behind the pipeline waits for it (plain subscribers are never waited for)",
    )


def publish_sinks(args: argparse.Namespace) -> list[Sink]:
    """One ``PublisherSink`` per ``--publish`` URL (none when the option is absent)."""
    urls = getattr(args, "publish", None) or []
    if isinstance(urls, str):
        urls = [urls]
    security = ServerSecurity.from_dir(args.publish_secure) if getattr(args, "publish_secure", None) else None
    compression = None if getattr(args, "compress", "none") in (None, "none") else args.compress
    extra: dict = {} if getattr(args, "publish_hwm", None) is None else {"sndhwm": args.publish_hwm}
    extra["wait_subscribers"] = getattr(args, "publish_wait", 0) or 0
    extra["reliable"] = bool(getattr(args, "publish_reliable", False))
    return [
        PublisherSink(
            url,
            topic=getattr(args, "topic", "") or "",
            layout=getattr(args, "layout", "rgba"),
            compression=compression,
            security=security,
            **extra,
        )
        for url in urls
    ]

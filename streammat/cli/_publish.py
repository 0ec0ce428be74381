"""CLI glue for publishing matted frames over ZeroMQ (used by ``process`` and ``live``)."""

from __future__ import annotations

import argparse

from ..config import COMPRESSIONS, PUBLISH_LAYOUTS

__all__ = ["add_publish_arguments", "PUBLISH_OPTIONS"]

#: argument → setting (``config.PipelineSettings``)
PUBLISH_OPTIONS = {
    "publish": "publish",
    "topic": "topic",
    "layout": "layout",
    "compress": "compress",
    "publish_secure": "publish_secure",
    "publish_hwm": "publish_hwm",
    "publish_wait": "publish_wait",
    "publish_reliable": "publish_reliable",
}


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("ZeroMQ publishing (wire format: docs/protocol.md)")
    g.add_argument(
        "--publish",
        metavar="URL",
        action="append",
        help="publish matted frames on this endpoint, e.g. tcp://*:5555 or ipc:///tmp/mat (repeatable)",
    )
    g.add_argument("--topic", help="topic prefix of published messages (default: none)")
    g.add_argument(
        "--layout",
        choices=PUBLISH_LAYOUTS,
        help="rgba (one plane), rgb+a (colour and alpha planes) or a (alpha only); default rgba",
    )
    g.add_argument(
        "--compress",
        choices=COMPRESSIONS,
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
        metavar="N",
        help="before the first frame, wait (up to 10 s) until N subscribers are connected",
    )
    g.add_argument(
        "--publish-reliable",
        action="store_true",
        default=None,
        help="also serve receivers started with --reliable: they get every frame, and when one falls a backlog "
        "behind, the pipeline waits for it (plain subscribers are never waited for)",
    )

"""Sources: where frames come from.

``open_source(spec)`` picks the source from the spec: ``zmq+tcp://…`` / ``zmq+ipc://…``
is a ZeroMQ frame stream, anything else a video file.
"""

from __future__ import annotations

from typing import Any

from .base import Backpressure, Source

__all__ = ["Source", "Backpressure", "open_source", "zmq_url"]

#: the transports a ``zmq+`` source may name
_ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")


def zmq_url(spec: str) -> str | None:
    """The ZeroMQ endpoint of a ``zmq+tcp://…`` spec (``tcp://…``), else None."""
    if spec.startswith("zmq+") and spec[4:].startswith(_ZMQ_SCHEMES):
        return spec[4:]
    return None


def open_source(spec: str, **options: Any) -> Source:
    """Construct (not yet open) the source for ``spec``."""
    url = zmq_url(spec)
    if url is not None:
        from .zmq import ZmqSource

        return ZmqSource(url, **options)
    from .file import FileSource

    return FileSource(spec, **options)

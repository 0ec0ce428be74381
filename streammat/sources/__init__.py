"""Sources: where frames come from.

``open_source(spec)`` picks the source from the spec: ``zmq+tcp://…`` / ``zmq+ipc://…``
is a ZeroMQ frame stream, anything else a video file.
"""

from __future__ import annotations

from typing import Any

from .base import Backpressure, Source

__all__ = ["Source", "Backpressure", "open_source"]


def open_source(spec: str, **options: Any) -> Source:
    """Construct (not yet open) the source for ``spec``."""
    if spec.startswith("zmq+"):
        from .zmq import ZmqSource

        return ZmqSource(spec[len("zmq+") :], **options)
    from .file import FileSource

    return FileSource(spec, **options)

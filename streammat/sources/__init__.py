"""Sources: where frames come from.

``open_source(spec)`` picks the source from the spec:

- ``zmq+tcp://HOST:PORT``, ``zmq+ipc://PATH``, ``zmq+inproc://NAME``: a ZeroMQ frame stream;
- a folder, or a ``%d`` pattern such as ``frames/img_%05d.png``: an image sequence;
- anything else: a video file, named pipe, ``-`` (standard input) or URL ffmpeg reads.

A name that starts with ``zmq+`` but is not one of those addresses is a file when it
exists (``zmq+clip.mp4``), else an error that lists the accepted forms.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError
from .base import Backpressure, Source, check_spec

__all__ = ["Source", "Backpressure", "open_source", "zmq_url", "ZMQ_FORMS"]

_ZMQ_PREFIX = "zmq+"
_ZMQ_TRANSPORTS = ("tcp://", "ipc://", "inproc://")
#: the accepted ZeroMQ input forms, for messages and help texts
ZMQ_FORMS = "zmq+tcp://HOST:PORT, zmq+ipc://PATH or zmq+inproc://NAME"


def zmq_url(spec: str) -> str | None:
    """The ZeroMQ endpoint of a ``zmq+tcp://…``/``zmq+ipc://…``/``zmq+inproc://…`` input
    (``"tcp://…"``), or None when ``spec`` is not one."""
    rest = spec[len(_ZMQ_PREFIX) :] if spec.startswith(_ZMQ_PREFIX) else ""
    return rest if rest.startswith(_ZMQ_TRANSPORTS) else None


def open_source(spec: str | os.PathLike[str], **options: Any) -> Source:
    """Construct (not yet open) the source for ``spec``; ``options`` go to its constructor."""
    text = check_spec(spec, argument="input")
    url = zmq_url(text)
    if url is not None:
        from .zmq import ZmqSource

        return ZmqSource(url, **options)
    if text.startswith(_ZMQ_PREFIX) and not os.path.exists(text):
        raise InputError(f"{text}: no such file, and not a ZeroMQ input (expected {ZMQ_FORMS})")
    from .images import ImageSequenceSource, is_image_sequence

    if is_image_sequence(text):
        return ImageSequenceSource(text, **options)
    from .file import FileSource

    return FileSource(text, **options)

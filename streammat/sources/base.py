"""What every source is: open → iterate frames → close.

Each source states its backpressure policy (CONVENTIONS §5):
- ``"block"``: a slow consumer slows the source, nothing is lost (files).
- ``"latest"``: the source keeps only the newest frame and counts the ones it drops (live).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

from ..frames import Frame, StreamInfo

Backpressure = Literal["block", "latest"]


@runtime_checkable
class Source(Protocol):
    #: how the source behaves when the consumer is slower than it
    backpressure: Backpressure

    def open(self) -> StreamInfo:
        """Acquire the device/file/socket and describe the stream. Raises ``InputError``."""
        ...

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in presentation order until the end of the stream."""
        ...

    def close(self) -> None:
        """Release everything. Idempotent; also safe from another thread to stop iteration."""
        ...

    @property
    def stats(self) -> dict[str, int]:
        """Counters for the summary: e.g. ``{"decoded": n, "skipped": k, "dropped": d}``."""
        ...

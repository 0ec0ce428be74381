"""A sink that counts frames and discards them (benchmarks)."""

from __future__ import annotations

from ..frames import MattedBatch, StreamInfo
from .base import SinkLifecycle

__all__ = ["NullSink"]


class NullSink(SinkLifecycle):
    """Counts frames, writes nothing."""

    _name = "null sink"

    def __init__(self) -> None:
        self.frames = 0
        self.complete: bool | None = None

    def open(self, info: StreamInfo) -> None:
        self._start_open()

    def write(self, batch: MattedBatch) -> None:
        self._check_open()
        self.frames += len(batch)

    def close(self, *, complete: bool = True) -> None:
        if self._start_close():
            self.complete = complete

    @property
    def description(self) -> str:
        return f"null ({self.frames} frames discarded)"

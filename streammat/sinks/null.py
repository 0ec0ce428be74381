"""A sink that counts frames and discards them (benchmarks)."""

from __future__ import annotations

from ..frames import MattedBatch, StreamInfo

__all__ = ["NullSink"]


class NullSink:
    """Counts frames, writes nothing."""

    def __init__(self) -> None:
        self.frames = 0
        self.closed = False
        self.complete: bool | None = None

    def open(self, info: StreamInfo) -> None:
        self.frames = 0
        self.closed = False

    def write(self, batch: MattedBatch) -> None:
        self.frames += len(batch)

    def close(self, *, complete: bool = True) -> None:
        if not self.closed:
            self.closed = True
            self.complete = complete

    @property
    def description(self) -> str:
        return f"null ({self.frames} frames discarded)"

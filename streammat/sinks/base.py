"""What every sink is: open(info) → write(matted batch)* → close(complete=...).

``close`` is idempotent and always finalizes: a file sink that is closed with
``complete=False`` (error or Ctrl-C) still leaves a playable file, named as partial.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..frames import MattedBatch, StreamInfo


@runtime_checkable
class Sink(Protocol):
    def open(self, info: StreamInfo) -> None:
        """Acquire encoders/sockets. Raises ``OutputError`` (or ``TransportError``)."""
        ...

    def write(self, batch: MattedBatch) -> None:
        """Consume every frame of the batch."""
        ...

    def close(self, *, complete: bool = True) -> None:
        """Flush and finalize. Idempotent. ``complete=False`` marks the output as partial."""
        ...

    @property
    def description(self) -> str:
        """One line for the summary, e.g. ``"out.mov (ProRes 4444, 240 frames)"``."""
        ...

"""What every matting stage is: a callable from a ``Batch`` to a ``MattedBatch``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..frames import Batch, MattedBatch


@runtime_checkable
class Matter(Protocol):
    def __call__(self, batch: Batch) -> MattedBatch:
        """Compute the alpha matte of every frame in the batch (padding included or not)."""
        ...

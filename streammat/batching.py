"""Group frames into batches of at most ``batch_size`` frames.

A batch holds only real frames: the last (or a deadline-flushed) batch is simply
shorter. A change of frame size or time base (a camera reopened at another resolution)
flushes the pending frames first, so a batch never mixes sizes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .frames import Batch, Frame, as_tensor

__all__ = ["Batcher"]


def _stack(arrays: list[Any]) -> Any:
    """One ``(N,...)`` buffer: numpy when every frame is numpy (what sources decode), else
    a torch tensor (a caller's frames may be tensors)."""
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.stack(arrays)
    import torch

    return torch.stack([as_tensor(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a) for a in arrays])


class Batcher:
    def __init__(self, batch_size: int = 8) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            from .errors import ConfigError

            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self._pending: list[Frame] = []
        self._first_at: float | None = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_since(self) -> float | None:
        """``time.monotonic()`` when the oldest pending frame arrived, or None."""
        return self._first_at

    def add(self, frame: Frame) -> list[Batch]:
        """Add a frame; return the batches that became complete (zero, one, or two when
        a size change forced out the previous partial batch)."""
        out: list[Batch] = []
        if self._pending and (
            tuple(self._pending[0].image.shape) != tuple(frame.image.shape)
            or self._pending[0].time_base != frame.time_base
            or (self._pending[0].alpha is None) != (frame.alpha is None)
        ):
            out.append(self._emit())
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(frame)
        if len(self._pending) == self.batch_size:
            out.append(self._emit())
        return out

    def flush(self) -> Batch | None:
        """Emit the pending frames (end of stream or deadline)."""
        return self._emit() if self._pending else None

    def _emit(self) -> Batch:
        frames, self._pending, self._first_at = self._pending, [], None
        has_caps = any(f.capture_time is not None for f in frames)
        has_alpha = frames[0].alpha is not None
        return Batch(
            images=_stack([f.image for f in frames]),
            pts=tuple(f.pts for f in frames),
            time_base=frames[0].time_base,
            indices=tuple(f.index for f in frames),
            capture_times=tuple(f.capture_time for f in frames) if has_caps else (),
            alphas=_stack([f.alpha for f in frames]) if has_alpha else None,
        )

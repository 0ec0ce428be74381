"""Group frames into fixed-size batches.

Every batch has exactly ``batch_size`` images so the model always sees one shape; the
last (or a deadline-flushed) batch is padded with copies of its last frame and carries
``valid``. A change of frame size (a camera reopened at another resolution) flushes the
pending frames first, so a batch never mixes sizes.
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import torch

from .frames import Batch, Frame

__all__ = ["Batcher"]


def _as_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    return image if isinstance(image, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(image))


class Batcher:
    def __init__(self, batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"expected batch_size >= 1, got {batch_size}")
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
        ):
            out.append(self._emit())
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append(frame)
        if len(self._pending) == self.batch_size:
            out.append(self._emit())
        return out

    def flush(self) -> Batch | None:
        """Emit the pending frames as a padded batch (end of stream or deadline)."""
        return self._emit() if self._pending else None

    def _emit(self) -> Batch:
        frames, self._pending, self._first_at = self._pending, [], None
        valid = len(frames)
        pad = self.batch_size - valid
        images = torch.stack([_as_tensor(f.image) for f in frames] + [_as_tensor(frames[-1].image)] * pad)
        last = frames[-1]
        tb: Fraction = frames[0].time_base
        has_caps = any(f.capture_time is not None for f in frames)
        return Batch(
            images=images,
            pts=tuple(f.pts for f in frames) + (last.pts,) * pad,
            time_base=tb,
            indices=tuple(f.index for f in frames) + (last.index,) * pad,
            valid=valid,
            capture_times=(tuple(f.capture_time for f in frames) + (last.capture_time,) * pad) if has_caps else (),
        )

"""A synthetic source and an in-memory sink, to drive a ``Pipeline`` in tests."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


class ListSource:
    """A source over synthetic frames: ``n`` frames of ``(h, w)`` with pts ``i * step``.

    ``delay`` sleeps before each frame (a slow camera), ``fail_at`` raises
    ``InputError`` when frame ``fail_at`` is due (a broken file)."""

    backpressure = "block"

    def __init__(
        self,
        n: int,
        *,
        h: int = 16,
        w: int = 24,
        step: int = 1,
        time_base: Fraction = Fraction(1, 25),
        delay: float = 0.0,
        fail_at: int | None = None,
        backpressure: str = "block",
    ) -> None:
        self.n, self.h, self.w, self.step, self.time_base = n, h, w, step, time_base
        self.delay, self.fail_at, self.backpressure = delay, fail_at, backpressure
        self.closed = False
        self.info = None
        self._stats = {"decoded": 0}

    def open(self):
        from ..frames import StreamInfo

        self.info = StreamInfo(width=self.w, height=self.h, time_base=self.time_base, frames=self.n, name="list")
        return self.info

    def __iter__(self):
        import time

        from ..errors import InputError
        from ..frames import Frame

        for i in range(self.n):
            if self.closed:
                return
            if self.delay:
                time.sleep(self.delay)
            if self.fail_at is not None and i == self.fail_at:
                raise InputError(f"list: frame {i} is broken")
            img = np.full((self.h, self.w, 3), i % 256, np.uint8)
            self._stats["decoded"] += 1
            yield Frame(img, i * self.step, self.time_base, i, capture_time=time.time())

    def close(self) -> None:
        self.closed = True

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)


class CollectingSink:
    """A sink that keeps every written frame's pts, alpha and RGB in memory."""

    description = "memory"

    def __init__(self, *, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.pts: list[int] = []
        self.alpha: list[np.ndarray] = []
        self.rgb: list[np.ndarray] = []
        self.info = None
        self.closed_with: list[bool] = []

    def open(self, info) -> None:
        self.info = info

    def write(self, batch) -> None:
        import time

        from ..errors import OutputError

        if self.delay:
            time.sleep(self.delay)
        for i in range(len(batch)):
            if self.fail_at is not None and len(self.pts) == self.fail_at:
                raise OutputError("memory: disk full (simulated)")
            self.pts.append(batch.batch.pts[i])
            self.alpha.append(batch.alpha_array[i].copy())
            self.rgb.append(batch.batch.images_array[i].copy())

    def close(self, *, complete: bool = True) -> None:
        self.closed_with.append(complete)

"""A bounded buffer of received frames between a receiving thread and its consumer.

Bounded twice, by frame count and by bytes (a few seconds of 1080p video is gigabytes).
When full, ``keep="oldest"`` refuses the new frame (order and the start of the stream
are kept: a recorder) and ``keep="newest"`` replaces the oldest (a live view); either
way the loss is counted in ``dropped``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Literal, Protocol

__all__ = ["FrameBuffer"]

log = logging.getLogger(__name__)


class _Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


class FrameBuffer:
    def __init__(self, max_frames: int, max_bytes: int, *, keep: Literal["oldest", "newest"] = "oldest") -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.keep = keep
        self._items: deque[_Sized] = deque()
        self._bytes = 0
        self._done = False
        self._cond = threading.Condition()
        #: frames lost because the buffer was full
        self.dropped = 0
        #: the most frames held at once
        self.peak = 0

    def put(self, item: _Sized) -> bool:
        """Add ``item``; False when it (or, keeping the newest, an older one) was dropped."""
        with self._cond:
            full = self._items and (len(self._items) >= self.max_frames or self._bytes + item.nbytes > self.max_bytes)
            if full and self.keep == "oldest":
                self._count_drop()
                return False
            while full and self._items:
                self._bytes -= self._items.popleft().nbytes
                self._count_drop()
                full = len(self._items) >= self.max_frames or self._bytes + item.nbytes > self.max_bytes
            self._items.append(item)
            self._bytes += item.nbytes
            self.peak = max(self.peak, len(self._items))
            self._cond.notify()
            return not full

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1 and self.keep == "oldest":
            log.warning(
                "receive buffer full (%d frames, %d MiB): dropping frames until the consumer catches up",
                len(self._items),
                self._bytes >> 20,
            )

    def get(self, timeout: float) -> _Sized | None:
        """The oldest item, or None after ``timeout`` seconds (or at once when finished)."""
        with self._cond:
            if not self._items and not self._done:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._bytes -= item.nbytes
            return item

    def finish(self) -> None:
        """No more items will come; ``get`` returns what is left, then None at once."""
        with self._cond:
            self._done = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        """Finished and empty."""
        with self._cond:
            return self._done and not self._items

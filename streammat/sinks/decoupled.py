"""A sink on its own thread behind a bounded queue, for live streams.

A live stream must never wait for a recorder: when the encoder falls behind (a slow
codec, a busy machine), batches that do not fit the queue are dropped for this sink only,
counted, and reported once — matting, the preview and the publishers keep their rate.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from ..frames import MattedBatch, StreamInfo
from .base import CLOSE_DEADLINE, SinkLifecycle

__all__ = ["DecoupledSink"]

log = logging.getLogger(__name__)

_END = object()


class DecoupledSink(SinkLifecycle):
    """Wraps ``inner``: ``write`` queues (at most ``max_batches``) and never blocks."""

    def __init__(self, inner: Any, *, max_batches: int = 8) -> None:
        self.inner = inner
        self._name = inner.description
        self._queue: queue.Queue = queue.Queue(max_batches)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.dropped = 0  # frames
        self._warned = False

    def open(self, info: StreamInfo) -> None:
        self._start_open()
        self.inner.open(info)
        self._thread = threading.Thread(target=self._run, name="sm-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _END:
            if self._error is not None:
                continue  # keep draining so write() never blocks
            try:
                self.inner.write(batch)
            except BaseException as exc:  # noqa: BLE001 - re-raised in write/close
                self._error = exc

    def write(self, batch: MattedBatch) -> None:
        self._check_open()
        if self._error is not None:
            raise self._error
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self.dropped += len(batch)
            if not self._warned:
                self._warned = True
                log.warning("%s: the recorder cannot keep up; dropping frames for it only", self.inner.description)

    def close(self, *, complete: bool = True) -> None:
        if not self._start_close():
            return
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_END)  # the writer takes every queued batch, then ends
            thread.join(CLOSE_DEADLINE)
        if self.dropped:
            log.warning(
                "%s: %d frames dropped because the recorder could not keep up", self.inner.description, self.dropped
            )
        self.inner.close(complete=complete and self._error is None)
        if self._error is not None:
            raise self._error

    @property
    def description(self) -> str:
        extra = f", {self.dropped} frames dropped (recorder too slow)" if self.dropped else ""
        return f"{self.inner.description}{extra}"

"""A ZeroMQ frame stream as a source (wire format: ``docs/protocol.md``).

Consumes ``rgb`` (or ``rgba``/``rgb+a``, alpha ignored) frames from an upstream
publisher and yields ``Frame`` values that keep the sender's pts, time_base and capture
time. ``open()`` waits for the first frame (bounded by ``timeout``) to learn the frame
size and time base. Iteration ends at the publisher's end-of-stream message; ``timeout``
seconds without any message (not even an idle heartbeat) raise ``TransportError``. If
the upstream publisher crashes and restarts (new stream id, no end-of-stream message),
iteration continues and the new stream's pts are shifted to follow the last one, so
timestamps keep increasing for the encoders.

Backpressure: ``"block"`` (default) reads every frame in order, so a slow pipeline
makes the publisher drop frames for us at its high-water mark (counted in
``stats["dropped"]`` from sequence gaps); ``"latest"`` drains the socket and keeps only
the newest frame (skipped ones in ``stats["skipped"]``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np

from ..errors import InputError, TransportError
from ..frames import Frame, StreamInfo
from ..transport.security import ClientSecurity
from ..transport.subscriber import ReceivedFrame, Subscription
from .base import Backpressure

__all__ = ["ZmqSource"]

log = logging.getLogger(__name__)


class ZmqSource:
    def __init__(
        self,
        url: str,
        *,
        topic: str = "",
        timeout: float | None = None,
        security: ClientSecurity | None = None,
        backpressure: Backpressure = "block",
        keep_alpha: bool = False,
    ) -> None:
        if backpressure not in ("block", "latest"):
            raise InputError(f"unknown backpressure {backpressure!r}; expected 'block' or 'latest'")
        self.url = url
        self.topic = topic
        self.timeout = timeout
        self.security = security
        self.backpressure: Backpressure = backpressure
        #: frames carry the received alpha (255 when the stream has none): for recorders
        self.keep_alpha = keep_alpha
        self._sub: Subscription | None = None
        self._first: ReceivedFrame | None = None
        self._info: StreamInfo | None = None
        self._closed = threading.Event()
        self._frames = 0
        self._size_skipped = 0
        self._stream: str | None = None
        self._pts_offset = 0
        self._last_pts: int | None = None
        self._last_step = 1

    def open(self) -> StreamInfo:
        if self._info is not None:
            return self._info
        sub = Subscription(
            self.url,
            topic=self.topic,
            latest_only=self.backpressure == "latest",
            timeout=self.timeout,
            security=self.security,
            until_eos=True,
        )
        self._sub = sub.open()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while self._first is None:
            if self._closed.is_set():
                raise InputError(f"{self.url}: closed before the first frame arrived")
            if sub.ended:
                raise InputError(f"{self.url}: the stream ended before its first frame")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.close()
                raise TransportError(f"no frame from {self.url} within {self.timeout:g} s")
            frame = sub.receive(0.1 if left is None else min(0.1, left))
            if frame is not None and frame.image is None and not self.keep_alpha:
                self._size_skipped += 1
                log.warning("%s sends alpha-only frames; a source needs colour (skipped)", self.url)
            elif frame is not None:
                self._first = frame
        f = self._first
        self._info = StreamInfo(width=f.width, height=f.height, time_base=f.time_base, name=f"zmq+{self.url}")
        return self._info

    def __iter__(self) -> Iterator[Frame]:
        if self._info is None:
            self.open()
        assert self._sub is not None and self._info is not None
        first, self._first = self._first, None
        if first is not None:
            yield self._to_frame(first)
        try:
            for rf in self._sub:
                if (rf.image is None and not self.keep_alpha) or (rf.width, rf.height) != (
                    self._info.width,
                    self._info.height,
                ):
                    self._size_skipped += 1
                    continue
                if rf.time_base != self._info.time_base:
                    self._size_skipped += 1
                    continue
                yield self._to_frame(rf)
        except TransportError:
            if self._closed.is_set():
                return
            raise

    def _to_frame(self, rf: ReceivedFrame) -> Frame:
        if self._stream is not None and rf.stream != self._stream and self._last_pts is not None:
            # the upstream publisher restarted (its pts start over): keep ours increasing
            self._pts_offset = self._last_pts + self._last_step - rf.pts
            log.warning("%s: upstream restarted; continuing its timestamps after pts %d", self.url, self._last_pts)
        self._stream = rf.stream
        pts = rf.pts + self._pts_offset
        if self._last_pts is not None and pts > self._last_pts:
            self._last_step = pts - self._last_pts
        self._last_pts = pts
        self._frames += 1
        # a writable copy: the received buffer may be read-only and is shared with ZeroMQ
        h, w = rf.height, rf.width
        image = np.zeros((h, w, 3), np.uint8) if rf.image is None else np.array(rf.image, copy=True)
        alpha = None
        if self.keep_alpha:
            alpha = np.full((h, w), 255, np.uint8) if rf.alpha is None else np.array(rf.alpha, copy=True)
        return Frame(image, pts, rf.time_base, rf.index, rf.capture_time, alpha)

    def close(self) -> None:
        self._closed.set()
        if self._sub is not None:
            self._sub.close()

    @property
    def stats(self) -> dict[str, int]:
        s = self._sub.stats if self._sub is not None else {}
        return {
            "decoded": self._frames,
            "dropped": s.get("gaps", 0),
            "skipped": s.get("skipped", 0) + self._size_skipped,
            "malformed": s.get("malformed", 0),
            "restarts": s.get("restarts", 0),
            "idle": s.get("idle", 0),  # heartbeats seen: > 0 once connected to a live publisher
        }

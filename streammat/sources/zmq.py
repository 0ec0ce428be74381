"""A ZeroMQ frame stream as a source (wire format: ``docs/protocol.md``).

Consumes ``rgb`` (or ``rgba``/``rgb+a``) frames from an upstream publisher and yields
``Frame`` values that keep the sender's pts, time_base and capture time; with
``keep_alpha=True`` they also carry the received alpha (255 where the stream has none;
alpha-only streams give black colour), which is what a recorder of a matted stream
wants.

``open()`` connects and starts receiving at once, on a thread of its own, into a bounded
buffer (``buffer_frames`` frames, ``buffer_bytes`` bytes): frames that arrive while the
caller loads a model are kept, and a reader that falls behind never makes the publisher
drop the end-of-stream message for it. ``open()`` then waits for the first frame
(bounded by ``timeout``) to learn the frame size and time base.

One stream, one size and time base: frames of another size are scaled to the first
size (area interpolation, one warning, ``stats["scaled"]``); pts in another time base
are converted exactly into the first one where they can be, else the frame is skipped.

Frames are never lost silently. Iteration ends at the end-of-stream message, or when
the publisher went silent (see ``Subscription``); ``end_reason`` says which. If frames
are missing then -- lost upstream or at a full buffer, skipped, or the stream went silent
or was stopped early -- iteration raises ``InputError`` after every received frame was
delivered, so the output is finalized as partial. With ``backpressure="latest"`` (live
use) the buffer keeps only the newest frame and frames replaced there are the policy,
counted in ``stats["skipped"]``, not an error. ``reliable=True`` receives over the
publisher's reliable channel and grants credit only for frames the pipeline took, so
nothing is lost at all (the publisher waits for us instead).

If the upstream publisher crashes and restarts within the silence limit (new stream id),
iteration continues and the new stream's pts are shifted to follow the last one, so
timestamps keep increasing for the encoders.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import numpy as np

from ..errors import ConfigError, InputError, StreammatError, TransportError
from ..frames import Frame, StreamInfo
from ..transport import sockets
from ..transport.buffer import FrameBuffer
from ..transport.received import ReceivedFrame
from ..transport.security import ClientSecurity
from ..transport.subscriber import Subscription
from .base import Backpressure

__all__ = ["ZmqSource"]

log = logging.getLogger(__name__)

DEFAULT_BUFFER_FRAMES = 1024
DEFAULT_BUFFER_BYTES = 512 * 2**20
_WAIT = 0.05  # seconds between checks of the stop flag while waiting


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
        reliable: bool = False,
        heartbeat: float | None = sockets.DEFAULT_HEARTBEAT,
        buffer_frames: int = DEFAULT_BUFFER_FRAMES,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        if backpressure not in ("block", "latest"):
            raise ConfigError(f"backpressure: unknown {backpressure!r}; expected 'block' or 'latest'")
        if reliable and backpressure == "latest":
            raise ConfigError("reliable with backpressure 'latest': a reliable source takes every frame; choose one")
        for name, value in (("buffer_frames", buffer_frames), ("buffer_bytes", buffer_bytes)):
            if type(value) is not int or value < 1:
                raise ConfigError(f"{name}: expected an integer >= 1, got {value!r}")
        self.url = url
        self.backpressure: Backpressure = backpressure
        self.timeout = timeout
        self.keep_alpha = keep_alpha
        self.reliable = reliable
        # constructing the subscription checks url, topic, timeout and heartbeat now
        self._sub = Subscription(
            url,
            topic=topic,
            timeout=timeout,
            security=security,
            until_eos=True,
            heartbeat=heartbeat,
            reliable=reliable,
            auto_ack=not reliable,
        )
        latest = backpressure == "latest"
        self._buffer = FrameBuffer(1 if latest else buffer_frames, buffer_bytes, keep="newest" if latest else "oldest")
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._first: ReceivedFrame | None = None
        self._info: StreamInfo | None = None
        self._closed = threading.Event()
        self._open_lock = threading.Lock()
        self._counts = {"decoded": 0, "scaled": 0, "skipped": 0}
        self._warned: set[str] = set()
        self._stream: str | None = None
        self._pts_offset = 0
        self._last_pts: int | None = None
        self._last_step = 1

    @property
    def info(self) -> StreamInfo | None:
        """The stream description once ``open()`` returned, else None."""
        return self._info

    @property
    def end_reason(self) -> str | None:
        """Why the stream ended: "eos", "silence", or None (still going, or closed)."""
        return self._sub.end_reason

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> StreamInfo:
        """Connect, start receiving, and wait for the first frame. Thread-safe: a second
        caller waits for the first one's result."""
        with self._open_lock:
            return self._open()

    def _open(self) -> StreamInfo:
        if self._info is not None:
            return self._info
        if self._closed.is_set():
            raise InputError(f"{self.url}: the source is closed")
        if self._thread is None:
            self._sub.open()
            self._thread = threading.Thread(target=self._receive, name="sm-zmq-receive", daemon=True)
            self._thread.start()
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while self._first is None:
            if self._closed.is_set():
                raise InputError(f"{self.url}: closed before the first frame arrived")
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.close()
                raise TransportError(f"no frame from {self.url} within {self.timeout:g} s")
            got = self._take(_WAIT if left is None else min(_WAIT, left))
            if got is not None:
                self._first = got if self._usable(got) else None
            elif self._buffer.finished and not self._closed.is_set():
                self._raise_receive_error()
                raise InputError(f"{self.url}: the stream ended before its first frame")
        f = self._first
        self._info = StreamInfo(width=f.width, height=f.height, time_base=f.time_base, name=f"zmq+{self.url}")
        return self._info

    def _receive(self) -> None:
        """The receiving thread: socket → bounded buffer, until the stream ends."""
        try:
            while not self._closed.is_set():
                frame = self._sub.receive(_WAIT * 2)
                if frame is not None:
                    self._buffer.put(frame)
                elif self._sub.ended or self._sub.closed:
                    break
                else:
                    self._sub.check_timeout()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
            self._error = exc
        finally:
            self._buffer.finish()

    def close(self) -> None:
        self._closed.set()
        self._sub.close()
        self._buffer.finish()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._info is None:
            self.open()
        first, self._first = self._first, None
        if first is not None and (frame := self._to_frame(first)) is not None:
            yield frame
        while True:
            rf = self._take(_WAIT)
            if rf is not None:
                if self._usable(rf) and (frame := self._to_frame(rf)) is not None:
                    yield frame
                continue
            if self._buffer.finished:
                break
        if self._closed.is_set():
            return  # stopped by the caller: the caller knows the output is partial
        self._raise_receive_error()
        self._raise_if_incomplete()

    def _take(self, timeout: float) -> ReceivedFrame | None:
        """The next received frame; on the reliable channel, taking it grants one credit."""
        rf = self._buffer.get(timeout)
        if rf is not None and self.reliable:
            self._sub.ack()
        return rf  # type: ignore[return-value]

    def _raise_receive_error(self) -> None:
        if self._error is not None and not self._closed.is_set():
            if isinstance(self._error, StreammatError):
                raise self._error
            raise TransportError(f"{self.url}: receiving failed: {self._error}") from self._error

    def _raise_if_incomplete(self) -> None:
        """Frames missing: the file source's rule, an ``InputError`` after the last frame."""
        received = self._counts["decoded"]
        missing = self._sub.missing + (self._buffer.dropped if self.backpressure == "block" else 0)
        problems = []
        if self._sub.end_reason == "silence":
            problems.append(f"the stream went silent after {received} frames")
        elif self._sub.eos_complete is False:
            problems.append("the publisher stopped before the end of its input")
        if missing:
            problems.append(f"{missing} frame{'s' * (missing > 1)} missing")
        if self._counts["skipped"]:
            problems.append(f"skipped {self._counts['skipped']} in a time base that cannot be converted exactly")
        if problems:
            raise InputError(f"{self.url}: {'; '.join(problems)}")

    def _usable(self, rf: ReceivedFrame) -> bool:
        if rf.image is None and not self.keep_alpha:
            self._counts["skipped"] += 1
            self._warn_once("alpha", "%s sends alpha-only frames; without keep_alpha a source needs colour (skipped)")
            return False
        return True

    def _to_frame(self, rf: ReceivedFrame) -> Frame | None:
        info = self._info
        assert info is not None
        pts = _convert_pts(rf.pts, rf.time_base, info.time_base)
        if pts is None:
            self._counts["skipped"] += 1
            self._warn_once("tb", "%s: frames in another time base that cannot be converted exactly are skipped")
            return None
        image, alpha = self._pictures(rf, info)
        if self._stream is not None and rf.stream != self._stream and self._last_pts is not None:
            # the upstream publisher restarted (its pts start over): keep ours increasing
            self._pts_offset = self._last_pts + self._last_step - pts
            log.warning("%s: upstream restarted; continuing its timestamps after pts %d", self.url, self._last_pts)
        self._stream = rf.stream
        pts += self._pts_offset
        if self._last_pts is not None and pts > self._last_pts:
            self._last_step = pts - self._last_pts
        self._last_pts = pts
        self._counts["decoded"] += 1
        return Frame(image, pts, info.time_base, rf.index, rf.capture_time, alpha)

    def _pictures(self, rf: ReceivedFrame, info: StreamInfo) -> tuple[np.ndarray, np.ndarray | None]:
        """Writable copies (the received buffers are read-only and shared with ZeroMQ),
        at the stream's size."""
        h, w = rf.height, rf.width
        image = np.zeros((h, w, 3), np.uint8) if rf.image is None else np.array(rf.image, copy=True)
        alpha = None
        if self.keep_alpha:
            alpha = np.full((h, w), 255, np.uint8) if rf.alpha is None else np.array(rf.alpha, copy=True)
        if (w, h) != (info.width, info.height):
            import cv2  # only streams that change size need it

            self._counts["scaled"] += 1
            self._warn_once(
                "size",
                f"%s: frames of another size than the first ({w}x{h} vs {info.width}x{info.height}) "
                "are scaled to the first size",
            )
            size = (info.width, info.height)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            if alpha is not None:
                alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
        return image, alpha

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, self.url)

    @property
    def stats(self) -> dict[str, int]:
        s = self._sub.stats
        dropped = s["gaps"] + (self._buffer.dropped if self.backpressure == "block" else 0)
        replaced = self._buffer.dropped if self.backpressure == "latest" else 0
        return {
            "decoded": self._counts["decoded"],
            "dropped": dropped,
            "skipped": s["skipped"] + self._counts["skipped"] + replaced,
            "scaled": self._counts["scaled"],
            "malformed": s["malformed"],
            "restarts": s["restarts"],
            "idle": s["idle"],  # heartbeats seen: > 0 once connected to a live publisher
            "silent": int(self._sub.end_reason == "silence"),  # ended because the publisher went quiet
        }


def _convert_pts(pts: int, time_base: Fraction, target: Fraction) -> int | None:
    """``pts`` in ``time_base`` as an exact integer count of ``target``, or None."""
    if time_base == target:
        return pts
    value = pts * time_base / target
    return int(value) if value.denominator == 1 else None

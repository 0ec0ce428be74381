"""Receive frames in the streammat wire format.

``subscribe(url)`` returns an open ``Subscription``: iterate it for ``ReceivedFrame``
values. It

- counts frames lost upstream from sequence numbers (``stats["gaps"]``) and skips and
  counts malformed messages (``stats["malformed"]``), never crashing on them;
- with ``latest_only=True`` drains the socket and keeps only the newest complete frame
  (CONFLATE does not work with multipart messages), counting the skipped ones in
  ``stats["skipped"]``;
- survives publisher restarts: libzmq reconnects the TCP connection; a dead peer is
  detected by TCP keepalive and by a watchdog (no message, not even the publisher's
  idle heartbeat, for 3 heartbeat intervals: the socket is replaced and reconnects,
  ``stats["reconnects"]``); a new stream id (or a sequence reset) is counted in
  ``stats["restarts"]`` and followed;
- with ``timeout=S`` raises ``TransportError`` when nothing at all (not even the
  publisher's idle heartbeat message) arrived for ``S`` seconds: a live publisher is
  never silent for longer than its heartbeat interval, so silence means it is gone;
- ends iteration at the publisher's end-of-stream message (``until_eos=True``, the
  default), or keeps waiting for a new stream (``until_eos=False``).

``close()`` may be called from another thread; iteration then stops within ~50 ms.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
import zmq

from ..errors import TransportError
from . import sockets
from .protocol import (
    DEFAULT_MAX_PIXELS,
    ControlHeader,
    DecodedFrame,
    FrameHeader,
    MalformedMessage,
    decode_message,
    max_message_size,
)
from .security import ClientSecurity

if TYPE_CHECKING:
    import torch

__all__ = ["ReceivedFrame", "Subscription", "subscribe"]

log = logging.getLogger(__name__)

_POLL_MS = 50
_MAX_DRAIN = 1000  # messages read per drain in latest_only mode


@dataclass(frozen=True, kw_only=True)
class ReceivedFrame(FrameHeader):
    """One received frame: its header's fields (``stream``, ``seq``, ``pts``, ``time_base``,
    ``width``, ``layout``…) plus the pictures. ``image`` is ``(H,W,3)`` and ``alpha``
    ``(H,W)`` uint8 numpy arrays (either may be None, by layout); they may be read-only
    views of the message."""

    topic: str
    image: np.ndarray | None
    alpha: np.ndarray | None
    #: ``time.time()`` when the message was received
    received_at: float

    @property
    def latency(self) -> float | None:
        """Capture → receipt, seconds (same-clock hosts only), or None."""
        return None if self.capture_time is None else self.received_at - self.capture_time

    @property
    def time(self) -> Fraction:
        return self.pts * self.time_base

    def rgba(self) -> np.ndarray:
        """Straight RGBA ``(H,W,4)`` uint8 (alpha 255 when absent, black when no colour)."""
        out = np.empty((self.height, self.width, 4), dtype=np.uint8)
        out[..., :3] = 0 if self.image is None else self.image
        out[..., 3] = 255 if self.alpha is None else self.alpha
        return out

    def as_tensor(self) -> torch.Tensor:
        """A writable ``(H,W,C)`` uint8 tensor: C=4 for RGBA layouts, 3 for ``rgb``, 1 for ``a``."""
        import torch  # lazily: plain subscribers need no torch

        if self.image is not None and self.alpha is not None:
            return torch.from_numpy(self.rgba())
        if self.image is not None:
            return torch.from_numpy(np.array(self.image, copy=True))
        assert self.alpha is not None
        return torch.from_numpy(np.array(self.alpha[..., None], copy=True))

    @classmethod
    def from_decoded(cls, msg: DecodedFrame, received_at: float) -> ReceivedFrame:
        h = msg.header
        image = alpha = None
        if h.layout == "rgba":
            image, alpha = msg.planes[0][..., :3], msg.planes[0][..., 3]
        elif h.layout == "rgb+a":
            image, alpha = msg.planes
        elif h.layout == "rgb":
            image = msg.planes[0]
        else:
            alpha = msg.planes[0]
        header = {f.name: getattr(h, f.name) for f in dataclasses.fields(FrameHeader)}
        return cls(
            **header,
            topic=msg.topic.decode("utf-8", "replace"),
            image=image,
            alpha=alpha,
            received_at=received_at,
        )


class Subscription:
    """An iterator of ``ReceivedFrame`` from one publisher endpoint (see module doc)."""

    def __init__(
        self,
        url: str,
        *,
        topic: str = "",
        latest_only: bool = False,
        timeout: float | None = None,
        security: ClientSecurity | None = None,
        until_eos: bool = True,
        rcvhwm: int | None = None,
        heartbeat: float | None = sockets.DEFAULT_HEARTBEAT,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        zmtp_heartbeat: bool = False,
    ) -> None:
        self.url = sockets.check_url(url)
        self.topic = topic
        self.latest_only = latest_only
        self.timeout = timeout
        self.security = security
        self.until_eos = until_eos
        self.rcvhwm = rcvhwm if rcvhwm is not None else sockets.DEFAULT_RCVHWM
        self.heartbeat = heartbeat
        self.max_pixels = max_pixels
        self.zmtp_heartbeat = zmtp_heartbeat
        self._socket_since = 0.0
        self._sock: zmq.Socket | None = None
        self._io = threading.Lock()
        self._closed = threading.Event()
        self._stream: str | None = None
        self._expected: int | None = None
        #: True once the end-of-stream message arrived (iteration has ended)
        self.ended = False
        #: the ``complete`` flag of the end-of-stream message
        self.eos_complete: bool | None = None
        #: ``time.monotonic()`` of the last message of any kind, or None
        self.last_message_at: float | None = None
        self.stats: dict[str, int] = {
            "received": 0,
            "gaps": 0,
            "skipped": 0,
            "malformed": 0,
            "idle": 0,
            "eos": 0,
            "restarts": 0,
            "reconnects": 0,
        }

    # -- lifecycle -----------------------------------------------------------------
    def open(self) -> Subscription:
        if self._sock is None and not self._closed.is_set():
            self._sock = self._connect()
            self.last_message_at = None
        return self

    def _connect(self) -> zmq.Socket:
        sock = sockets.sub_socket(
            sockets.context(),
            self.url,
            topic=self.topic.encode(),
            rcvhwm=self.rcvhwm,
            maxmsgsize=max_message_size(self.max_pixels),
            heartbeat=self.heartbeat,
            security=self.security,
            zmtp_heartbeat=self.zmtp_heartbeat,
        )
        self._socket_since = time.monotonic()
        return sock

    def _watchdog(self) -> None:
        """A publisher sends at least an idle message every heartbeat interval: after 3
        silent intervals the connection is presumed dead (peer crashed, network cut) and
        the socket is replaced, which reconnects at once. Caller holds ``_io``."""
        if not self.heartbeat or self.last_message_at is None or self._sock is None:
            return
        now, limit = time.monotonic(), 3 * self.heartbeat
        if now - self.last_message_at > limit and now - self._socket_since > limit:
            if self._sock.poll(0, zmq.POLLIN):
                return  # we were slow, not the publisher: messages are waiting
            log.info("nothing from %s for %.1f s: reconnecting", self.url, now - self.last_message_at)
            self._sock.close(linger=0)
            self._sock = self._connect()
            self.stats["reconnects"] += 1

    def __enter__(self) -> Subscription:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the socket. Idempotent and thread-safe: a blocked iteration stops."""
        self._closed.set()
        with self._io:
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def stream(self) -> str | None:
        """The stream id currently followed."""
        return self._stream

    # -- receiving -----------------------------------------------------------------
    def __iter__(self) -> Iterator[ReceivedFrame]:
        self.open()
        while True:
            frame = self.receive(self.timeout, _raise=True)
            if frame is None:
                return
            yield frame

    def receive(self, timeout: float | None = None, *, _raise: bool = False) -> ReceivedFrame | None:
        """The next frame, or None after ``timeout`` seconds without one, at the end of
        the stream, or once closed. Idle and malformed messages are consumed silently."""
        self.open()
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        while not self._closed.is_set():
            if _raise and timeout is not None:  # timeout counts from the last message of any kind
                deadline = max(start, self.last_message_at or start) + timeout
            if self.ended and self.until_eos:
                return None
            with self._io:
                if self._sock is None:
                    return None
                self._watchdog()
                wait = _POLL_MS
                if deadline is not None:
                    wait = max(0, min(_POLL_MS, int((deadline - time.monotonic()) * 1000)))
                try:
                    ready = self._sock.poll(wait, zmq.POLLIN)
                    frame = self._drain() if ready else None
                except zmq.ZMQError as exc:
                    if self._closed.is_set():
                        return None
                    raise TransportError(f"receive from {self.url} failed: {exc}") from exc
            if frame is not None:
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                if _raise:
                    raise TransportError(
                        f"no message from {self.url} for {timeout:g} s (publisher gone or unreachable)"
                    )
                return None
        return None

    def _drain(self) -> ReceivedFrame | None:
        """Read one message (or, latest_only, all queued ones); return the frame to deliver."""
        assert self._sock is not None
        latest: ReceivedFrame | None = None
        for _ in range(_MAX_DRAIN if self.latest_only else 1):
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            frame = self._handle(parts)
            if frame is not None:
                if latest is not None:
                    self.stats["skipped"] += 1
                latest = frame
            if self.ended and self.until_eos:
                break
        return latest

    def _handle(self, parts: list) -> ReceivedFrame | None:
        now = time.time()
        self.last_message_at = time.monotonic()
        try:
            msg = decode_message(parts, max_pixels=self.max_pixels)
        except MalformedMessage as exc:
            self.stats["malformed"] += 1
            log.debug("skipping malformed message from %s: %s", self.url, exc)
            if self.stats["malformed"] == 1:
                log.warning("malformed message from %s (counted and skipped): %s", self.url, exc)
            return None
        if isinstance(msg, DecodedFrame):
            seq, stream = msg.header.seq, msg.header.stream
        else:
            seq, stream = msg[1].next_seq, msg[1].stream
        self._track(stream, seq)
        if isinstance(msg, DecodedFrame):
            self._expected = seq + 1
            self.stats["received"] += 1
            return ReceivedFrame.from_decoded(msg, now)
        ctl: ControlHeader = msg[1]
        if ctl.kind == "eos" and self.ended and ctl.stream == self._stream:
            return None  # a repeat of the EOS already handled
        self._expected = ctl.next_seq
        if ctl.kind == "idle":
            self.stats["idle"] += 1
        else:
            self.stats["eos"] += 1
            self.eos_complete = ctl.complete
            self.ended = True
            log.info("end of stream %s from %s", ctl.stream, self.url)
        return None

    def _track(self, stream: str, seq: int) -> None:
        if stream != self._stream or (self._expected is not None and seq < self._expected):
            if self._stream is not None:
                self.stats["restarts"] += 1
                log.info("publisher at %s restarted (stream %s -> %s)", self.url, self._stream, stream)
            self._stream, self._expected = stream, None
            if not self.until_eos:
                self.ended = False
        if self._expected is not None and seq > self._expected:
            self.stats["gaps"] += seq - self._expected


def subscribe(
    url: str,
    topic: str = "",
    latest_only: bool = False,
    timeout: float | None = None,
    security: ClientSecurity | None = None,
    **options: object,
) -> Subscription:
    """Connect to a publisher and return the open ``Subscription`` (iterate it for frames).

    ``timeout``: seconds without any message before iteration raises ``TransportError``
    (None waits forever). Other keyword options: see ``Subscription``."""
    return Subscription(
        url,
        topic=topic,
        latest_only=latest_only,
        timeout=timeout,
        security=security,
        **options,  # type: ignore[arg-type]
    ).open()

"""Receive frames in the streammat wire format.

``subscribe(url)`` returns an open ``Subscription``: iterate it for ``ReceivedFrame``
values. It

- counts frames lost upstream from sequence numbers (``stats["gaps"]``, also learnt from
  the publisher's idle and end-of-stream messages) and skips and counts malformed
  messages (``stats["malformed"]``), never crashing on them;
- with ``latest_only=True`` drains the socket and keeps only the newest complete frame
  (CONFLATE does not work with multipart messages), counting the skipped ones in
  ``stats["skipped"]``;
- always finishes: iteration ends at the publisher's end-of-stream message
  (``end_reason == "eos"``) or, once frames came, when nothing at all (not even the
  publisher's idle heartbeat) arrived for 3 heartbeat intervals (``end_reason ==
  "silence"``: the publisher is gone, or its end-of-stream message was dropped for a
  reader that fell behind); ``missing`` says how many frames are known to be lost;
- before the first frame, survives a publisher that is not up yet or restarts: libzmq
  reconnects; a dead peer is detected by TCP keepalive and by a watchdog (3 silent
  heartbeat intervals: the socket is replaced, ``stats["reconnects"]``); a new stream
  id (or a sequence reset) is counted in ``stats["restarts"]`` and followed;
  ``until_eos=False`` keeps following new streams for ever;
- fails with one line when the publisher refuses the handshake (a CURVE key it does not
  accept), and logs one line when no publisher answered for a few seconds;
- with ``timeout=S`` raises ``TransportError`` when nothing at all arrived for ``S`` s;
- with ``reliable=True`` receives every frame over the publisher's reliable channel
  (``streammat.transport.reliable``), granting credit for ``window`` frames: as they
  are returned (``auto_ack=True``) or as the caller reports them consumed (``ack()``).

``close()`` may be called from another thread; iteration then stops within ~50 ms.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import zmq

from ..errors import ConfigError, TransportError
from . import sockets
from .handshake import HandshakeWatch
from .protocol import (
    MAX_PIXELS,
    MAX_WINDOW,
    RELIABLE_MARKER,
    ControlHeader,
    DecodedFrame,
    MalformedMessage,
    check_topic,
    decode_message,
    max_message_size,
)
from .received import ReceivedFrame
from .reliable import DEFAULT_WINDOW, CreditLedger, announced_url
from .security import ClientSecurity

__all__ = ["ReceivedFrame", "Subscription", "subscribe"]

log = logging.getLogger(__name__)

_POLL_MS = 50
_MAX_DRAIN = 1000  # messages read per drain in latest_only mode
SILENT_INTERVALS = 3  # heartbeat intervals of silence that mean the publisher is gone
_WAIT_NOTICE = 3.0  # seconds without any message before saying what we wait for


def _check_options(
    timeout: float | None, heartbeat: float | None, rcvhwm: int | None, max_pixels: int, window: int
) -> None:
    for name, value in (("timeout", timeout), ("heartbeat", heartbeat)):
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ConfigError(f"{name}: expected seconds > 0 or None, got {value!r}")
    if rcvhwm is not None and (type(rcvhwm) is not int or rcvhwm < 1):
        raise ConfigError(f"rcvhwm: expected an integer >= 1 (frames), got {rcvhwm!r}")
    if type(max_pixels) is not int or max_pixels < 1:
        raise ConfigError(f"max_pixels: expected an integer >= 1, got {max_pixels!r}")
    if type(window) is not int or not 1 <= window <= MAX_WINDOW:
        raise ConfigError(f"window: expected an integer in 1..{MAX_WINDOW} (frames), got {window!r}")


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
        max_pixels: int = MAX_PIXELS,
        zmtp_heartbeat: bool = False,
        reliable: bool = False,
        window: int = DEFAULT_WINDOW,
        auto_ack: bool = True,
    ) -> None:
        _check_options(timeout, heartbeat, rcvhwm, max_pixels, window)
        if reliable and latest_only:
            raise ConfigError("reliable and latest_only: a reliable receiver takes every frame; choose one")
        self.url = sockets.check_url(url)
        self._topic = check_topic(topic)
        self.topic = topic
        self.latest_only = latest_only
        self.timeout = timeout
        self.security = security
        self.until_eos = until_eos
        self.rcvhwm = rcvhwm if rcvhwm is not None else sockets.DEFAULT_RCVHWM
        self.heartbeat = heartbeat
        self.max_pixels = max_pixels
        self.zmtp_heartbeat = zmtp_heartbeat
        self.reliable = reliable
        self.window = window
        self.auto_ack = auto_ack
        self._socket_since = 0.0
        self._opened_at = 0.0
        self._sock: zmq.Socket | None = None
        self._watch: HandshakeWatch | None = None
        self._on_reliable = False  # the socket is the reliable channel (not the discovery SUB)
        self._io = threading.Lock()
        self._closed = threading.Event()
        self._stream: str | None = None
        self._expected: int | None = None
        self._started = False
        self._publisher_heartbeat = 0.0
        self._noticed = False
        self._credit = CreditLedger(topic, window, (heartbeat or 1.0) / 2)
        #: True once the stream ended (end-of-stream message or silence)
        self.ended = False
        #: why iteration ended: "eos" or "silence" (None while it goes on)
        self.end_reason: str | None = None
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
            self._connect()
            self.last_message_at = None
            self._opened_at = time.monotonic()
        return self

    def _connect(self, reliable_url: str | None = None) -> None:
        """(Re)connect: the publisher's PUB endpoint, or its reliable channel."""
        self._disconnect()
        ctx = sockets.context()
        if reliable_url is None:
            sock = sockets.sub_socket(
                ctx,
                self.url,
                topic=self._topic,
                # tells the publisher this subscription only looks for the reliable channel
                marker=RELIABLE_MARKER + self._topic if self.reliable else None,
                rcvhwm=self.rcvhwm,
                maxmsgsize=max_message_size(self.max_pixels),
                heartbeat=self.heartbeat,
                security=self.security,
                zmtp_heartbeat=self.zmtp_heartbeat,
            )
        else:
            sock = sockets.dealer_socket(
                ctx,
                reliable_url,
                maxmsgsize=max_message_size(self.max_pixels),
                heartbeat=self.heartbeat,
                security=self.security,
            )
        self._sock, self._on_reliable = sock, reliable_url is not None
        self._watch = HandshakeWatch(sock, reliable_url or self.url)
        self._socket_since = time.monotonic()
        if self._on_reliable:
            self._send_credit(force=True)

    def _disconnect(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def _watchdog(self) -> None:
        """A publisher sends at least an idle message every heartbeat interval. After 3
        silent intervals it is gone: once frames came, the stream ends (``until_eos``);
        before that, the socket is replaced, which reconnects at once. Caller holds ``_io``."""
        if not self.heartbeat or self.last_message_at is None or self._sock is None:
            return
        # a publisher that announced a longer interval than we assume is given that long
        now, limit = time.monotonic(), SILENT_INTERVALS * max(self.heartbeat, self._publisher_heartbeat)
        if now - self.last_message_at <= limit or now - self._socket_since <= limit:
            return
        if self._sock.poll(0, zmq.POLLIN):
            return  # we were slow, not the publisher: messages are waiting
        if self._started and self.until_eos:
            self.ended, self.end_reason = True, "silence"
            log.warning(
                "%s went silent after %d frames (%d known missing); ending the stream",
                self.url,
                self.stats["received"],
                self.missing,
            )
            return
        log.info("nothing from %s for %.1f s: reconnecting", self.url, now - self.last_message_at)
        self._connect()
        self.stats["reconnects"] += 1

    def _notice(self) -> None:
        """One line when nothing arrived for a while, saying what we wait for."""
        if self._noticed or self.last_message_at is not None or self._watch is None:
            return
        if time.monotonic() - self._opened_at >= _WAIT_NOTICE:
            self._noticed = True
            why = "connected, no message yet: check the topic" if self._watch.answered else "no publisher answered yet"
            log.warning("waiting for %s (%s)", self.url, why)

    def __enter__(self) -> Subscription:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the socket. Idempotent and thread-safe: a blocked iteration stops."""
        self._closed.set()
        with self._io:
            self._disconnect()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def stream(self) -> str | None:
        """The stream id currently followed."""
        return self._stream

    @property
    def missing(self) -> int:
        """Frames of the followed streams known to be lost (from sequence numbers)."""
        return self.stats["gaps"]

    def ack(self, frames: int = 1) -> None:
        """Report ``frames`` more frames consumed (reliable, ``auto_ack=False``): the
        publisher may then send that many more. Safe from another thread."""
        self._credit.acked += frames

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
                frame = self._step(deadline)
            if frame is not None:
                if self.auto_ack:
                    self._credit.acked += 1
                return frame
            if deadline is not None and time.monotonic() >= deadline:
                if _raise:
                    self._raise_silent(timeout)
                return None
        return None

    def check_timeout(self) -> None:
        """``TransportError`` when ``timeout`` seconds passed without any message (for a
        caller that polls with ``receive`` in short steps)."""
        if self.timeout is not None and self._opened_at:
            if time.monotonic() - (self.last_message_at or self._opened_at) >= self.timeout:
                self._raise_silent(self.timeout)

    def _raise_silent(self, seconds: float | None) -> None:
        raise TransportError(f"no message from {self.url} for {seconds:g} s (publisher gone or unreachable)")

    def _step(self, deadline: float | None) -> ReceivedFrame | None:
        """One poll of the socket (caller holds ``_io``)."""
        assert self._sock is not None and self._watch is not None
        self._watch.check()
        self._notice()
        self._watchdog()
        if self.ended and self.until_eos:
            return None
        if self._on_reliable:
            self._send_credit()
        wait = _POLL_MS
        if deadline is not None:
            wait = max(0, min(_POLL_MS, int((deadline - time.monotonic()) * 1000)))
        try:
            return self._drain() if self._sock.poll(wait, zmq.POLLIN) else None
        except zmq.ZMQError as exc:
            if self._closed.is_set():
                return None
            raise TransportError(f"receive from {self.url} failed: {exc}") from exc

    def _send_credit(self, *, force: bool = False) -> None:
        """Tell the reliable channel how much we consumed, when due (caller holds ``_io``)."""
        assert self._sock is not None
        message = self._credit.due(self._stream if self._started else None, force=force)
        if message is not None:
            try:
                self._sock.send_multipart(message, zmq.NOBLOCK)
            except zmq.Again:
                pass  # not connected yet: the keepalive tries again

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
            if (self.ended and self.until_eos) or self._sock is None:
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
        if self.reliable and not self._on_reliable:
            self._discover(msg)
            return None
        if isinstance(msg, DecodedFrame):
            seq, stream = msg.header.seq, msg.header.stream
        else:
            seq, stream = msg[1].next_seq, msg[1].stream
        self._track(stream, seq)
        if isinstance(msg, DecodedFrame):
            self._expected = seq + 1
            self.stats["received"] += 1
            self._started = True
            return ReceivedFrame.from_decoded(msg, now)
        ctl: ControlHeader = msg[1]
        if ctl.kind == "eos" and self.ended and ctl.stream == self._stream:
            return None  # a repeat of the EOS already handled
        self._expected = ctl.next_seq
        self._publisher_heartbeat = ctl.heartbeat or 0.0
        if ctl.kind == "idle":
            self.stats["idle"] += 1
        else:
            self.stats["eos"] += 1
            self.eos_complete = ctl.complete
            self.ended, self.end_reason = True, "eos"
            log.info("end of stream %s from %s", ctl.stream, self.url)
        return None

    def _discover(self, msg: DecodedFrame | tuple[bytes, ControlHeader]) -> None:
        """Reliable mode, on the discovery socket: move to the announced channel."""
        if isinstance(msg, DecodedFrame):
            return  # frames are taken from the reliable channel only
        ctl = msg[1]
        if ctl.reliable is None:
            raise TransportError(f"{self.url}: the publisher offers no reliable channel (start it reliable)")
        target = announced_url(self.url, ctl.reliable)
        log.info("%s: receiving reliably from %s", self.url, target)
        self._connect(target)

    def _track(self, stream: str, seq: int) -> None:
        if stream != self._stream or (self._expected is not None and seq < self._expected):
            if self._stream is not None:
                self.stats["restarts"] += 1
                log.info("publisher at %s restarted (stream %s -> %s)", self.url, self._stream, stream)
            self._stream, self._expected = stream, None
            self._credit.new_stream(self.stats["received"])
            if not self.until_eos:
                self.ended = False
                self.end_reason = None
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

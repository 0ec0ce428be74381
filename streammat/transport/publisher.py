"""Publish frames in the streammat wire format (``docs/protocol.md``).

``Publisher`` is the transport half of ``streammat.sinks.publisher.PublisherSink`` and
is also what upstream producers (tests, cameras) use to feed a ``ZmqSource``. Sends to
plain subscribers never block: the PUB socket drops a subscriber's frames once its
small high-water mark is full, and subscribers count the gap from sequence numbers.
With ``reliable=True`` the publisher also serves lossless receivers on a second socket
(``reliable.ReliablePeers``); only they can make a send wait.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import zmq

from ..errors import ConfigError, TransportError
from . import sockets
from .protocol import (
    ENCODINGS,
    LAYOUTS,
    RELIABLE_MARKER,
    ControlHeader,
    FrameHeader,
    check_time,
    check_topic,
    encode_control,
    encode_frame,
)
from .reliable import DEFAULT_BACKLOG, DEFAULT_PEER_TIMEOUT, ReliablePeers, reliable_url
from .security import ServerSecurity, start_authenticator

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

# PUB drops silently at a subscriber's high-water mark, so a burst of frames right before
# close could swallow a single end-of-stream message: it is sent this often, for the
# socket's linger time (at least three times), so a subscriber that reads a few queued
# frames meanwhile still gets it. Receivers ignore repeats.
_EOS_EVERY = 0.05
_EOS_MIN_SENDS = 3


def _check_options(
    compression: str | None, sndhwm: int, heartbeat: float | None, linger: float, backlog: int, peer_timeout: float
) -> str:
    """The encoding for ``compression``; ``ConfigError`` for any option out of range."""
    encoding = compression or "raw"
    if encoding not in ENCODINGS:
        raise ConfigError(f"compression: unknown {compression!r}; expected None or one of {ENCODINGS[1:]}")
    if type(sndhwm) is not int or sndhwm < 1:
        raise ConfigError(f"sndhwm: expected an integer >= 1 (frames), got {sndhwm!r}")
    if heartbeat is not None and not (isinstance(heartbeat, int | float) and heartbeat > 0):
        raise ConfigError(f"heartbeat: expected seconds > 0 or None, got {heartbeat!r}")
    if not (isinstance(linger, int | float) and linger >= 0):
        raise ConfigError(f"linger: expected seconds >= 0, got {linger!r}")
    if type(backlog) is not int or backlog < 1:
        raise ConfigError(f"reliable_backlog: expected an integer >= 1 (frames), got {backlog!r}")
    if not (isinstance(peer_timeout, int | float) and peer_timeout > 0):
        raise ConfigError(f"reliable_timeout: expected seconds > 0, got {peer_timeout!r}")
    return encoding


class Publisher:
    """A bound PUB endpoint speaking protocol v1 (and its reliable channel on request).

    ``heartbeat`` (seconds) is the period of the ``idle`` message sent when no frame went
    out for that long, and of TCP keepalive probes (None disables both). ZMTP PING/PONG
    heartbeats are opt-in (``zmtp_heartbeat=True``): see ``sockets.set_heartbeat`` for
    the libzmq 4.3.5 abort they can trigger.

    ``reliable=True`` also binds the reliable channel (``streammat.transport.reliable``):
    receivers that ask for it get every frame; when one of them is ``reliable_backlog``
    frames behind, ``send_frame`` waits for it (never for plain subscribers), and
    ``close`` waits until the reliable receivers have everything, dropping one that
    makes no progress for ``reliable_timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        topic: str = "",
        compression: str | None = None,
        security: ServerSecurity | None = None,
        sndhwm: int = sockets.DEFAULT_SNDHWM,
        heartbeat: float | None = sockets.DEFAULT_HEARTBEAT,
        linger: float = sockets.DEFAULT_LINGER,
        stream_id: str | None = None,
        zmtp_heartbeat: bool = False,
        reliable: bool = False,
        reliable_backlog: int = DEFAULT_BACKLOG,
        reliable_timeout: float = DEFAULT_PEER_TIMEOUT,
    ) -> None:
        self.encoding = _check_options(compression, sndhwm, heartbeat, linger, reliable_backlog, reliable_timeout)
        self.url = sockets.check_url(url)
        self.topic = check_topic(topic)
        self.security = security
        self.sndhwm = sndhwm
        self.heartbeat = heartbeat
        self.linger = linger
        self.stream_id = stream_id or secrets.token_hex(8)
        self.zmtp_heartbeat = zmtp_heartbeat
        self.reliable = reliable
        self.reliable_backlog = reliable_backlog
        self.reliable_timeout = reliable_timeout
        self._sock: zmq.Socket | None = None
        self._ctx: zmq.Context | None = None
        self._auth = None
        self._peers: ReliablePeers | None = None
        self._router: zmq.Socket | None = None
        self._announce: str | None = None
        self._lock = threading.RLock()  # seq and sends change together
        self._stop = threading.Event()
        self._ending = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_send = 0.0
        self._seq = 0
        self._closed = False
        self._markers = 0
        self._last_idle = 0.0
        self.stats = {"sent": 0, "dropped": 0, "idle": 0, "bytes": 0, "subscriptions": 0}

    # -- lifecycle -----------------------------------------------------------------
    def open(self) -> Publisher:
        if self._sock is not None:
            return self
        if self._closed:
            raise TransportError(f"publisher {self.url} is closed; create a new one")
        if self.encoding == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError as exc:
                raise TransportError("zstd compression needs the 'zstandard' package") from exc
        if self.security is not None:
            # own context: one ZAP handler per context, started before the socket binds
            self._ctx = zmq.Context()
            self._auth = start_authenticator(self._ctx, self.security)
        ctx = self._ctx or sockets.context()
        options = dict(linger=self.linger, heartbeat=self.heartbeat, security=self.security, authenticator=self._auth)
        try:
            self._sock = sockets.pub_socket(
                ctx, self.url, sndhwm=self.sndhwm, zmtp_heartbeat=self.zmtp_heartbeat, **options
            )
            if self.reliable:
                self._router = sockets.router_socket(ctx, reliable_url(self.url), **options)
                self._announce = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
                self._peers = ReliablePeers(
                    self._router,
                    self.stream_id,
                    lambda next_seq: self._control("idle", next_seq),
                    interval=self.heartbeat,
                    backlog=self.reliable_backlog,
                    peer_timeout=self.reliable_timeout,
                )
        except BaseException:
            self._close_sockets()
            self._shutdown_security()
            raise
        self._last_send = time.monotonic()
        if self.heartbeat:
            self._thread = threading.Thread(target=self._idle_loop, name="sm-zmq-idle", daemon=True)
            self._thread.start()
        extra = f", reliable channel {self._announce}" if self._announce else ""
        log.info("publishing on %s (stream %s, topic %r%s)", self.url, self.stream_id, self.topic, extra)
        return self

    def __enter__(self) -> Publisher:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close(complete=exc[0] is None)

    def close(self, *, eos: bool = True, complete: bool = True) -> None:
        """Send the end-of-stream message (unless ``eos=False``) and release the sockets."""
        if self._closed:
            return
        self._closed = True
        self._ending.set()  # no plain heartbeat after this; reliable ones go on while we drain
        if self._sock is not None and eos:
            self._send_eos(complete)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_sockets()
        self._shutdown_security()

    def _send_eos(self, complete: bool) -> None:
        """Plain subscribers first (nothing they could hear would follow a wait for the
        reliable receivers), then the reliable receivers, after their backlogs."""
        parts = self._control("eos", complete=complete)
        end = time.monotonic() + self.linger
        for n in range(10**6):
            self._send(parts)
            if n + 1 >= _EOS_MIN_SENDS and time.monotonic() >= end:
                break
            time.sleep(_EOS_EVERY)
        if self._peers is not None:
            self._peers.send(self.topic, self._seq, parts, is_frame=False)
            self._peers.drain(self.reliable_timeout)

    def _close_sockets(self) -> None:
        for sock in (self._router, self._sock):
            if sock is not None:
                # the reliable channel's last messages matter more than a quick exit
                sock.close(linger=int(max(self.linger, 1.0 if sock is self._router else 0) * 1000))
        self._sock = self._router = self._peers = None

    def _shutdown_security(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port when the URL asked for ``*``)."""
        if self._sock is None:
            return self.url
        return self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- sending -------------------------------------------------------------------
    @property
    def next_seq(self) -> int:
        return self._seq

    def send_frame(
        self,
        planes: Sequence[np.ndarray],
        *,
        layout: str,
        pts: int,
        time_base: Fraction,
        index: int,
        capture_time: float | None = None,
    ) -> bool:
        """Send one frame (planes as ``LAYOUTS[layout]``). False if the PUB socket dropped
        it (for some plain subscriber); reliable receivers get it in any case."""
        if layout not in LAYOUTS:
            raise ConfigError(f"layout: unknown {layout!r}; expected one of {tuple(LAYOUTS)}")
        if self._sock is None:
            raise TransportError(f"publisher {self.url} is not open")
        time_base = Fraction(time_base)
        if (problem := check_time(int(pts), time_base)) is not None:
            raise TransportError(f"{self.url}: cannot send frame {index}: {problem}")
        h, w = planes[0].shape[:2]
        header = FrameHeader(
            stream=self.stream_id,
            seq=self._seq,
            index=int(index),
            pts=int(pts),
            time_base=time_base,
            capture_time=capture_time,
            width=int(w),
            height=int(h),
            layout=layout,
            encoding=self.encoding,
        )
        parts = encode_frame(self.topic, header, planes)
        if self._peers is not None:
            self._peers.send(self.topic, self._seq, parts)
        with self._lock:  # a heartbeat never overtakes the frame whose seq it counts
            self._seq += 1
            ok = self._send(parts)
        if ok:
            self.stats["sent"] += 1
            self.stats["bytes"] += sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)
        return ok

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` subscribers arrived since open (or ``timeout`` s passed).

        PUB/SUB delivers nothing to a subscriber before its subscription reached the
        publisher; a recorder that must see the first frame waits here first. A reliable
        receiver counts once it joined the reliable channel (not for its discovery
        subscription)."""
        deadline = time.monotonic() + timeout
        while self.subscribers < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read_subscriptions(min(left, 0.05))
        return True

    @property
    def subscribers(self) -> int:
        """Plain subscriptions seen since open plus the reliable receivers now joined."""
        plain = self.stats["subscriptions"] - 2 * self._markers  # a discovery socket subscribes twice
        return plain + (len(self._peers) if self._peers is not None else 0)

    def _read_subscriptions(self, wait: float = 0.0) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._lock:
            try:
                if self._peers is not None:
                    self._peers.heartbeat()  # reads credit too; never waits behind a waiting send
                if wait and not sock.poll(int(wait * 1000), zmq.POLLIN):
                    return
                while True:
                    msg = sock.recv(zmq.NOBLOCK)
                    if msg[:1] == b"\x01":
                        self.stats["subscriptions"] += 1
                        self._markers += msg[1:].startswith(RELIABLE_MARKER)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:  # pragma: no cover - socket closed under us
                log.debug("reading subscriptions: %s", exc)

    def _control(self, kind: str, next_seq: int | None = None, *, complete: bool = True) -> list[bytes]:
        """A control message; ``next_seq`` defaults to the publisher's (call under the lock)."""
        seq = self._seq if next_seq is None else next_seq
        header = ControlHeader(kind, self.stream_id, seq, time.time(), complete, self._announce, self.heartbeat)
        return encode_control(self.topic, header)

    def _send(self, parts: list) -> bool:
        sock = self._sock
        if sock is None:
            return False
        with self._lock:
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.stats["dropped"] += 1
                return False
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot send on {self.url}: {exc}") from exc
            finally:
                self._last_send = time.monotonic()
        return True

    def _idle_loop(self) -> None:
        """Heartbeats: an ``idle`` message after a quiet interval -- and, when reliable
        receivers may need to find the channel, every interval, since a receiver that
        joins while frames flow would otherwise never learn where it is."""
        assert self.heartbeat
        while not self._stop.wait(min(self.heartbeat, 0.25)):
            self._read_subscriptions()  # keep the (tiny) subscription queue drained
            try:
                if self._peers is not None:
                    self._peers.heartbeat()
                if self._ending.is_set():
                    continue
                if time.monotonic() - self._last_send >= self.heartbeat or (
                    self._announce and time.monotonic() - self._last_idle >= self.heartbeat
                ):
                    self._last_idle = time.monotonic()
                    with self._lock:
                        sent = self._send(self._control("idle"))
                    if sent:
                        self.stats["idle"] += 1
            except TransportError as exc:  # pragma: no cover - socket died under us
                log.warning("%s", exc)
                return

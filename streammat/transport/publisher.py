"""Publish frames in the streammat wire format (``docs/protocol.md``).

``Publisher`` is the transport half of ``streammat.sinks.publisher.PublisherSink`` and
is also what upstream producers (tests, cameras) use to feed a ``ZmqSource``. Sends
never block: the PUB socket drops a subscriber's frames once its small high-water mark
is full, and subscribers count the gap from sequence numbers.
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

from ..errors import TransportError
from . import sockets
from .protocol import ENCODINGS, LAYOUTS, ControlHeader, FrameHeader, encode_control, encode_frame
from .security import ServerSecurity, start_authenticator

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

_EOS_REPEATS = (0.0, 0.02, 0.08)  # pauses before each end-of-stream send


class Publisher:
    """A bound PUB endpoint speaking protocol v1.

    ``heartbeat`` (seconds) is the period of the ``idle`` message sent when no frame went
    out for that long, and of TCP keepalive probes (None disables both). ZMTP PING/PONG
    heartbeats are opt-in (``zmtp_heartbeat=True``): see ``sockets.set_heartbeat`` for
    the libzmq 4.3.5 abort they can trigger.
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
    ) -> None:
        encoding = compression or "raw"
        if encoding not in ENCODINGS:
            raise TransportError(f"unknown compression {compression!r}; expected one of {ENCODINGS[1:]}")
        self.url = sockets.check_url(url)
        self.topic = topic.encode()
        self.encoding = encoding
        self.security = security
        self.sndhwm = sndhwm
        self.heartbeat = heartbeat
        self.linger = linger
        self.stream_id = stream_id or secrets.token_hex(8)
        self.zmtp_heartbeat = zmtp_heartbeat
        self._sock: zmq.Socket | None = None
        self._ctx: zmq.Context | None = None
        self._auth = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_send = 0.0
        self._seq = 0
        self._closed = False
        self.stats = {"sent": 0, "dropped": 0, "idle": 0, "bytes": 0, "subscriptions": 0}

    # -- lifecycle -----------------------------------------------------------------
    def open(self) -> Publisher:
        if self._sock is not None:
            return self
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
        try:
            self._sock = sockets.pub_socket(
                ctx,
                self.url,
                sndhwm=self.sndhwm,
                linger=self.linger,
                heartbeat=self.heartbeat,
                security=self.security,
                authenticator=self._auth,
                zmtp_heartbeat=self.zmtp_heartbeat,
            )
        except BaseException:
            self._shutdown_security()
            raise
        self._last_send = time.monotonic()
        if self.heartbeat:
            self._thread = threading.Thread(target=self._idle_loop, name="sm-zmq-idle", daemon=True)
            self._thread.start()
        log.info("publishing on %s (stream %s, topic %r)", self.url, self.stream_id, self.topic)
        return self

    def __enter__(self) -> Publisher:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close(complete=exc[0] is None)

    def close(self, *, eos: bool = True, complete: bool = True) -> None:
        """Send the end-of-stream message (unless ``eos=False``) and release the socket."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            if eos:
                # PUB drops silently at the high-water mark, so a burst of frames right
                # before close could swallow a single EOS: send it a few times, spaced out
                # (receivers ignore repeats of the EOS of a stream that already ended).
                for pause in _EOS_REPEATS:
                    time.sleep(pause)
                    self._send_control("eos", complete=complete)
            self._sock.close(linger=int(self.linger * 1000))
            self._sock = None
        self._shutdown_security()

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
        """Send one frame (planes as ``LAYOUTS[layout]``). False if it was dropped."""
        if layout not in LAYOUTS:
            raise TransportError(f"unknown layout {layout!r}; expected one of {tuple(LAYOUTS)}")
        if self._sock is None:
            raise TransportError(f"publisher {self.url} is not open")
        h, w = planes[0].shape[:2]
        header = FrameHeader(
            stream=self.stream_id,
            seq=self._seq,
            index=int(index),
            pts=int(pts),
            time_base=Fraction(time_base),
            capture_time=capture_time,
            width=int(w),
            height=int(h),
            layout=layout,
            encoding=self.encoding,
        )
        parts = encode_frame(self.topic, header, planes)
        self._seq += 1
        ok = self._send(parts)
        if ok:
            self.stats["sent"] += 1
            self.stats["bytes"] += sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in parts)
        return ok

    def wait_for_subscribers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until ``count`` subscriptions arrived since open (or ``timeout`` s passed).

        PUB/SUB delivers nothing to a subscriber before its subscription reached the
        publisher; a recorder that must see the first frame waits here first."""
        deadline = time.monotonic() + timeout
        while self.stats["subscriptions"] < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read_subscriptions(min(left, 0.05))
        return True

    def _read_subscriptions(self, wait: float = 0.0) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._lock:
            try:
                if wait and not sock.poll(int(wait * 1000), zmq.POLLIN):
                    return
                while True:
                    msg = sock.recv(zmq.NOBLOCK)
                    if msg[:1] == b"\x01":
                        self.stats["subscriptions"] += 1
            except zmq.Again:
                return
            except zmq.ZMQError as exc:  # pragma: no cover - socket closed under us
                log.debug("reading subscriptions: %s", exc)

    def send_idle(self) -> bool:
        return self._send_control("idle")

    def _send_control(self, kind: str, *, complete: bool = True) -> bool:
        header = ControlHeader(kind, self.stream_id, self._seq, time.time(), complete)
        return self._send(encode_control(self.topic, header))

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
        assert self.heartbeat
        while not self._stop.wait(min(self.heartbeat, 0.25)):
            self._read_subscriptions()  # keep the (tiny) subscription queue drained
            if time.monotonic() - self._last_send >= self.heartbeat:
                try:
                    if self._send_control("idle"):
                        self.stats["idle"] += 1
                except TransportError as exc:  # pragma: no cover - socket died under us
                    log.warning("%s", exc)
                    return

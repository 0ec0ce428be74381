"""Socket construction with every option set before bind/connect.

libzmq defaults are wrong for video (FACTS.md): HWM 1000 messages (gigabytes of 1080p
frames), infinite LINGER (``term()`` hangs), no heartbeat, no message size limit. The
helpers here always set HWM, LINGER, TCP keepalive, reconnect intervals and (receiving
side) MAXMSGSIZE before the socket touches the network.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Iterator

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..errors import ConfigError, TransportError
from .security import ClientSecurity, ServerSecurity, apply_client, apply_server

__all__ = [
    "DEFAULT_SNDHWM",
    "DEFAULT_RCVHWM",
    "DEFAULT_LINGER",
    "DEFAULT_HEARTBEAT",
    "check_url",
    "context",
    "set_heartbeat",
    "set_keepalive",
    "pub_socket",
    "router_socket",
    "dealer_socket",
    "sub_socket",
]

log = logging.getLogger(__name__)

# Frames queued per subscriber before the publisher drops for it. Small, but at least two
# pipeline batches: a batch of 8 is sent in a burst of microseconds, faster than the I/O
# thread moves frames to the kernel, and a fast subscriber must not lose any of them.
DEFAULT_SNDHWM = 16
DEFAULT_RCVHWM = 16
DEFAULT_LINGER = 0.2  # seconds a closing socket may spend flushing
DEFAULT_HEARTBEAT = 1.0  # seconds
# Messages a reliable channel's pipe holds: credit bounds the frames in it (a window is at
# most protocol.MAX_WINDOW), this leaves room for heartbeats and the end of stream on top.
RELIABLE_HWM = 8192


_ENDPOINTS = "tcp://HOST:PORT (PORT 1-65535 or *), ipc://PATH or inproc://NAME"
_TCP_RE = re.compile(r"tcp://(?P<host>[^\s/]+):(?P<port>\*|[0-9]{1,5})")
# the sun_path of a Unix socket holds 107 bytes plus its terminating NUL
_MAX_IPC_PATH = 107


def check_url(url: object) -> str:
    """``url`` itself when it is an endpoint publishers and subscribers can use, else
    ``ConfigError`` naming it. libzmq would accept some wrong ones silently (port 99999
    listens on another port), so they are refused here, before any socket exists."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"endpoint {url!r}: {why}; expected {_ENDPOINTS}")

    if not isinstance(url, str):
        raise bad(f"not a string ({type(url).__name__})")
    if url.startswith("tcp://"):
        m = _TCP_RE.fullmatch(url)
        if m is None:
            raise bad("not HOST:PORT")
        port = m.group("port")
        if port != "*" and not 1 <= int(port) <= 65535:
            raise bad(f"port {port} is outside 1-65535")
    elif url.startswith("ipc://"):
        path = url[len("ipc://") :]
        if not path or len(path.encode()) > _MAX_IPC_PATH:
            raise bad(f"the path must have 1-{_MAX_IPC_PATH} bytes")
    elif url.startswith("inproc://"):
        if not url[len("inproc://") :]:
            raise bad("empty name")
    else:
        raise bad("unknown transport")
    return url


def context() -> zmq.Context:
    """The process-wide context (sockets use bounded LINGER, so it never blocks exit)."""
    return zmq.Context.instance()


def set_keepalive(sock: zmq.Socket, interval: float | None) -> None:
    """TCP keepalive probes every ``interval`` s (whole seconds, at least 1); a peer that
    answers none of 3 is dropped, and a connecting socket reconnects."""
    if not interval:
        return
    secs = max(1, math.ceil(interval))
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, secs)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, secs)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def set_heartbeat(sock: zmq.Socket, interval: float | None) -> None:
    """ZMTP heartbeats (PING/PONG): a peer silent for 3 intervals is dropped.

    Off by default (``zmtp_heartbeat=False`` in the socket helpers): libzmq 4.3.5 aborts
    the process (``Assertion failed: !_io_error (stream_engine_base.cpp:310)``, libzmq
    #4841; and ``_input_stopped``, #3937) when PINGs sit in the buffer of a receiver whose
    queue is full and the peer then closes or times out -- exactly a slow recorder at the
    end of a stream. TCP keepalive plus the protocol's idle messages detect dead peers
    without that risk."""
    if not interval:
        return
    ivl = max(1, int(interval * 1000))
    sock.setsockopt(zmq.HEARTBEAT_IVL, ivl)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * ivl)
    sock.setsockopt(zmq.HEARTBEAT_TTL, 3 * ivl)


def pub_socket(
    ctx: zmq.Context,
    url: str,
    *,
    sndhwm: int = DEFAULT_SNDHWM,
    linger: float = DEFAULT_LINGER,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    security: ServerSecurity | None = None,
    authenticator: ThreadAuthenticator | None = None,
    zmtp_heartbeat: bool = False,
) -> zmq.Socket:
    """A bound publishing socket that never blocks on send (slow subscribers lose frames).

    It is an XPUB (a PUB that also reports subscriptions, verbosely: one per subscriber)
    so a publisher can wait for its first subscribers; on the wire it is a PUB."""
    options = {zmq.XPUB_VERBOSE: 1, zmq.SNDHWM: max(1, sndhwm), zmq.SNDTIMEO: 0}
    return _bound(ctx, zmq.XPUB, url, options, linger, heartbeat, zmtp_heartbeat, security, authenticator)


def router_socket(
    ctx: zmq.Context,
    url: str,
    *,
    linger: float = DEFAULT_LINGER,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    security: ServerSecurity | None = None,
    authenticator: ThreadAuthenticator | None = None,
) -> zmq.Socket:
    """The bound socket of a publisher's reliable channel. Sends fail (EHOSTUNREACH)
    rather than vanish for a receiver that left (ROUTER_MANDATORY); credit, not the
    high-water mark, bounds what is queued, so the mark only needs headroom."""
    options = {
        zmq.ROUTER_MANDATORY: 1,
        zmq.SNDHWM: RELIABLE_HWM,
        zmq.RCVHWM: RELIABLE_HWM,
        zmq.MAXMSGSIZE: 64 * 1024,  # credit messages only
    }
    return _bound(ctx, zmq.ROUTER, url, options, linger, heartbeat, False, security, authenticator)


def sub_socket(
    ctx: zmq.Context,
    url: str,
    *,
    topic: bytes = b"",
    marker: bytes | None = None,
    rcvhwm: int = DEFAULT_RCVHWM,
    maxmsgsize: int = -1,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    security: ClientSecurity | None = None,
    zmtp_heartbeat: bool = False,
) -> zmq.Socket:
    """A connected SUB socket with a message size limit; libzmq reconnects by itself.

    ``marker``: a prefix subscribed to *before* ``topic``, so a publisher that counts
    subscriptions sees what kind of subscriber this is before it sees the subscriber."""
    options = {zmq.RCVHWM: max(1, rcvhwm), zmq.MAXMSGSIZE: maxmsgsize}
    subscriptions = (topic,) if marker is None else (marker, topic)
    return _connected(ctx, zmq.SUB, url, options, heartbeat, zmtp_heartbeat, security, subscriptions)


def dealer_socket(
    ctx: zmq.Context,
    url: str,
    *,
    maxmsgsize: int = -1,
    heartbeat: float | None = DEFAULT_HEARTBEAT,
    security: ClientSecurity | None = None,
) -> zmq.Socket:
    """A reliable receiver's connected socket (see ``router_socket``)."""
    options = {zmq.RCVHWM: RELIABLE_HWM, zmq.SNDHWM: RELIABLE_HWM, zmq.MAXMSGSIZE: maxmsgsize}
    return _connected(ctx, zmq.DEALER, url, options, heartbeat, False, security)


def _bound(
    ctx: zmq.Context,
    kind: int,
    url: str,
    options: dict[int, int],
    linger: float,
    heartbeat: float | None,
    zmtp_heartbeat: bool,
    security: ServerSecurity | None,
    authenticator: ThreadAuthenticator | None,
) -> zmq.Socket:
    check_url(url)
    sock = ctx.socket(kind)
    with _closed_on_error(sock, f"cannot bind {url}"):
        for option, value in options.items():
            sock.setsockopt(option, value)
        sock.setsockopt(zmq.LINGER, int(linger * 1000))
        _set_liveness(sock, heartbeat, zmtp_heartbeat)
        if security is not None:
            apply_server(sock, security, authenticator)
        _bind(sock, url)
    return sock


def _connected(
    ctx: zmq.Context,
    kind: int,
    url: str,
    options: dict[int, int],
    heartbeat: float | None,
    zmtp_heartbeat: bool,
    security: ClientSecurity | None,
    subscriptions: tuple[bytes, ...] = (),
) -> zmq.Socket:
    check_url(url)
    sock = ctx.socket(kind)
    with _closed_on_error(sock, f"cannot connect to {url}"):
        for option, value in options.items():
            sock.setsockopt(option, value)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        _set_liveness(sock, heartbeat, zmtp_heartbeat)
        if security is not None:
            apply_client(sock, security)
        for topic in subscriptions:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        sock.connect(url)
    return sock


@contextlib.contextmanager
def _closed_on_error(sock: zmq.Socket, what: str) -> Iterator[None]:
    """Close ``sock`` if setting it up fails; ZeroMQ errors become ``TransportError(what)``."""
    try:
        yield
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise TransportError(f"{what}: {exc}") from exc
    except BaseException:
        sock.close(linger=0)
        raise


def _set_liveness(sock: zmq.Socket, heartbeat: float | None, zmtp_heartbeat: bool) -> None:
    """TCP keepalive always; ZMTP heartbeats only on request (see ``set_heartbeat``)."""
    set_keepalive(sock, heartbeat)
    if zmtp_heartbeat:
        set_heartbeat(sock, heartbeat)


def _bind(sock: zmq.Socket, url: str, retry_for: float = 1.0) -> None:
    """Bind, retrying briefly while a just-closed socket of this process still holds the
    address (libzmq closes listeners asynchronously, so a quick restart can race it)."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            sock.bind(url)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)

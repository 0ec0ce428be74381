"""The publisher's reliable channel: lossless delivery to the receivers that ask for it.

A publisher started with ``reliable=True`` binds a ROUTER socket next to its PUB socket
and announces its endpoint in every control message. A reliable receiver connects a
DEALER there and grants credit (``protocol.Credit``): the publisher sends it a frame only
while fewer than ``window`` of its frames are unconsumed -- credit-based flow control as
in the ZeroMQ guide's "Credit-Based Flow Control". Frames the receiver has no credit for
wait in its own bounded backlog; only when that backlog is full does ``send_frame`` wait
for the receiver (the pipeline slows to the slowest *reliable* receiver, which the user
asked for). Plain PUB subscribers are never waited for. A reliable receiver that sends
no credit message (it sends one every heartbeat as a keepalive) for ``peer_timeout``
seconds, or that consumes nothing for that long while the publisher waits for it, is
dropped, so a dead or stuck recorder cannot stall the publisher for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..errors import TransportError
from .protocol import Credit, MalformedMessage, encode_credit, parse_credit

__all__ = ["ReliablePeers", "CreditLedger", "reliable_url", "announced_url", "DEFAULT_BACKLOG", "DEFAULT_WINDOW"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 16  # frames in flight per reliable receiver
DEFAULT_BACKLOG = 64  # frames the publisher keeps per reliable receiver before it waits
DEFAULT_PEER_TIMEOUT = 10.0  # seconds without any credit message before a receiver is dropped
_POLL_MS = 20


def reliable_url(url: str) -> str:
    """Where a publisher bound at ``url`` binds its reliable channel: the same interface
    on a port the system picks (tcp), or a sibling path/name (ipc, inproc)."""
    if url.startswith("tcp://"):
        return url.rsplit(":", 1)[0] + ":*"
    return url + ".reliable"


def announced_url(url: str, announced: str) -> str:
    """The endpoint a receiver connected to ``url`` uses for the announced reliable
    channel. A tcp publisher announces the address it bound (often ``0.0.0.0``), so the
    receiver keeps the host it already reaches the publisher at and takes only the port."""
    if url.startswith("tcp://") and announced.startswith("tcp://"):
        return url.rsplit(":", 1)[0] + ":" + announced.rsplit(":", 1)[1]
    return announced


class CreditLedger:
    """The receiver's side: frames consumed, and when to tell the publisher -- when the
    count grew by a quarter window, and every ``keepalive`` seconds (which also keeps a
    receiver that consumes nothing registered)."""

    def __init__(self, topic: str, window: int, keepalive: float) -> None:
        self.topic, self.window, self.keepalive = topic, window, keepalive
        self.acked = 0  # frames consumed in all (written by the consuming thread only)
        self._base = 0  # ``acked`` when the current stream began
        self._told: tuple[int, float] = (-1, 0.0)

    def new_stream(self, frames_before: int) -> None:
        """A stream (re)started after ``frames_before`` frames: counts start over."""
        self._base = frames_before

    def due(self, stream: str | None, *, force: bool = False) -> list[bytes] | None:
        """The credit message to send now, or None; ``stream`` is None before any frame."""
        consumed = max(0, self.acked - self._base) if stream is not None else 0
        last, at = self._told
        now = time.monotonic()
        if not (force or consumed - last >= max(1, self.window // 4) or now - at >= self.keepalive):
            return None
        self._told = (consumed, now)
        return encode_credit(Credit(self.topic, self.window, consumed, stream))


@dataclass
class _Peer:
    topic: bytes
    window: int
    consumed: int = 0
    sent: int = 0  # frames of the current stream sent to it
    heard: float = field(default_factory=time.monotonic)  # last credit message
    progress: float = field(default_factory=time.monotonic)  # last time ``consumed`` grew
    #: (is_frame, seq, parts) waiting for credit, in order
    backlog: deque = field(default_factory=deque)

    def frames_waiting(self) -> int:
        return sum(1 for is_frame, _, _ in self.backlog if is_frame)


class ReliablePeers:
    """The reliable receivers of one publisher, on its ROUTER socket (thread-safe).

    ``idle_parts(next_seq)`` builds the heartbeat sent every ``interval`` seconds to each
    receiver; ``next_seq`` is the seq of the next frame *that* receiver will get."""

    def __init__(
        self,
        sock: zmq.Socket,
        stream: str,
        idle_parts: Callable[[int], list[Any]],
        *,
        interval: float | None,
        backlog: int = DEFAULT_BACKLOG,
        peer_timeout: float = DEFAULT_PEER_TIMEOUT,
    ) -> None:
        self._sock = sock
        self._stream = stream
        self._idle_parts = idle_parts
        self.interval = interval
        self.backlog = backlog
        self.peer_timeout = peer_timeout
        self._peers: dict[bytes, _Peer] = {}
        self._lock = threading.RLock()
        self._last_beat = 0.0
        self._next_seq = 0  # after the last frame queued
        self.stats = {"reliable_peers": 0, "reliable_sent": 0, "reliable_dropped_peers": 0, "reliable_waits": 0}

    def __len__(self) -> int:
        return len(self._peers)

    # -- receiving credit ------------------------------------------------------------
    def read_credit(self, wait_ms: int = 0) -> None:
        """Apply every credit message waiting (up to ``wait_ms`` for the first one)."""
        with self._lock:
            self._read_credit(wait_ms)

    def _read_credit(self, wait_ms: int = 0) -> None:
        if wait_ms and not self._sock.poll(wait_ms, zmq.POLLIN):
            return
        while True:
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                credit = parse_credit(parts[1:])
            except MalformedMessage as exc:
                log.debug("ignoring a malformed credit message: %s", exc)
                continue
            self._apply(parts[0], credit)

    def _apply(self, identity: bytes, credit: Credit) -> None:
        peer = self._peers.get(identity)
        if peer is None:
            peer = self._peers[identity] = _Peer(credit.topic.encode(), credit.window)
            self.stats["reliable_peers"] += 1
            log.info("reliable receiver joined (window %d, topic %r)", credit.window, credit.topic)
        peer.heard = time.monotonic()
        peer.window = credit.window
        if credit.stream == self._stream and credit.consumed > peer.consumed:
            # (a count about an earlier stream says nothing about ours)
            peer.consumed, peer.progress = credit.consumed, peer.heard
        self._flush(identity, peer)

    # -- sending -------------------------------------------------------------------------
    def send(self, topic: bytes, seq: int, parts: list[Any], *, is_frame: bool = True) -> None:
        """Queue a message for every reliable receiver of ``topic`` and send what credit
        allows. A frame waits while a receiver's backlog is full (see the module doc)."""
        with self._lock:
            self._send_all(topic, seq, parts, is_frame)

    def _send_all(self, topic: bytes, seq: int, parts: list[Any], is_frame: bool) -> None:
        self._read_credit()
        for identity, peer in list(self._peers.items()):
            if not topic.startswith(peer.topic):
                continue
            if is_frame and peer.frames_waiting() >= self.backlog:
                self.stats["reliable_waits"] += 1
                self._wait_for_room(identity, peer)  # its heartbeats must still say ``seq`` comes next
                if identity not in self._peers:
                    continue
            peer.backlog.append((is_frame, seq, parts))
            self._flush(identity, peer)
        if is_frame:
            self._next_seq = seq + 1

    def heartbeat(self) -> None:
        """When due, send each receiver a heartbeat (beyond credit: it is tiny) that says
        which frame comes next for *it*, and drop receivers that went quiet. Returns at
        once while a send waits for a receiver: that wait sends the heartbeats itself, and
        the caller has plain subscribers' heartbeats to send meanwhile."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._read_credit()
            self._heartbeat()
        finally:
            self._lock.release()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if not self.interval or now - self._last_beat < self.interval:
            return
        self._last_beat = now
        for identity, peer in list(self._peers.items()):
            if now - peer.heard > self.peer_timeout:
                self._drop(identity, f"no credit message for {self.peer_timeout:g} s")
                continue
            waiting = [seq for is_frame, seq, _ in peer.backlog if is_frame]
            self._send_now(identity, peer, self._idle_parts(waiting[0] if waiting else self._next_seq))

    def drain(self, deadline_without_progress: float) -> None:
        """Wait until every backlog is sent (end of stream), dropping a receiver that
        made no progress for ``deadline_without_progress`` seconds."""
        with self._lock:
            while any(p.backlog for p in self._peers.values()):
                self._read_credit(_POLL_MS)
                self._heartbeat()
                now = time.monotonic()
                for identity, peer in list(self._peers.items()):
                    self._flush(identity, peer)
                    if peer.backlog and now - max(peer.progress, peer.heard) > deadline_without_progress:
                        self._drop(identity, f"no progress for {deadline_without_progress:g} s at the end")

    # -- internals -------------------------------------------------------------------
    def _wait_for_room(self, identity: bytes, peer: _Peer) -> None:
        since = time.monotonic()
        while identity in self._peers and peer.frames_waiting() >= self.backlog:
            if time.monotonic() - max(peer.progress, since) > self.peer_timeout:
                self._drop(identity, f"{self.backlog} frames behind and none consumed for {self.peer_timeout:g} s")
                return
            self._read_credit(_POLL_MS)
            self._heartbeat()

    def _flush(self, identity: bytes, peer: _Peer) -> None:
        while peer.backlog and identity in self._peers:
            is_frame, _, parts = peer.backlog[0]
            if is_frame and peer.sent - peer.consumed >= peer.window:
                return
            if not self._send_now(identity, peer, parts):
                return
            peer.backlog.popleft()
            if is_frame:
                peer.sent += 1
                self.stats["reliable_sent"] += 1

    def _send_now(self, identity: bytes, peer: _Peer, parts: list[Any]) -> bool:
        try:
            self._sock.send_multipart([identity, *parts], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:  # its pipe is full: try again with the next credit
            return False
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # ROUTER_MANDATORY: the receiver disconnected
                self._drop(identity, "it disconnected")
                return False
            raise TransportError(f"cannot send on the reliable channel: {exc}") from exc
        return True

    def _drop(self, identity: bytes, why: str) -> None:
        peer = self._peers.pop(identity, None)
        if peer is not None:
            self.stats["reliable_dropped_peers"] += 1
            log.warning("dropped a reliable receiver: %s (%d frames not delivered)", why, peer.frames_waiting())

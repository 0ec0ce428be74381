"""Tell "the publisher refused us" from "no publisher there" on a connecting socket.

A refused CURVE handshake looks like silence to a subscriber: libzmq drops the
connection and retries for ever. Its socket monitor does report why, so a receiver
watches it and fails with one line that names the cause instead of waiting.
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..errors import TransportError

__all__ = ["HandshakeWatch"]

log = logging.getLogger(__name__)

_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
# A failure without detail is also what a connection reset mid-handshake gives; only
# this many in a row, with no success between them, mean the keys do not match.
_FAILURES_BEFORE_ERROR = 3


class HandshakeWatch:
    """Reads the monitor of one connecting socket; ``check()`` raises on a refusal."""

    def __init__(self, sock: zmq.Socket, url: str) -> None:
        self.url = url
        self._sock = sock
        self._mon: zmq.Socket | None = sock.get_monitor_socket(_EVENTS)
        self._failures = 0
        #: True once a handshake with the publisher succeeded
        self.answered = False

    def check(self) -> None:
        """Consume pending events; ``TransportError`` when the publisher refuses us."""
        mon = self._mon
        while mon is not None and mon.poll(0):
            event = recv_monitor_message(mon)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.answered, self._failures = True, 0
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise TransportError(f"{self.url}: the publisher refused our CURVE key (not in its authorized_clients)")
            else:
                # a protocol failure (e.g. mechanism mismatch) is definite at once
                self._failures += _FAILURES_BEFORE_ERROR if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL else 1
                if self._failures >= _FAILURES_BEFORE_ERROR:
                    raise TransportError(
                        f"{self.url}: the publisher answers but the handshake fails (wrong server key, or "
                        "secure mode on one side only)"
                    )

    def close(self) -> None:
        if self._mon is not None:
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError as exc:  # the socket may already be closed
                log.debug("disabling the monitor of %s: %s", self.url, exc)
            self._mon.close(linger=0)
            self._mon = None

"""ZeroMQ transport: the wire format (``protocol``), sockets, CURVE security, the
publisher/subscriber endpoints and the lossless ``reliable`` channel between them. The
contract is ``docs/protocol.md``."""

from __future__ import annotations

from .protocol import PROTOCOL_VERSION, MalformedMessage
from .publisher import Publisher
from .security import ClientSecurity, ServerSecurity, generate_keys
from .subscriber import ReceivedFrame, Subscription, subscribe

__all__ = [
    "PROTOCOL_VERSION",
    "MalformedMessage",
    "Publisher",
    "ServerSecurity",
    "ClientSecurity",
    "generate_keys",
    "ReceivedFrame",
    "Subscription",
    "subscribe",
]

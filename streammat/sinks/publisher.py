"""A sink that publishes matted frames over ZeroMQ (wire format: ``docs/protocol.md``).

A slow or stalled subscriber never slows the pipeline: the PUB socket keeps at most
``sndhwm`` frames per subscriber and drops the rest for that subscriber only; sends
never block. Subscribers count what they lost from sequence numbers.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import TransportError
from ..frames import MattedBatch, StreamInfo
from ..transport import sockets
from ..transport.publisher import Publisher
from ..transport.security import ServerSecurity

__all__ = ["PublisherSink", "SINK_LAYOUTS"]

log = logging.getLogger(__name__)

#: layouts a matted stream can be published in ("rgb" is for upstream, unmatted sources)
SINK_LAYOUTS = ("rgba", "rgb+a", "a")


class PublisherSink:
    """Publish every frame of each ``MattedBatch`` on a bound PUB endpoint.

    ``layout``: ``"rgba"`` (straight RGBA, one plane), ``"rgb+a"`` (colour and alpha
    planes) or ``"a"`` (alpha only). ``compression``: None (raw, zero-copy), ``"zstd"``
    or ``"zlib"`` (lossless, alpha kept). ``heartbeat``: seconds between idle messages
    and TCP keepalive. ``wait_subscribers=N`` makes ``open()`` wait (at most
    ``wait_timeout`` s) for N subscribers, so they see the first frame (PUB/SUB delivers
    nothing sent before a subscription arrived). ``close()`` sends the end-of-stream
    message."""

    def __init__(
        self,
        url: str,
        *,
        topic: str = "",
        layout: str = "rgba",
        compression: str | None = None,
        security: ServerSecurity | None = None,
        sndhwm: int = sockets.DEFAULT_SNDHWM,
        heartbeat: float | None = sockets.DEFAULT_HEARTBEAT,
        linger: float = sockets.DEFAULT_LINGER,
        wait_subscribers: int = 0,
        wait_timeout: float = 10.0,
    ) -> None:
        if layout not in SINK_LAYOUTS:
            raise TransportError(f"unknown layout {layout!r}; expected one of {SINK_LAYOUTS}")
        self.url = url
        self.topic = topic
        self.layout = layout
        self.compression = compression
        self.security = security
        self.sndhwm = sndhwm
        self.heartbeat = heartbeat
        self.linger = linger
        self.wait_subscribers = wait_subscribers
        self.wait_timeout = wait_timeout
        self._pub: Publisher | None = None
        self._frames = 0
        self._closed = False

    def open(self, info: StreamInfo) -> None:
        if self._pub is not None:
            return
        pub = Publisher(
            self.url,
            topic=self.topic,
            compression=self.compression,
            security=self.security,
            sndhwm=self.sndhwm,
            heartbeat=self.heartbeat,
            linger=self.linger,
        )
        pub.open()
        self._pub = pub
        if self.wait_subscribers > 0 and not pub.wait_for_subscribers(self.wait_subscribers, self.wait_timeout):
            log.warning(
                "%s: only %d of %d subscribers after %.0f s; publishing anyway",
                self.url,
                pub.stats["subscriptions"],
                self.wait_subscribers,
                self.wait_timeout,
            )
        log.info("publishing %dx%d %s frames on %s", info.width, info.height, self.layout, self.url)

    def write(self, batch: MattedBatch) -> None:
        pub = self._pub
        if pub is None:
            raise TransportError(f"publisher sink {self.url} is not open")
        n = len(batch)
        b = batch.batch
        if self.layout == "rgba":
            rgba = batch.rgba().numpy()
            planes = [[rgba[i]] for i in range(n)]
        elif self.layout == "rgb+a":
            img, alpha = b.images.contiguous().numpy(), batch.alpha.contiguous().numpy()
            planes = [[img[i], alpha[i]] for i in range(n)]
        else:
            alpha = batch.alpha.contiguous().numpy()
            planes = [[alpha[i]] for i in range(n)]
        caps = b.capture_times or (None,) * n
        for i in range(n):
            pub.send_frame(
                [np.ascontiguousarray(p) for p in planes[i]],
                layout=self.layout,
                pts=b.pts[i],
                time_base=b.time_base,
                index=b.indices[i],
                capture_time=caps[i],
            )
            self._frames += 1

    def close(self, *, complete: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pub is not None:
            self._pub.close(eos=True, complete=complete)

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port when the URL asked for ``*``)."""
        return self._pub.endpoint if self._pub is not None else self.url

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._pub.stats) if self._pub is not None else {}

    @property
    def description(self) -> str:
        extra = f", topic {self.topic!r}" if self.topic else ""
        comp = f", {self.compression}" if self.compression else ""
        return f"zmq {self.url} ({self.layout}{comp}{extra}, {self._frames} frames)"

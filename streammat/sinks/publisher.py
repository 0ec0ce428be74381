"""A sink that publishes matted frames over ZeroMQ (wire format: ``docs/protocol.md``).

A slow or stalled subscriber never slows the pipeline: the PUB socket keeps at most
``sndhwm`` frames per subscriber and drops the rest for that subscriber only; sends
never block. Subscribers count what they lost from sequence numbers. The exception is
asked for by name: with ``reliable=True``, receivers that join the reliable channel get
every frame, and the pipeline waits for one that is ``reliable_backlog`` frames behind.
"""

from __future__ import annotations

import logging

import numpy as np

from ..config import PUBLISH_LAYOUTS
from ..errors import ConfigError, OutputError
from ..frames import MattedBatch, StreamInfo
from ..transport import sockets
from ..transport.publisher import Publisher
from ..transport.reliable import DEFAULT_BACKLOG
from ..transport.security import ServerSecurity

__all__ = ["PublisherSink", "SINK_LAYOUTS"]

log = logging.getLogger(__name__)

#: layouts a matted stream can be published in ("rgb" is for upstream, unmatted sources)
SINK_LAYOUTS = PUBLISH_LAYOUTS


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
        reliable: bool = False,
        reliable_backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        if layout not in SINK_LAYOUTS:
            raise ConfigError(f"layout: unknown {layout!r}; expected one of {SINK_LAYOUTS}")
        if type(wait_subscribers) is not int or wait_subscribers < 0:
            raise ConfigError(f"wait_subscribers: expected an integer >= 0, got {wait_subscribers!r}")
        if not (isinstance(wait_timeout, int | float) and wait_timeout > 0):
            raise ConfigError(f"wait_timeout: expected seconds > 0, got {wait_timeout!r}")
        self.url = url
        self.topic = topic
        self.layout = layout
        self.compression = compression
        self.wait_subscribers = wait_subscribers
        self.wait_timeout = wait_timeout
        # the publisher's constructor checks the rest; its socket is bound by open()
        self._pub = Publisher(
            url,
            topic=topic,
            compression=compression,
            security=security,
            sndhwm=sndhwm,
            heartbeat=heartbeat,
            linger=linger,
            reliable=reliable,
            reliable_backlog=reliable_backlog,
        )
        self._opened = False
        self._frames = 0
        self._closed = False

    def open(self, info: StreamInfo) -> None:
        if self._closed:
            raise self._closed_error()
        if self._opened:
            return
        pub = self._pub.open()
        self._opened = True
        if self.wait_subscribers > 0 and not pub.wait_for_subscribers(self.wait_subscribers, self.wait_timeout):
            log.warning(
                "%s: only %d of %d subscribers after %.0f s; publishing anyway",
                self.url,
                pub.subscribers,
                self.wait_subscribers,
                self.wait_timeout,
            )
        log.info("publishing %dx%d %s frames on %s", info.width, info.height, self.layout, self.url)

    def _closed_error(self) -> OutputError:
        return OutputError(f"{self.description}: the sink is closed; a sink writes one stream, create a new one")

    def write(self, batch: MattedBatch) -> None:
        if self._closed:
            raise self._closed_error()
        if not self._opened:
            raise OutputError(f"{self.description}: the sink is not open")
        pub = self._pub
        n = len(batch)
        b = batch.batch
        if self.layout == "rgba":
            rgba = batch.rgba_array()
            planes = [[rgba[i]] for i in range(n)]
        elif self.layout == "rgb+a":
            img, alpha = b.images_array, batch.alpha_array
            planes = [[img[i], alpha[i]] for i in range(n)]
        else:
            alpha = batch.alpha_array
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
        if self._opened:
            self._pub.close(eos=True, complete=complete)

    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port when the URL asked for ``*``)."""
        return self._pub.endpoint

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._pub.stats)

    @property
    def description(self) -> str:
        extra = f", topic {self.topic!r}" if self.topic else ""
        comp = f", {self.compression}" if self.compression else ""
        return f"zmq {self.url} ({self.layout}{comp}{extra}, {self._frames} frames)"

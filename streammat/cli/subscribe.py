"""``streammat subscribe URL``: record a published stream, or print its statistics.

With ``-o OUT`` every received frame is written (straight RGBA, timing from the
sender's pts) through ``streammat.sinks.create_sink``; the recording is finalized at the
publisher's end-of-stream message, on ``--frames N``, or as partial on Ctrl-C or
``--timeout``. Without ``-o`` (or with ``--stats``) it prints fps, latency and drops
once a second.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ..errors import Interrupted, OutputError, StreammatError
from ..frames import Batch, MattedBatch, StreamInfo
from ..sinks.base import Sink
from ..transport.security import ClientSecurity
from ..transport.subscriber import ReceivedFrame, Subscription


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe",
        help="record or monitor a published ZeroMQ frame stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL", help="publisher endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("-o", "--output", metavar="OUT", help="record to this file (any alpha format)")
    p.add_argument("--format", default=None, help="output format (default: from the extension)")
    p.add_argument("--codec", default=None, help="video codec for the recording")
    p.add_argument("--topic", default="", help="topic prefix to subscribe to (default: all)")
    p.add_argument("--stats", action="store_true", help="print fps, latency and drops every second")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="fail when nothing (not even a heartbeat) arrived for S seconds (default: wait forever)",
    )
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--latest", action="store_true", help="keep only the newest frame when behind")
    p.add_argument(
        "--secure",
        metavar="KEYS_DIR",
        default=None,
        help="CURVE client keys (client.key_secret, server.key) from `streammat keys generate`",
    )
    p.set_defaults(func=run)


def _matted(rf: ReceivedFrame) -> MattedBatch:
    h, w = rf.height, rf.width
    image = np.zeros((h, w, 3), np.uint8) if rf.image is None else np.array(rf.image, copy=True)
    alpha = np.full((h, w), 255, np.uint8) if rf.alpha is None else np.array(rf.alpha, copy=True)
    batch = Batch(
        images=torch.from_numpy(image)[None],
        pts=(rf.pts,),
        time_base=rf.time_base,
        indices=(rf.index,),
        capture_times=(rf.capture_time,),
    )
    return MattedBatch(batch, torch.from_numpy(alpha)[None])


class _Meter:
    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.frames = self.window = 0
        self.latencies: list[float] = []

    def add(self, rf: ReceivedFrame) -> None:
        self.frames += 1
        self.window += 1
        if rf.latency is not None:
            self.latencies.append(rf.latency)

    def line(self, sub: Subscription, final: bool = False) -> str:
        now = time.monotonic()
        span = (now - self.t0) if final else (now - self.last)
        n = self.frames if final else self.window
        lat = ""
        if self.latencies:
            ms = sorted(x * 1000 for x in self.latencies)
            p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
            lat = f"  latency p50 {statistics.median(ms):.1f} ms p95 {p95:.1f} ms"
        s = sub.stats
        return (
            f"{'total' if final else 'frames'} {self.frames}  fps {n / span if span > 0 else 0:.1f}{lat}"
            f"  dropped {s['gaps']}  skipped {s['skipped']}  malformed {s['malformed']}"
            f"  restarts {s['restarts']}"
        )

    def due(self) -> bool:
        return time.monotonic() - self.last >= 1.0

    def reset(self) -> None:
        self.last = time.monotonic()
        self.window = 0
        self.latencies = []


def run(args: argparse.Namespace) -> int:
    url = args.url[len("zmq+") :] if args.url.startswith("zmq+") else args.url
    security = ClientSecurity.from_dir(args.secure) if args.secure else None
    sub = Subscription(url, topic=args.topic, latest_only=args.latest, timeout=args.timeout, security=security)
    show = args.stats or not args.output
    meter = _Meter()
    sink: Sink | None = None
    info: StreamInfo | None = None
    stream: str | None = None
    complete = False
    try:
        with sub:
            for rf in sub:
                if stream is None:
                    stream = rf.stream
                elif rf.stream != stream:
                    print("streammat: the publisher restarted; the recording ends here")
                    complete = True
                    break
                if args.output and sink is None:
                    info = StreamInfo(rf.width, rf.height, rf.time_base, name=url)
                    sink = _open_sink(args, info)
                if sink is not None and info is not None:
                    if (rf.width, rf.height, rf.time_base) != (info.width, info.height, info.time_base):
                        continue  # a recording keeps one size and time base
                    sink.write(_matted(rf))
                meter.add(rf)
                if show and meter.due():
                    print(meter.line(sub), flush=True)
                    meter.reset()
                if args.frames is not None and meter.frames >= args.frames:
                    complete = True
                    break
            else:
                complete = sub.eos_complete is not False
    except KeyboardInterrupt:
        _close(sink, complete=False)
        raise Interrupted(f"stopped by the user after {meter.frames} frames") from None
    except StreammatError:
        _close(sink, complete=False)
        raise
    _close(sink, complete=complete)
    print(meter.line(sub, final=True))
    if sink is not None:
        print(f"wrote {sink.description}")
    return 0


def _open_sink(args: argparse.Namespace, info: StreamInfo) -> Sink:
    try:
        from ..sinks import create_sink
    except ImportError as exc:  # pragma: no cover - the factory lands with the file sinks
        raise OutputError("recording needs streammat.sinks.create_sink, which is not available") from exc
    sink = create_sink(args.output, format=args.format, matte=False, background=None, codec=args.codec)
    sink.open(info)
    return sink


def _close(sink: Sink | None, *, complete: bool) -> None:
    if sink is not None:
        sink.close(complete=complete)

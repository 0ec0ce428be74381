"""streammat subscribe URL: record a published stream, or print its statistics.

With -o OUT every received frame is written with the alpha it arrived with (straight
RGBA, timing from the sender's pts) to any output format; the recording is finalized at
the publisher's end of stream, after --frames N, or as partial on Ctrl-C, --timeout or a
stream that went silent. Without -o (or with --stats) it prints fps, latency and drops
once a second.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from ..errors import Interrupted
from ._run import options, run_pipeline

#: argument → setting
OPTIONS = {
    "output": "output",
    "overwrite": "overwrite",
    "format": "format",
    "codec": "codec",
    "topic": "source_topic",
    "timeout": "source_timeout",
    "frames": "frames",
    "latest": "source_latest",
    "secure": "source_secure",
    "reliable": "source_reliable",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe",
        help="record or monitor a published ZeroMQ frame stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL", help="publisher endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("-o", "--output", metavar="OUT", help="record to this file or folder (any alpha format)")
    p.add_argument("-y", "--overwrite", action="store_true", default=None, help="replace an existing recording")
    p.add_argument("--format", help="output format (default: from the extension)")
    p.add_argument("--codec", help="video codec for the recording")
    p.add_argument("--topic", help="topic prefix to subscribe to (default: all)")
    p.add_argument("--stats", action="store_true", help="print fps, latency and drops every second")
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="fail when nothing (not even a heartbeat) arrived for S seconds (default: wait forever)",
    )
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--latest", action="store_true", default=None, help="keep only the newest frame when behind")
    p.add_argument(
        "--reliable",
        action="store_true",
        default=None,
        help="record every frame: credit-based flow control with a publisher started with --publish-reliable",
    )
    p.add_argument(
        "--secure",
        metavar="KEYS_DIR",
        help="CURVE client keys (client.key_secret, server.key) from 'streammat keys generate'",
    )
    p.set_defaults(func=run)


class _Meter:
    """Progress callback: a statistics line once a second (and a final one)."""

    def __init__(self, source: Any, show: bool) -> None:
        self.source, self.show = source, show
        self.t0 = self.last = time.monotonic()
        self.frames = self.window = 0
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, p: Any) -> None:
        with self._lock:
            self.window += p.frames - self.frames
            self.frames = p.frames
            if p.latency is not None:
                self.latencies.append(p.latency)
            if self.show and time.monotonic() - self.last >= 1.0:
                print(self.line(), flush=True)
                self.last, self.window, self.latencies = time.monotonic(), 0, []

    def line(self, final: bool = False) -> str:
        now = time.monotonic()
        span = (now - self.t0) if final else (now - self.last)
        n = self.frames if final else self.window
        lat = ""
        if self.latencies:
            ms = sorted(x * 1000 for x in self.latencies)
            p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
            lat = f"  latency p50 {statistics.median(ms):.1f} ms p95 {p95:.1f} ms"
        s = self.source.stats
        return (
            f"{'total' if final else 'frames'} {self.frames}  fps {n / span if span > 0 else 0:.1f}{lat}"
            f"  dropped {s.get('dropped', 0)}  skipped {s.get('skipped', 0)}  malformed {s.get('malformed', 0)}"
            f"  restarts {s.get('restarts', 0)}"
        )


def run(args: argparse.Namespace) -> int:
    from ..compose import PassThrough, build_pipeline
    from ..config import ProcessConfig, merge
    from ..sources import zmq_url

    url = args.url if zmq_url(args.url) is not None else f"zmq+{args.url}"
    given = options(args, OPTIONS)
    given.update(source=url, batch_size=1, queue_depth=4)
    cfg = merge(ProcessConfig, None, given)
    show = args.stats or not args.output
    meter: _Meter | None = None
    box: list[_Meter] = []
    pipeline = build_pipeline(
        cfg,
        matter=PassThrough(),
        keep_alpha=True,
        require_output=False,
        on_progress=lambda p: box[0](p) if box else None,
    )
    meter = _Meter(pipeline.source, show)
    box.append(meter)
    result = run_pipeline(pipeline)
    print(meter.line(final=True))
    for sink in pipeline.sinks:
        print(f"wrote {sink.description}")
    if result.stopped:
        raise Interrupted(f"stopped by the user after {result.frames_out} frames")
    return 0

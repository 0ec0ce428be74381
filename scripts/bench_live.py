#!/usr/bin/env python
"""Benchmark of ``streammat live``'s path: a real-time synthetic camera (640×480 at 30 fps)
→ newest-frame pipeline (batch 1) → selfie model + temporal smoothing → ZeroMQ publisher on
ipc://, received by a subscriber in this process.

Reports sustained fps, capture→subscriber latency (p50/p95/max), frames dropped, CPU use
(process CPU time / wall time, 100 % = one core) and RSS at start/end (plus its slope, to
see memory stay flat over ``--seconds 600``). Prints a table; ``--json PATH`` writes JSON.

    python scripts/bench_live.py --seconds 60 --json bench_live.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

WARMUP_S = 2.0  # latency samples of the first seconds (model warm-up) are left out


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(data: list[float], q: float) -> float | None:
    if not data:
        return None
    s = sorted(data)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def make_session(model: str, threads: int | None) -> tuple[object, str]:
    from streammat.errors import ModelError
    from streammat.matting.sessions import create_session

    try:
        return create_session(model, threads=threads), model
    except ModelError as exc:
        from streammat.testing import install_model, tiny_u2net_model

        print("!" * 78, file=sys.stderr)
        print(f"!! model {model!r} is not available ({exc});", file=sys.stderr)
        print("!! FALLING BACK TO A TINY TEST MODEL: the numbers below do NOT measure a real model", file=sys.stderr)
        print("!" * 78, file=sys.stderr)
        home = tempfile.mkdtemp(prefix="bench-live-home-")
        install_model(home, "u2netp", tiny_u2net_model())
        os.environ["REMBG_HOME"] = home
        return create_session("u2netp", threads=threads), "u2netp (tiny test model)"


class Subscriber:
    """Receives the published frames and measures capture → received latency."""

    def __init__(self, url: str) -> None:
        import zmq

        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 4)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(url)
        self.latencies: list[tuple[float, float]] = []  # (receive time, latency)
        self.frames = 0
        self.seq_gaps = 0
        self._last_seq: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            parts = self.sock.recv_multipart(copy=False)
            now = time.time()
            header = json.loads(bytes(parts[1].buffer))
            if header.get("kind") != "frame":
                continue
            self.frames += 1
            seq = header.get("seq")
            if self._last_seq is not None and seq is not None and seq > self._last_seq + 1:
                self.seq_gaps += seq - self._last_seq - 1
            self._last_seq = seq
            if header.get("capture_time"):
                self.latencies.append((now, now - header["capture_time"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="run length (default 20; use 60 or 600)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--smoothing", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, help="onnxruntime threads (default: the thread plan)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")

    from streammat.cli.live import LatencyMeter
    from streammat.matting import create_matter
    from streammat.matting.temporal import TemporalMatter
    from streammat.matting.threads import plan_threads
    from streammat.pipeline import Pipeline
    from streammat.sinks.publisher import PublisherSink
    from streammat.sources.camera import CameraSource
    from streammat.testing import SyntheticCamera

    rss_start = rss_mb()
    plan = plan_threads()
    plan.apply()
    session, model_name = make_session(args.model, args.threads or plan.onnx_intra_op)
    matter = TemporalMatter(create_matter(session, fast=True), smoothing=args.smoothing)

    camera = SyntheticCamera(args.width, args.height, args.fps)
    source = CameraSource(0, opener=camera, max_seconds=args.seconds)
    url = f"ipc://{tempfile.mkdtemp(prefix='bench-live-')}/live.sock"
    sub = Subscriber(url)
    meter = LatencyMeter()
    rss_samples: list[tuple[float, float]] = []
    stop_sampling = threading.Event()

    def sample_rss() -> None:
        t0 = time.monotonic()
        while not stop_sampling.wait(1.0):
            rss_samples.append((time.monotonic() - t0, rss_mb()))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    pipeline = Pipeline(
        source,
        matter,
        [PublisherSink(url)],
        batch_size=args.batch_size,
        queue_depth=1,
        flush_after=0.01 if args.batch_size > 1 else None,
        on_progress=meter,
    )
    rss_ready = rss_mb()
    cpu0, wall0 = time.process_time(), time.monotonic()
    sampler.start()
    result = pipeline.run()
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    time.sleep(0.3)
    stop_sampling.set()
    sub.close()
    camera.close()
    rss_end = rss_mb()

    t_start = sub.latencies[0][0] if sub.latencies else 0.0
    lat = [lat for at, lat in sub.latencies if at - t_start >= WARMUP_S]
    recv = [at for at, _ in sub.latencies if at - t_start >= WARMUP_S]
    fps_steady = (len(recv) - 1) / (recv[-1] - recv[0]) if len(recv) > 1 and recv[-1] > recv[0] else 0.0
    steady = [s for s in rss_samples if s[0] >= min(10.0, args.seconds / 3)]
    slope = None
    if len(steady) >= 3:
        n = len(steady)
        mx = sum(t for t, _ in steady) / n
        my = sum(m for _, m in steady) / n
        var = sum((t - mx) ** 2 for t, _ in steady)
        slope = 60 * sum((t - mx) * (m - my) for t, m in steady) / var if var else 0.0
    stats = result.source_stats
    res = {
        "model": model_name,
        "size": f"{args.width}x{args.height}",
        "camera_fps": args.fps,
        "seconds": round(wall, 2),
        "frames_captured": stats.get("captured", 0),
        "frames_out": result.frames_out,
        "frames_received": sub.frames,
        "fps_sustained": round(result.frames_out / wall, 2),
        "fps_steady": round(fps_steady, 2),
        "dropped": stats.get("dropped", 0),
        "latency_ms_p50": round(1000 * percentile(lat, 50), 1) if lat else None,
        "latency_ms_p95": round(1000 * percentile(lat, 95), 1) if lat else None,
        "latency_ms_max": round(1000 * max(lat), 1) if lat else None,
        "latency_at_sink_ms_p50": round(1000 * (meter.percentile(50) or 0), 1),
        "latency_at_sink_ms_p95": round(1000 * (meter.percentile(95) or 0), 1),
        "cpu_percent": round(100 * cpu / wall, 1),
        "busy_s": {k: round(v, 2) for k, v in result.busy.items()},
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_ready": round(rss_ready, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_mb_max": round(max([m for _, m in rss_samples] + [rss_end]), 1),
        "rss_slope_mb_per_min": round(slope, 2) if slope is not None else None,
        "cores": os.cpu_count(),
        "targets": {"fps": ">= 30", "latency_p95_ms": "<= 60", "rss": "flat"},
    }
    rows = [
        ("model", res["model"]),
        ("camera", f"{res['size']} @ {args.fps:g} fps, synthetic, real time"),
        ("run", f"{res['seconds']} s, {res['cores']} cores"),
        ("fps sustained (all / after warm-up)", f"{res['fps_sustained']} / {res['fps_steady']}  (target >= 30)"),
        ("frames captured/out/received", f"{res['frames_captured']} / {res['frames_out']} / {res['frames_received']}"),
        ("dropped (newest-frame policy)", res["dropped"]),
        (
            "latency capture->subscriber",
            f"p50 {res['latency_ms_p50']} ms, p95 {res['latency_ms_p95']} ms "
            f"(target <= 60), max {res['latency_ms_max']} ms",
        ),
        ("latency capture->sink", f"p50 {res['latency_at_sink_ms_p50']} ms, p95 {res['latency_at_sink_ms_p95']} ms"),
        ("CPU (process/wall)", f"{res['cpu_percent']} %  (200 % = both cores)"),
        ("stage busy (s)", ", ".join(f"{k} {v}" for k, v in res["busy_s"].items())),
        (
            "RSS start/ready/end/max",
            f"{res['rss_mb_start']} / {res['rss_mb_ready']} / {res['rss_mb_end']} / {res['rss_mb_max']} MB",
        ),
        ("RSS slope (steady state)", f"{res['rss_slope_mb_per_min']} MB/min"),
    ]
    width = max(len(k) for k, _ in rows)
    print("| " + "metric".ljust(width) + " | value")
    print("|-" + "-" * width + "-|------")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

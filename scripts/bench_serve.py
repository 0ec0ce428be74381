#!/usr/bin/env python
"""Benchmark of ``streammat serve`` against separate ``streammat live`` processes.

N = 1, 2, 4, 6 file-backed cameras (640×480 at 30 fps, played in real time and looped),
selfie model, each stream published over ZeroMQ (tcp on loopback) to a subscriber process.
Side by side in one run, for each N:

- **serve**: one ``streammat serve`` process with N pipelines sharing one model;
- **live**: N ``streammat live --camera FILE --loop --publish URL`` processes.

Measured over the same window (after a warm-up) for each: per-stream fps at the
subscriber (slowest stream and mean), p50/p95 capture → subscriber latency, frames dropped
(gaps in the camera's frame indices, as the subscriber sees them), CPU % (100 % = one core),
CPU milliseconds per frame the subscriber received (what a frame costs, which other jobs on
the machine change less than the frame rate) and peak RSS of the streammat processes
(summed over the N live processes), and the load average when the row ended.
Prints a table, writes JSON (``--json``):

    python scripts/bench_serve.py --seconds 15 --json bench_serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FPS = 30.0
START_TIMEOUT = 180.0  # seconds for every stream's first frame at the subscriber


# -- the subscriber process ------------------------------------------------------------------
def subscribe(urls: list[str]) -> None:
    """Receive every stream; print "ready" once each delivered a frame; on a line
    "T0 T1" on stdin, print per-stream statistics of the frames received in [T0, T1]."""
    from streammat.transport.subscriber import Subscription

    samples: dict[str, list[tuple[float, float | None, int]]] = {u: [] for u in urls}
    stop = threading.Event()

    def receive(url: str) -> None:
        sub = Subscription(url, until_eos=False)
        while not stop.is_set():
            f = sub.receive(0.2)
            if f is not None:
                samples[url].append((f.received_at, f.capture_time, f.index))
        sub.close()

    threads = [threading.Thread(target=receive, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    while not all(samples[u] for u in urls):
        time.sleep(0.05)
    print("ready", flush=True)
    t0, t1 = (float(x) for x in sys.stdin.readline().split())
    stop.set()
    out = {}
    for url in urls:
        window = [s for s in samples[url] if t0 <= s[0] <= t1]
        lat = sorted(r - c for r, c, _ in window if c is not None)
        idx = [i for _, _, i in window]
        gaps = (max(idx) - min(idx) + 1 - len(idx)) if idx else 0
        out[url] = {"frames": len(window), "latency": lat, "dropped": max(0, gaps)}
    print(json.dumps(out), flush=True)


# -- measuring ----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(data: list[float], q: float) -> float | None:
    if not data:
        return None
    return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]


class Usage:
    """CPU seconds and peak RSS of a set of processes, sampled on a thread."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        self.procs = [psutil.Process(p) for p in pids]
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.procs)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in self.procs))
            self._stop.wait(0.25)

    def __enter__(self) -> Usage:
        self.cpu0, self.t0 = self.cpu(), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_percent = 100.0 * (self.cpu() - self.cpu0) / (time.monotonic() - self.t0)
        self._stop.set()
        self._thread.join()


def serve_config(clip: Path, urls: list[str], http: int, smoothing: float | None) -> str:
    lines = [f"http: 127.0.0.1:{http}", "pipelines:"]
    for i, url in enumerate(urls):
        lines += [
            f"  cam{i + 1}:",
            f"    source: {clip}",
            "    loop: true",
            "    model: selfie",
            "    device: cpu",
            f"    publish: {url}",
        ]
        if smoothing is not None:
            lines.append(f"    smoothing: {smoothing}")
    return "\n".join(lines) + "\n"


def run_scenario(mode: str, n: int, clip: Path, tmp: Path, env: dict[str, str], args: argparse.Namespace) -> dict:
    urls = [f"tcp://127.0.0.1:{free_port()}" for _ in range(n)]
    cmd = [sys.executable, "-m", "streammat"]
    procs: list[subprocess.Popen] = []
    if mode == "serve":
        config = tmp / f"serve-{n}.yaml"
        config.write_text(serve_config(clip, urls, free_port(), args.smoothing))
        procs.append(subprocess.Popen([*cmd, "serve", str(config), "-q"], env=env))
    else:
        for url in urls:
            live = [*cmd, "live", "--camera", str(clip), "--loop", "--publish", url, "--model", "selfie", "-q"]
            if args.smoothing is not None:
                live += ["--smoothing", str(args.smoothing)]
            procs.append(subprocess.Popen([*live, "--device", "cpu"], env=env))
    sub = subprocess.Popen(
        [sys.executable, __file__, "--subscribe", *urls],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = _readline(sub, START_TIMEOUT)
        if ready != "ready":
            raise RuntimeError(f"{mode} x{n}: streams did not start within {START_TIMEOUT:.0f} s")
        time.sleep(args.warmup)
        with Usage([p.pid for p in procs]) as usage:
            t0 = time.time()
            time.sleep(args.seconds)
            t1 = time.time()
        assert sub.stdin is not None
        sub.stdin.write(f"{t0} {t1}\n")
        sub.stdin.flush()
        stats = json.loads(_readline(sub, 60.0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*procs, sub]:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    window = t1 - t0
    fps = [stats[u]["frames"] / window for u in urls]
    delivered = sum(stats[u]["frames"] for u in urls)
    lat = sorted(x for u in urls for x in stats[u]["latency"])
    return {
        "mode": mode,
        "streams": n,
        "fps_min": min(fps),
        "fps_mean": sum(fps) / n,
        "latency_p50_ms": _ms(percentile(lat, 50)),
        "latency_p95_ms": _ms(percentile(lat, 95)),
        "dropped": sum(stats[u]["dropped"] for u in urls),
        "cpu_percent": usage.cpu_percent,
        # CPU per frame a subscriber received: what a frame costs, whatever else runs here
        "cpu_ms_per_frame": (10.0 * usage.cpu_percent * window / delivered) if delivered else None,
        "peak_rss_mb": usage.peak_rss / 2**20,
        "seconds": window,
        "load": os.getloadavg()[0],
    }


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(timeout)
    return box[0].strip() if box else ""


def _ms(x: float | None) -> float | None:
    return None if x is None else 1000.0 * x


def holds(row: dict, target: float) -> bool:
    return row["fps_min"] >= target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="1,2,4,6", help="comma-separated N (default 1,2,4,6)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per scenario")
    ap.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    ap.add_argument("--target", type=float, default=29.5, help="fps a stream must hold")
    ap.add_argument("--smoothing", type=float, help="the matte's temporal smoothing (default: live's, 0.5)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--subscribe", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.subscribe:
        subscribe(args.subscribe)
        return

    from streammat.models import store
    from streammat.testing import camera_clip

    store.ensure_available("selfie")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    clip = camera_clip(tmp / "cam.mp4", frames=300, width=640, height=480, fps=FPS)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    load = os.getloadavg()
    rows = []
    for n in (int(x) for x in args.streams.split(",")):
        for mode in ("serve", "live"):
            row = run_scenario(mode, n, clip, tmp, env, args)
            rows.append(row)
            print(
                f"{mode:5} x{n}: {row['fps_min']:.1f} fps (slowest), p95 {row['latency_p95_ms'] or 0:.0f} ms, "
                f"cpu {row['cpu_percent']:.0f} %, rss {row['peak_rss_mb']:.0f} MB, load {row['load']:.1f}",
                file=sys.stderr,
                flush=True,
            )

    print(f"\n{os.cpu_count()} cores; load average before the run {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    print(
        "| N | mode | fps per stream (min / mean) | p50 / p95 latency | dropped | CPU % | CPU ms / frame "
        "| peak RSS | load |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        p50, p95 = r["latency_p50_ms"], r["latency_p95_ms"]
        lat = f"{p50:.0f} / {p95:.0f} ms" if p50 is not None else "n/a"
        per_frame = "n/a" if r["cpu_ms_per_frame"] is None else f"{r['cpu_ms_per_frame']:.1f}"
        print(
            f"| {r['streams']} | {r['mode']} | {r['fps_min']:.1f} / {r['fps_mean']:.1f} | {lat} | {r['dropped']} "
            f"| {r['cpu_percent']:.0f} | {per_frame} | {r['peak_rss_mb']:.0f} MB | {r['load']:.1f} |"
        )
    summary = {}
    for mode in ("serve", "live"):
        mine = [r for r in rows if r["mode"] == mode]
        one = next((r for r in mine if r["streams"] == 1), None)
        four = next((r for r in mine if r["streams"] == 4), None)
        held = [r["streams"] for r in mine if holds(r, args.target)]
        summary[mode] = {
            "largest_n_holding_target": max(held) if held else 0,
            "rss_4_over_1": (four["peak_rss_mb"] / one["peak_rss_mb"]) if one and four else None,
        }
        ratio = summary[mode]["rss_4_over_1"]
        print(
            f"{mode}: largest N holding {args.target} fps per stream: {summary[mode]['largest_n_holding_target']}; "
            f"RSS at 4 streams / 1 stream: {'n/a' if ratio is None else f'{ratio:.2f}x'}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"rows": rows, "summary": summary, "cores": os.cpu_count(), "load": load, "smoothing": args.smoothing},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()

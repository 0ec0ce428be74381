#!/usr/bin/env python
"""Benchmark the ZeroMQ transport: 1080p RGBA over TCP loopback.

Subscribers run in separate processes (multiprocessing, spawn) so the GIL does not
bound them. For each scenario the publisher sends for ``--seconds``:

- ``max``: at ``--max-rate`` frames/s (default 400, more than loopback carries at
  1080p; the PUB socket drops for subscribers that fall behind) -- paced rather than
  a busy loop, so the publisher does not take the CPU the subscribers need;
- ``paced``: at ``--rate`` frames/s (a pipeline's pace), for latency;
- stalled A/B: a busy-loop publisher with one reading subscriber, and a stalled one
  connected in every other window, for the publisher's own throughput with and
  without it.

- reliable side by side: a paced publisher with one fast plain subscriber and a second
  subscriber that sleeps ``--reliable-delay`` ms per frame, first plain, then reliable
  (so the only difference is the reliable channel): the fast subscriber's rate in both
  (ratio) and whether the throttled one got every frame; ``--reliable-only`` runs just
  this.

Reported: publisher frames/s and send-call time, per-subscriber frames/s (the slowest
one), total MB/s received, p50/p95 capture→receive latency, and the share of frames a
subscriber lost (sequence gaps). A "stalled" subscriber connects and never reads; the
publisher's throughput with it is compared with the same scenario without it.

    python scripts/bench_zmq.py [--seconds 5] [--rate 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from streammat.transport.protocol import max_message_size  # noqa: E402
from streammat.transport.publisher import Publisher  # noqa: E402
from streammat.transport.subscriber import Subscription  # noqa: E402


def _subscriber(url: str, results, deadline_s: float, reliable: bool = False, delay: float = 0.0) -> None:
    """A child process: receive until the end of stream; ``delay`` s of work per frame."""
    sub = Subscription(url, timeout=10, reliable=reliable)
    lat: list[float] = []
    n = nbytes = 0
    first = last = None
    t_end = time.monotonic() + deadline_s
    try:
        for f in sub:
            now = time.monotonic()
            first = first if first is not None else now
            last = now
            n += 1
            nbytes += f.width * f.height * 4
            if f.latency is not None:
                lat.append(f.latency)
            if now > t_end:
                break
            if delay:
                time.sleep(delay)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put({"error": repr(exc)})
        return
    finally:
        sub.close()
    span = (last - first) if (first is not None and last is not None and last > first) else 0.0
    results.put(
        {
            "frames": n,
            "bytes": nbytes,
            "span": span,
            "gaps": sub.stats["gaps"],
            "lat": lat,
            "reliable": reliable,
            "end": sub.end_reason,
        }
    )


def _stalled(url: str, stop) -> None:  # child process: connected, never reads
    ctx = zmq.Context()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 1)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.MAXMSGSIZE, max_message_size())
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(url)
    stop.wait(120)
    s.close()
    ctx.term()


def run_scenario(
    *, subs: int, stalled: bool, mode: str, seconds: float, rate: float, max_rate: float, width: int, height: int
) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    stop = ctx.Event()
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=1.0).open()
    url = pub.endpoint
    procs = [ctx.Process(target=_subscriber, args=(url, results, seconds + 30)) for _ in range(subs)]
    if stalled:
        procs.append(ctx.Process(target=_stalled, args=(url, stop)))
    for p in procs:
        p.start()
    frames = [np.full((height, width, 4), v, np.uint8) for v in (10, 80, 160, 240)]
    try:
        if not pub.wait_for_subscribers(len(procs), timeout=60):
            raise SystemExit("subscribers did not connect within 60 s")
        time.sleep(0.2)
        tb = Fraction(1, 90000)
        sent = 0
        send_times: list[float] = []
        t0 = time.monotonic()
        period = {"paced": 1.0 / rate, "max": 1.0 / max_rate, "unpaced": 0.0}[mode]
        cpu0 = time.process_time()
        while (now := time.monotonic()) - t0 < seconds:
            if period:
                due = t0 + sent * period
                if now < due:
                    time.sleep(due - now)
            s = time.perf_counter()
            pub.send_frame(
                [frames[sent % 4]],
                layout="rgba",
                pts=sent * 1500,
                time_base=tb,
                index=sent,
                capture_time=time.time(),
            )
            send_times.append(time.perf_counter() - s)
            sent += 1
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0  # all publisher threads, libzmq's I/O thread included
    finally:
        pub.close()
    outs = [results.get(timeout=60) for _ in range(subs)]
    stop.set()
    for p in procs:
        p.join(30)
        if p.is_alive():
            p.kill()
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise SystemExit(f"subscriber failed: {errors}")
    lat = sorted(x for o in outs for x in o["lat"])
    fps = [o["frames"] / o["span"] if o["span"] else 0.0 for o in outs]
    mb = sum(o["bytes"] for o in outs) / 1e6 / max(o["span"] for o in outs) if outs else 0.0
    return {
        "scenario": f"{subs} sub{'s' if subs > 1 else ''}{' + 1 stalled' if stalled else ''}",
        "mode": {"max": f"max ({max_rate:g}/s)", "paced": f"paced {rate:g}/s", "unpaced": "unpaced"}[mode],
        "subscribers": subs,
        "stalled": stalled,
        "pub_fps": sent / elapsed,
        "send_us_p50": statistics.median(send_times) * 1e6,
        "pub_cpu_pct": 100.0 * cpu / elapsed,
        "sub_fps_min": min(fps),
        "sub_fps": fps,
        "mb_per_s": mb,
        "latency_ms_p50": lat[len(lat) // 2] * 1000 if lat else None,
        "latency_ms_p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000 if lat else None,
        "lost_pct": 100.0 * sum(o["gaps"] for o in outs) / max(1, sent * subs),
        "sent": sent,
    }


def _toggled_stall(url: str, on, off, quit_) -> None:  # child: a SUB that connects on demand
    ctx = zmq.Context()
    sock = None
    while not quit_.is_set():
        if sock is None and on.wait(0.05):
            on.clear()
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 1)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_size())
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(url)
        elif sock is not None and off.wait(0.05):
            off.clear()
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    ctx.term()


def stall_ab(*, seconds: float, width: int, height: int, window: float = 0.6, settle: float = 0.3) -> dict:
    """Publisher throughput, busy loop, with one reading subscriber throughout and a
    stalled one connected in every other window (A/B interleaved, so background load
    hits both phases alike); medians over the windows."""
    ctx = mp.get_context("spawn")
    results, on, off, quit_ = ctx.Queue(), ctx.Event(), ctx.Event(), ctx.Event()
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=1.0).open()
    url = pub.endpoint
    reader = ctx.Process(target=_subscriber, args=(url, results, seconds + 60))
    staller = ctx.Process(target=_toggled_stall, args=(url, on, off, quit_))
    reader.start()
    staller.start()
    frames = [np.full((height, width, 4), v, np.uint8) for v in (10, 80, 160, 240)]
    fps: dict[bool, list[float]] = {False: [], True: []}
    us: dict[bool, list[float]] = {False: [], True: []}
    cpu_us: dict[bool, list[float]] = {False: [], True: []}
    try:
        if not pub.wait_for_subscribers(1, timeout=60):
            raise SystemExit("subscriber did not connect within 60 s")
        n = 0
        t_end = time.monotonic() + seconds
        phase = False
        while time.monotonic() < t_end:
            phase = not phase
            (on if phase else off).set()
            if phase and not pub.wait_for_subscribers(pub.stats["subscriptions"] + 1, timeout=10):
                raise SystemExit("the stalled subscriber did not connect")
            for measuring, span in ((False, settle), (True, window)):
                count, busy, t0, c0 = 0, 0.0, time.monotonic(), time.thread_time()
                while time.monotonic() - t0 < span:
                    s = time.perf_counter()
                    pub.send_frame(
                        [frames[n % 4]],
                        layout="rgba",
                        pts=n,
                        time_base=Fraction(1, 90000),
                        index=n,
                        capture_time=time.time(),
                    )
                    busy += time.perf_counter() - s
                    n += 1
                    count += 1
                if measuring:
                    fps[phase].append(count / (time.monotonic() - t0))
                    us[phase].append(busy / count * 1e6)
                    cpu_us[phase].append((time.thread_time() - c0) / count * 1e6)
    finally:
        pub.close()
        quit_.set()
    out = results.get(timeout=60)
    for p in (reader, staller):
        p.join(30)
        if p.is_alive():
            p.kill()
    base, stalled = statistics.median(fps[False]), statistics.median(fps[True])
    return {
        "scenario": "1 sub, stalled A/B",
        "mode": "unpaced",
        "subscribers": 1,
        "stalled": None,
        "pub_fps_without_stalled": base,
        "pub_fps_with_stalled": stalled,
        "send_us_without_stalled": statistics.median(us[False]),
        "send_us_with_stalled": statistics.median(us[True]),
        # CPU time of the sending thread per frame: immune to being descheduled
        "send_cpu_us_without_stalled": statistics.median(cpu_us[False]),
        "send_cpu_us_with_stalled": statistics.median(cpu_us[True]),
        "windows": {"without": fps[False], "with": fps[True]},
        "stalled_cost_pct": 100.0 * (1 - stalled / base),
        "reader_frames": out.get("frames"),
    }


def reliable_side_by_side(*, seconds: float, rate: float, width: int, height: int, delay: float) -> dict:
    """A paced publisher with one fast plain subscriber and one throttled subscriber, plain
    and then reliable (one run, same machine)."""
    out: dict = {"rate": rate, "delay_ms": delay * 1000}
    for with_reliable in (False, True):
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        pub = Publisher("tcp://127.0.0.1:*", heartbeat=1.0, reliable=True).open()
        procs = [
            ctx.Process(target=_subscriber, args=(pub.endpoint, results, seconds + 60)),
            ctx.Process(target=_subscriber, args=(pub.endpoint, results, seconds + 60, with_reliable, delay)),
        ]
        for proc in procs:
            proc.start()
        frames = [np.full((height, width, 4), v, np.uint8) for v in (10, 80, 160, 240)]
        sent = 0
        try:
            if not pub.wait_for_subscribers(len(procs), timeout=60):
                raise SystemExit("subscribers did not connect within 60 s")
            t0 = time.monotonic()
            while (now := time.monotonic()) - t0 < seconds:
                due = t0 + sent / rate
                if now < due:
                    time.sleep(due - now)
                pub.send_frame([frames[sent % 4]], layout="rgba", pts=sent, time_base=Fraction(1, 90000), index=sent)
                sent += 1
            elapsed = time.monotonic() - t0
            waits = pub._peers.stats["reliable_waits"] if pub._peers is not None else 0
        finally:
            pub.close()
        rows = [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        if errors := [r["error"] for r in rows if "error" in r]:
            raise SystemExit(f"subscriber failed: {errors}")
        fast = [r for r in rows if not r["reliable"]]
        plain = max(fast, key=lambda r: r["frames"])  # without the reliable one, both are plain
        throttled = min(rows, key=lambda r: (not r["reliable"], r["frames"]))
        key = "with_reliable" if with_reliable else "plain_only"
        out[key] = {
            "sent": sent,
            "pub_fps": sent / elapsed,
            "plain_fps": plain["frames"] / plain["span"] if plain["span"] else 0.0,
            "plain_frames": plain["frames"],
            "publisher_waits": waits,
            "throttled_frames": throttled["frames"],
            "throttled_end": throttled["end"],
        }
    a, b = out["plain_only"], out["with_reliable"]
    out["plain_fps_ratio"] = b["plain_fps"] / a["plain_fps"] if a["plain_fps"] else None
    return out


def print_reliable(r: dict, width: int, height: int) -> None:
    a, b = r["plain_only"], r["with_reliable"]
    print(
        f"\nreliable side by side, {width}x{height} RGBA paced at {r['rate']:g}/s, reliable receiver "
        f"sleeping {r['delay_ms']:g} ms per frame, {os.cpu_count()} CPUs"
    )
    cols = ("throttled subscriber", "sent", "pub f/s", "fast f/s", "fast got", "throttled got", "waits")
    widths = (22, 6, 8, 9, 9, 13, 6)

    def line(values: tuple) -> str:
        return " ".join(
            f"{v:<{w}}" if i == 0 else f"{v:>{w}}" for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    head = line(cols)
    print(head)
    print("-" * len(head))
    for name, row in (("plain", a), ("reliable", b)):
        print(
            line(
                (
                    name,
                    row["sent"],
                    f"{row['pub_fps']:.1f}",
                    f"{row['plain_fps']:.1f}",
                    row["plain_frames"],
                    row["throttled_frames"],
                    row["publisher_waits"],
                )
            )
        )
    print(f"fast subscriber's rate next to a reliable / a plain throttled one: {r['plain_fps_ratio']:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=100.0, help="frames/s of the paced scenarios")
    ap.add_argument("--max-rate", type=float, default=400.0, help="send rate of the max scenarios")
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--reliable-delay", type=float, default=5.0, help="ms of work per frame of the reliable receiver")
    ap.add_argument("--reliable-only", action="store_true", help="run only the reliable side-by-side scenario")
    args = ap.parse_args()
    reliable = reliable_side_by_side(
        seconds=args.seconds, rate=args.rate, width=args.width, height=args.height, delay=args.reliable_delay / 1000
    )
    print_reliable(reliable, args.width, args.height)
    if args.reliable_only:
        if args.json:
            args.json.write_text(json.dumps({"reliable": reliable, "machine": {"cpus": os.cpu_count()}}, indent=2))
        return 0
    common = dict(seconds=args.seconds, rate=args.rate, max_rate=args.max_rate, width=args.width, height=args.height)
    rows = [stall_ab(seconds=args.seconds * 2, width=args.width, height=args.height)]
    ab = rows[0]
    print("  done: stalled A/B", file=sys.stderr, flush=True)
    plan = [
        dict(subs=1, stalled=False, mode="max"),
        dict(subs=2, stalled=False, mode="max"),
        dict(subs=1, stalled=True, mode="max"),
        dict(subs=1, stalled=False, mode="paced"),
        dict(subs=2, stalled=False, mode="paced"),
        dict(subs=1, stalled=True, mode="paced"),
    ]
    for p in plan:
        rows.append(run_scenario(**p, **common))  # type: ignore[arg-type]
        r = rows[-1]
        print(f"  done: {r['scenario']}, {r['mode']}", file=sys.stderr, flush=True)

    def fmt(v: float | None, nd: int = 1) -> str:
        return "-" if v is None else f"{v:.{nd}f}"

    head = (
        f"{'scenario':<20} {'mode':<14} {'pub f/s':>8} {'send µs':>8} {'pub CPU%':>8} {'sub f/s':>8} {'MB/s':>8} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'lost %':>7}"
    )
    print(
        f"\n{args.width}x{args.height} RGBA ({args.width * args.height * 4 / 1e6:.1f} MB/frame) over tcp "
        f"loopback, {args.seconds:g} s per scenario, {os.cpu_count()} CPUs, libzmq {zmq.zmq_version()}"
    )
    print(head)
    print("-" * len(head))
    for r in rows[1:]:
        print(
            f"{r['scenario']:<20} {r['mode']:<14} {fmt(r['pub_fps']):>8} {fmt(r['send_us_p50'], 0):>8} "
            f"{fmt(r['pub_cpu_pct'], 0):>8} "
            f"{fmt(r['sub_fps_min']):>8} {fmt(r['mb_per_s'], 0):>8} {fmt(r['latency_ms_p50']):>7} "
            f"{fmt(r['latency_ms_p95']):>7} {fmt(r['lost_pct']):>7}"
        )
    print(
        f"stalled subscriber (busy-loop publisher, {len(ab['windows']['with'])} interleaved windows each): "
        f"{ab['pub_fps_with_stalled']:.0f} frames/s with it vs {ab['pub_fps_without_stalled']:.0f} without "
        f"(cost {ab['stalled_cost_pct']:+.1f} %), send call {ab['send_us_with_stalled']:.0f} vs "
        f"{ab['send_us_without_stalled']:.0f} µs wall, {ab['send_cpu_us_with_stalled']:.0f} vs "
        f"{ab['send_cpu_us_without_stalled']:.0f} µs CPU of the sending thread"
    )
    by = {(r["mode"], r["subscribers"], r["stalled"]): r for r in rows[1:]}
    cost = {}
    for mode in {r["mode"] for r in rows}:
        base, st = by.get((mode, 1, False)), by.get((mode, 1, True))
        if base and st:
            cost[mode] = 100.0 * (1 - st["pub_fps"] / base["pub_fps"])
            print(
                f"stalled subscriber, {mode}: publisher {st['pub_fps']:.0f} vs {base['pub_fps']:.0f} frames/s "
                f"without it (cost {cost[mode]:+.1f} %; negative = faster)"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": {
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                        "libzmq": zmq.zmq_version(),
                        "pyzmq": zmq.__version__,
                    },
                    "width": args.width,
                    "height": args.height,
                    "seconds": args.seconds,
                    "rows": rows,
                    "stalled_cost_pct": cost,
                    "stalled_ab": ab,
                    "reliable": reliable,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What writing MOV so that it stays playable costs: encode-only frames/s and file size of
``.mov`` outputs written as hybrid fragmented MOV (the sinks' way) vs a plain MOV (index
only at the end), side by side in one run, alternating, best of ``--repeat``. CPU time
(user + system, all threads) per frame is reported too: on a shared machine it is the
steadier measure of the work each way does.

Usage: python scripts/bench_fragments.py [--frames 48] [--size 1280x720] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
from bench_encoders import bench_sink, make_batches

from streammat.frames import StreamInfo
from streammat.sinks import _codecs, video

CASES = [
    ("prores_ks 4444", {}),
    ("prores_aw 4444", {"codec": "prores"}),
    ("h264 composite (.mov)", {"background": "green"}),
]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _plain(container: str, time_scale: int) -> dict[str, str]:
    return {"video_track_timescale": str(time_scale)}


@contextmanager
def muxing(options: Callable[[str, int], dict[str, str]]) -> Iterator[None]:
    """Make the video sink use ``options`` for its muxer."""
    saved = video.muxer_options
    video.muxer_options = options
    try:
        yield
    finally:
        video.muxer_options = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default="bench_fragments.json")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    batches = make_batches(w, h, args.frames)
    info = StreamInfo(w, h, Fraction(1, 30), rate=Fraction(30))
    modes = {"plain": _plain, "fragmented": _codecs.muxer_options}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, kw in CASES:
            best: dict[str, tuple[float, int]] = {}
            cpu: dict[str, float] = {}
            for rep in range(args.repeat):
                for mode, options in modes.items():
                    before = _cpu_seconds()
                    with muxing(options):
                        dt, size = bench_sink(f"{mode}-{rep}-{len(rows)}.mov", batches, info, folder, **kw)
                    used = _cpu_seconds() - before
                    cpu[mode] = min(cpu.get(mode, used), used)
                    if mode not in best or dt < best[mode][0]:
                        best[mode] = (dt, size)
            plain, frag = best["plain"], best["fragmented"]
            rows.append(
                {
                    "output": label,
                    "plain_fps": args.frames / plain[0],
                    "fragmented_fps": args.frames / frag[0],
                    "speed_ratio": plain[0] / frag[0],
                    "plain_cpu_ms_per_frame": 1000 * cpu["plain"] / args.frames,
                    "fragmented_cpu_ms_per_frame": 1000 * cpu["fragmented"] / args.frames,
                    "cpu_ratio": cpu["fragmented"] / cpu["plain"],
                    "plain_bytes": plain[1],
                    "fragmented_bytes": frag[1],
                    "size_ratio": frag[1] / plain[1],
                }
            )
    print(f"{w}x{h}, {args.frames} frames, best of {args.repeat}, {os.cpu_count()} CPUs, av {av.__version__}")
    head = ("output", "plain f/s", "frag f/s", "speed", "plain cpu ms", "frag cpu ms", "cpu", "plain MB", "frag MB")
    print(f"{head[0]:24} " + " ".join(f"{h:>12}" for h in head[1:]) + f" {'size':>7}")
    for r in rows:
        cells = (
            f"{r['plain_fps']:.1f}",
            f"{r['fragmented_fps']:.1f}",
            f"{r['speed_ratio']:.3f}",
            f"{r['plain_cpu_ms_per_frame']:.1f}",
            f"{r['fragmented_cpu_ms_per_frame']:.1f}",
            f"{r['cpu_ratio']:.3f}",
            f"{r['plain_bytes'] / 1e6:.2f}",
            f"{r['fragmented_bytes'] / 1e6:.2f}",
        )
        print(f"{r['output']:24} " + " ".join(f"{c:>12}" for c in cells) + f" {r['size_ratio']:7.4f}")
    Path(args.json).write_text(json.dumps({"size": [w, h], "frames": args.frames, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

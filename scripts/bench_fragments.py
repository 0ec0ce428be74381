"""What writing MOV so that it stays playable costs: encode-only frames/s and file size of
``.mov`` outputs written as hybrid fragmented MOV (the sinks' way) vs a plain MOV (index
only at the end), side by side in one run, alternating, best of ``--repeat``.

Usage: python scripts/bench_fragments.py [--frames 48] [--size 1280x720] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
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
            for rep in range(args.repeat):
                for mode, options in modes.items():
                    with muxing(options):
                        dt, size = bench_sink(f"{mode}-{rep}-{len(rows)}.mov", batches, info, folder, **kw)
                    if mode not in best or dt < best[mode][0]:
                        best[mode] = (dt, size)
            plain, frag = best["plain"], best["fragmented"]
            rows.append(
                {
                    "output": label,
                    "plain_fps": args.frames / plain[0],
                    "fragmented_fps": args.frames / frag[0],
                    "speed_ratio": plain[0] / frag[0],
                    "plain_bytes": plain[1],
                    "fragmented_bytes": frag[1],
                    "size_ratio": frag[1] / plain[1],
                }
            )
    print(f"{w}x{h}, {args.frames} frames, best of {args.repeat}, {os.cpu_count()} CPUs, av {av.__version__}")
    print(f"{'output':24} {'plain f/s':>10} {'frag f/s':>9} {'speed':>6} {'plain MB':>9} {'frag MB':>8} {'size':>6}")
    for r in rows:
        print(
            f"{r['output']:24} {r['plain_fps']:10.1f} {r['fragmented_fps']:9.1f} {r['speed_ratio']:6.3f} "
            f"{r['plain_bytes'] / 1e6:9.2f} {r['fragmented_bytes'] / 1e6:8.2f} {r['size_ratio']:6.4f}"
        )
    Path(args.json).write_text(json.dumps({"size": [w, h], "frames": args.frames, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

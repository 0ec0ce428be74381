"""``streammat sample OUT`` — make the sample clip (a person over a moving background)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="write a sample clip with a person to try streammat on")
    p.add_argument("output", nargs="?", default="sample.mp4", help="output file (default: sample.mp4)")
    p.add_argument("--seconds", type=float, default=10.0, help="length in seconds (default 10)")
    p.add_argument("--width", type=int, default=1280, help="frame width (default 1280)")
    p.add_argument("--height", type=int, default=720, help="frame height (default 720)")
    p.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    p.add_argument("--no-audio", action="store_true", help="leave out the audio track")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sample import make_sample_clip

    path = make_sample_clip(
        args.output,
        width=args.width,
        height=args.height,
        seconds=args.seconds,
        fps=args.fps,
        audio=not args.no_audio,
    )
    print(f"wrote {path}")
    return 0

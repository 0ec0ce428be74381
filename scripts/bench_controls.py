#!/usr/bin/env python
"""Benchmark: what the matte controls (smoothing, feather, every-N) cost, before and after a change.

The pipeline (decode → batch → matting → null sink) runs on a generated 720p clip with a
person (``streammat.sample.make_sample_clip``) and the ``selfie`` model, once per setting,
for two versions of the code side by side in one run: the working tree ("after") and a
git revision ("before", checked out into a temporary worktree). Runs alternate between the
two versions so load on a shared machine hits both alike; each cell is the best of
``--repeat`` runs. Prints a table and writes JSON.

    python scripts/bench_controls.py --before 4395b1e --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict[str, float | int]] = {
    "plain": {},
    "smoothing 0.5": {"smoothing": 0.5},
    "feather 3": {"feather": 3},
    "smoothing 0.5 + feather 3": {"smoothing": 0.5, "feather": 3},
    "every 2 + smoothing 0.5": {"every": 2, "smoothing": 0.5},
}


def child(clip: str, setting: str, batch: int) -> None:
    """One measurement in this process (the code under test comes from PYTHONPATH)."""
    from streammat.matting import create_matter
    from streammat.matting.sessions import create_session
    from streammat.matting.temporal import TemporalMatter
    from streammat.matting.threads import plan_threads
    from streammat.pipeline import Pipeline
    from streammat.sinks import NullSink
    from streammat.sources.file import FileSource

    plan = plan_threads()
    plan.apply()
    session = create_session("selfie", device="cpu", threads=plan.onnx_intra_op)
    matter = create_matter(session, device="cpu")
    options = SETTINGS[setting]
    if options:
        matter = TemporalMatter(matter, **options)  # type: ignore[arg-type]
    t = time.perf_counter()
    result = Pipeline(FileSource(clip, threads=plan.decode_threads), matter, [NullSink()], batch_size=batch).run()
    seconds = time.perf_counter() - t
    print(json.dumps({"frames": result.frames_out, "seconds": seconds, "fps": result.frames_out / seconds}))


def measure(tree: Path, clip: Path, setting: str, batch: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_controls.py"), "--child", str(clip), setting, str(batch)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {setting}: {out.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["fps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=False, default="HEAD", help="git revision to compare with")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length (720p, 30 fps)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--json", default="bench_controls.json")
    ap.add_argument("--child", nargs=3, metavar=("CLIP", "SETTING", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        clip, setting, batch = args.child
        child(clip, setting, int(batch))
        return

    from streammat.sample import make_sample_clip

    work = Path(tempfile.mkdtemp(prefix="bench-controls-"))
    clip = make_sample_clip(work / "clip.mp4", width=1280, height=720, seconds=args.seconds, fps=30, audio=False)
    before = work / "before"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
        check=True,
        capture_output=True,
    )
    trees = {"before": before, "after": ROOT}
    rows: dict[str, dict[str, float]] = {}
    try:
        for setting in SETTINGS:
            best = {"before": 0.0, "after": 0.0}
            for _ in range(args.repeat):
                for name, tree in trees.items():
                    best[name] = max(best[name], measure(tree, Path(clip), setting, args.batch))
            rows[setting] = best
            print(f"  {setting}: before {best['before']:.1f} after {best['after']:.1f} frames/s", file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)

    plain = rows["plain"]
    print(
        f"\nPipeline to a null sink, 720p, selfie, batch {args.batch}; {platform.node()}, {os.cpu_count()} cores;"
        f" before = {args.before}, best of {args.repeat}"
    )
    print(
        f"{'setting':<28} {'before f/s':>10} {'after f/s':>10} {'after/before':>12} {'cost before':>12} "
        f"{'cost after':>11}"
    )
    for setting, r in rows.items():
        cost_b = 1 - r["before"] / plain["before"]
        cost_a = 1 - r["after"] / plain["after"]
        print(
            f"{setting:<28} {r['before']:>10.1f} {r['after']:>10.1f} {r['after'] / r['before']:>11.2f}x "
            f"{cost_b:>11.0%} {cost_a:>11.0%}"
        )
    Path(args.json).write_text(json.dumps({"before": args.before, "batch": args.batch, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Benchmark: what the matte controls cost in a matter's finish step, before and after a change.

``TemporalMatter.finish`` (refinement, smoothing, threshold, feather) timed alone, batch by
batch, on the numpy batches the CPU pipeline makes, for two versions of the code side by
side in one run: the working tree ("after") and a git revision ("before", checked out into
a temporary worktree). The inner matter hands over masks made beforehand, so only the
controls are timed: the true alpha of ``streammat.quality.clips``' moving clip seen through
a 256×144 grid (a model's soft, blobby edges) over its frames (a person over a scrolling
texture, camera noise, H.264). Cases: the service's (640×480 streams, batches of one
frame, live's default smoothing) and files' (720p, batches of 8, refinement and motion
smoothing). Thread pools are sized as the pipeline sizes them (``plan_threads``). Each
measurement runs in a fresh process; processes alternate between the two
versions so the load of a shared machine weighs on both alike. Per batch: the median
wall time and the median CPU time of the process (all threads: a library's idle threads
that spin count). Prints a table and writes JSON.

    python scripts/bench_finish.py --before main --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: case -> (width, height, frames per batch, TemporalMatter options)
CASES: dict[str, tuple[int, int, int, dict[str, object]]] = {
    "serve 640x480 x1, smoothing 0.5": (640, 480, 1, {"smoothing": 0.5}),
    "serve 640x480 x1, smoothing 0.5 + refine": (640, 480, 1, {"smoothing": 0.5, "refine": "guided"}),
    "file 720p x8, refine + motion 0.8": (1280, 720, 8, {"smoothing": 0.8, "refine": "guided"}),
    "file 720p x8, ema 0.5": (1280, 720, 8, {"smoothing": 0.5, "motion": None}),
}
FRAMES = 48


def child(case: str) -> None:
    """One measurement in this process (the code under test comes from PYTHONPATH)."""
    from fractions import Fraction

    import cv2
    import numpy as np

    from streammat.compose import PassThrough
    from streammat.frames import Batch
    from streammat.matting.temporal import TemporalMatter
    from streammat.matting.threads import plan_threads
    from streammat.quality.clips import make_clip

    plan_threads().apply()  # torch's and OpenCV's pools sized as the pipeline and the service size them
    width, height, size, options = CASES[case]
    clip = make_clip("moving", frames=FRAMES, width=width, height=height)
    coarse = [cv2.resize(a, (256, 144), interpolation=cv2.INTER_AREA) for a in clip.alpha]
    masks = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse])
    matter = TemporalMatter(PassThrough(), **options)  # type: ignore[arg-type]
    wall, cpu = [], []
    for rep in range(2):  # the first pass warms up (imports, caches)
        for start in range(0, FRAMES - size + 1, size):
            idx = tuple(range(rep * FRAMES + start, rep * FRAMES + start + size))
            batch = Batch(
                clip.frames[start : start + size], idx, Fraction(1, 30), idx, alphas=masks[start : start + size]
            )
            plan = matter.infer(matter.prepare(batch))
            t, c = time.perf_counter(), time.process_time()
            matter.finish(batch, plan)
            if rep:
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
    print(json.dumps({"wall_ms": statistics.median(wall) * 1e3, "cpu_ms": statistics.median(cpu) * 1e3}))


def measure(tree: Path, case: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(ROOT / "scripts" / "bench_finish.py"), "--child", case]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=tree)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {case}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="HEAD", help="git revision to compare with (default: HEAD)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per case and version")
    ap.add_argument("--json", default="bench_finish.json")
    ap.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench_finish_") as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before], check=True)
        try:
            runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {"before": [], "after": []} for c in CASES}
            for r in range(args.rounds):
                for case in CASES:
                    for name, tree in (("before", before), ("after", ROOT)):
                        runs[case][name].append(measure(tree, case))
                        print(f"round {r + 1}, {case}, {name}: {runs[case][name][-1]}", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    rows = []
    print(f"\nfinish step per batch, medians of {args.rounds} processes ({platform.node()}, {os.cpu_count()} CPUs)")
    print("| case | before: ms wall | CPU ms | after: ms wall | CPU ms | CPU after / before |")
    print("|---|---|---|---|---|---|")
    for case, by in runs.items():
        med = {
            name: {key: statistics.median(m[key] for m in ms) for key in ("wall_ms", "cpu_ms")}
            for name, ms in by.items()
        }
        ratio = med["after"]["cpu_ms"] / med["before"]["cpu_ms"]
        print(
            f"| {case} | {med['before']['wall_ms']:.2f} | {med['before']['cpu_ms']:.2f} | "
            f"{med['after']['wall_ms']:.2f} | {med['after']['cpu_ms']:.2f} | {ratio:.2f} |"
        )
        rows.append({"case": case, "before": med["before"], "after": med["after"], "cpu_ratio": ratio, "runs": by})
    Path(args.json).write_text(json.dumps({"before": args.before, "cases": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()

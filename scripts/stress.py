#!/usr/bin/env python
"""Stress: interrupt `streammat process` (every output format) and `streammat live` at random
moments, with single and double signals, while a CPU burner keeps the machine busy.

Every run must end by itself within ``--deadline`` seconds of its first signal (else it is a
hang and is killed), leave no temporary file, and leave an output that opens and decodes
(a partial for `process`, the final recording for `live`) — or none, when the signal came
before the first frame was written. Prints a table and writes JSON.

    python scripts/stress.py --runs 50            # 50 per format and signal kind (long)
    python scripts/stress.py --runs 5 --model u2netp --tiny   # quick check with the test model
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUTPUTS = {"mov": "out.mov", "webm": "out.webm", "mkv": "out.mkv", "png": "out/"}


def burn(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) % 2**31


def outputs_ok(folder: Path, name: str) -> tuple[bool, str]:
    """(playable-or-absent, what was found) for the output ``name`` in ``folder``."""
    from streammat.readback import read_rgba

    leftovers = [p.name for p in folder.iterdir() if ".tmp-" in p.name]
    if leftovers:
        return False, f"temporary files left: {leftovers}"
    stem, suffix = Path(name.rstrip("/")).stem, Path(name.rstrip("/")).suffix
    found = [p for p in folder.iterdir() if p.name.startswith(stem) and p.name != "in.mp4"]
    if not found:
        return True, "no output (stopped before the first frame)"
    for p in found:
        try:
            n = sum(1 for _ in read_rgba(p))
        except Exception as exc:  # noqa: BLE001 - reported as a failure
            return False, f"{p.name} does not decode: {exc}"
        if n == 0:
            return False, f"{p.name} has no frames"
    return True, ", ".join(sorted(p.name for p in found)) + f"{suffix and ''}"


def one_run(
    cmd: list[str], folder: Path, name: str, signals: int, rng: random.Random, deadline: float, env: dict[str, str]
) -> dict[str, object]:
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0.5, 6.0))  # a random moment: loading, first frames, or mid-stream
    t = time.monotonic()
    hang = False
    try:
        for _ in range(signals):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            time.sleep(rng.uniform(0.0, 0.3))
        proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        hang = True
        proc.kill()
        proc.wait()
    took = time.monotonic() - t
    stderr = proc.stderr.read() if proc.stderr else ""
    ok, found = outputs_ok(folder, name)
    return {
        "exit": proc.returncode,
        "hang": hang,
        "seconds_to_exit": round(took, 2),
        "traceback": "Traceback" in stderr,
        "output_ok": ok,
        "found": found,
        "stderr_tail": stderr.strip().splitlines()[-3:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="runs per format and signal kind")
    ap.add_argument("--model", default="selfie")
    ap.add_argument("--tiny", action="store_true", help="install the tiny test model as --model (no real model)")
    ap.add_argument("--deadline", type=float, default=30.0, help="seconds after the first signal before a hang")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default="bench_stress.json")
    args = ap.parse_args()

    from streammat.testing import camera_clip, install_model, make_clip, tiny_u2net_model

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="stress-"))
    env = dict(os.environ)
    if args.tiny:
        install_model(work / "home", args.model, tiny_u2net_model())
        env["REMBG_HOME"] = str(work / "home")
    clip = make_clip(work / "in.mp4", width=320, height=240, frames=1500, rate=30)
    cam = camera_clip(work / "cam.avi", frames=30, fps=30)
    stop = multiprocessing.Event()
    burner = multiprocessing.Process(target=burn, args=(stop,), daemon=True)
    burner.start()
    results: dict[str, list[dict[str, object]]] = {}
    try:
        cases = [(f"process {fmt}", ["process", str(clip), "-o", out], out) for fmt, out in OUTPUTS.items()]
        cases.append(("live mov", ["live", "--camera", str(cam), "--loop", "-o", "take.mov"], "take.mov"))
        for label, argv, out in cases:
            for signals in (1, 2):
                key = f"{label}, {'double' if signals == 2 else 'single'} Ctrl-C"
                results[key] = []
                for _ in range(args.runs):
                    folder = Path(tempfile.mkdtemp(dir=work))
                    cmd = [sys.executable, "-m", "streammat", *argv, "--model", args.model]
                    results[key].append(one_run(cmd, folder, out, signals, rng, args.deadline, env))
                bad = [r for r in results[key] if r["hang"] or not r["output_ok"] or r["traceback"]]
                print(f"  {key}: {len(results[key]) - len(bad)}/{len(results[key])} clean", file=sys.stderr)
    finally:
        stop.set()
        burner.join(5)

    print(f"\nstress: {args.runs} runs per row, model {args.model}, a CPU burner beside, {os.cpu_count()} cores")
    print(f"{'case':<36} {'runs':>5} {'hangs':>6} {'temp/bad output':>16} {'tracebacks':>11} {'max s to exit':>14}")
    for key, runs in results.items():
        print(
            f"{key:<36} {len(runs):>5} {sum(bool(r['hang']) for r in runs):>6} "
            f"{sum(not r['output_ok'] for r in runs):>16} {sum(bool(r['traceback']) for r in runs):>11} "
            f"{max(float(r['seconds_to_exit']) for r in runs):>14.1f}"  # type: ignore[arg-type]
        )
    Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Model-only throughput of the built-in selfie ONNX models (no resizing, no PIL, no rembg).

    python scripts/bench_model.py [--threads 2] [--seconds 3] [--json bench_model.json]

For each variant and batch size (1 and 8) it runs the onnxruntime session on a random
NHWC float32 batch for a few seconds after a warm-up, in 0.5 s windows, then prints the
median frames/s (and ms/frame) and the best window, plus the size of the stored models and
the load average (the machine is shared: read the numbers with it). Missing models are
pulled first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np


def bench(path: Path, batch: int, threads: int, seconds: float, hw: tuple[int, int]) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).random((batch, *hw, 3), dtype=np.float32)
    for _ in range(3):
        sess.run(None, {name: x})
    # short windows: on a shared machine the median is the typical rate, the best one is
    # what this CPU does when nothing else runs
    rates, runs, deadline = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(rates) < 3:
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 0.5 or n < 2:
            sess.run(None, {name: x})
            n += 1
        rates.append(n * batch / elapsed)
        runs += n
    median, best = float(np.median(rates)), max(rates)
    return {
        "batch": batch,
        "runs": runs,
        "frames_per_s": round(median, 1),
        "ms_per_frame": round(1000 / median, 2),
        "best_frames_per_s": round(best, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--json", type=Path, default=Path("bench_model.json"), metavar="PATH")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    import onnxruntime as ort

    from streammat.models import store
    from streammat.models.selfie import SELFIE_INPUT_SIZES

    rows, models = [], {}
    load = os.getloadavg()
    for name, hw in SELFIE_INPUT_SIZES.items():
        store.ensure_available(name)
        path = store.model_file(name)
        models[name] = {"path": str(path), "bytes": path.stat().st_size}
        for batch in args.batches:
            stats = bench(path, batch, args.threads, args.seconds, hw)
            rows.append({"model": name, "input_hw": list(hw), **stats})

    cores = os.cpu_count()
    print(f"onnxruntime {ort.__version__}, CPU, intra-op threads {args.threads}, {cores} cores visible")
    print(f"load average before: {load[0]:.2f} after: {os.getloadavg()[0]:.2f}")
    print(f"{'model':<18}{'input HxW':>10}{'batch':>7}{'frames/s':>10}{'ms/frame':>10}{'best f/s':>10}")
    for r in rows:
        hw = "x".join(map(str, r["input_hw"]))
        print(
            f"{r['model']:<18}{hw:>10}{r['batch']:>7}{r['frames_per_s']:>10.1f}{r['ms_per_frame']:>10.2f}"
            f"{r['best_frames_per_s']:>10.1f}"
        )
    for name, m in models.items():
        print(f"stored {name}: {m['bytes']:,} bytes  {m['path']}")
    result = {
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "load_average_before": load[0],
        "seconds": args.seconds,
        "results": rows,
        "models": models,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

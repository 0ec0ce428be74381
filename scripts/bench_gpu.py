#!/usr/bin/env python
"""Benchmark: the GPU path against the CPU, side by side, on a generated 1080p clip.

For each model — ``selfie`` (the built-in model) and ``u2net``: a U²-Net-shaped graph with
random weights (``streammat.testing.u2net_graph``, 44 M parameters, the cost of rembg's
u2net) — and each column — CPU (onnxruntime with ``--cpu-threads`` threads, 2 by default:
the development machines' two cores) and GPU (``--device cuda``: onnxruntime's CUDA
provider when granted, else the torch backend) — it measures:

- model alone (the runner on prepared inputs) and the matting stage (upload, resize,
  normalise, model, post-processing, upsampling, the alpha back on the host) at each
  batch size (``--batches``, default 1,8,32);
- the pipeline (decode → matting → sink) to a null sink, to FFV1 ``.mkv`` and to ProRes
  4444 ``.mov`` at ``--pipeline-batches``; decoding alone once;
- on the GPU: the matting stage with CUDA graphs, with a plain (unpinned) upload, and with
  threshold, feather and a composite finished on the device against on the host, to see
  whether each piece helps; and the torch profiler's count of host<->device copies
  between pre-processing, model and post-processing (``round_trips``: one batch through
  the device path with threshold, feather and a composite, and a Chrome trace of it
  beside the JSON). Without CUDA that path still runs, on the CPU, "not measured".

Work is ordered GPU first, CPU's heaviest last; whatever would overrun ``--budget``
seconds is skipped and marked so. Prints one table and writes JSON (``--json``).

    python scripts/bench_gpu.py --json out/bench_gpu.json        # on a GPU machine
    python scripts/bench_gpu.py --small --json /tmp/b.json       # a quick CPU dry run
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("bench_gpu")

SINKS = {"null": None, "ffv1": "out.mkv", "prores": "out.mov"}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def allows(self, estimate: float) -> bool:
        return time.monotonic() + estimate <= self.deadline


def make_batch(images: np.ndarray, start: int) -> Any:
    from streammat.frames import Batch

    n = images.shape[0]
    idx = tuple(range(start, start + n))
    return Batch(torch.from_numpy(images), idx, Fraction(1, 30), idx)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def repeat(fn: Callable[[], Any], frames_per_call: int, min_seconds: float, max_calls: int = 50) -> dict[str, float]:
    """Call ``fn`` until ``min_seconds`` have passed (at least once); frames/s over all calls."""
    calls, t0 = 0, time.perf_counter()
    while calls < max_calls:
        fn()
        calls += 1
        sync()
        if time.perf_counter() - t0 >= min_seconds:
            break
    seconds = time.perf_counter() - t0
    return {"frames": calls * frames_per_call, "seconds": seconds, "fps": calls * frames_per_call / seconds}


def decode(clip: Path, threads: int, keep: int) -> tuple[dict[str, float], np.ndarray]:
    from streammat.sources.file import FileSource

    src = FileSource(clip, threads=threads)
    src.open()
    kept, n, t0 = [], 0, time.perf_counter()
    for frame in src:
        n += 1
        if len(kept) < keep:
            kept.append(np.asarray(frame.image))
    seconds = time.perf_counter() - t0
    src.close()
    return {"frames": n, "seconds": seconds, "fps": n / seconds}, np.stack(kept)


def pipeline(clip: Path, matter: Any, sink: str, workdir: Path, batch: int, threads: int) -> dict[str, float]:
    from streammat.pipeline import Pipeline
    from streammat.sinks import NullSink, create_sink
    from streammat.sources.file import FileSource

    target = SINKS[sink]
    # every model writes the same names: the previous model's output is replaced
    out = (
        NullSink()
        if target is None
        else create_sink(str(workdir / f"b{batch}-{target}"), threads=threads, overwrite=True)
    )
    result = Pipeline(FileSource(clip, threads=max(2, threads // 4)), matter, [out], batch_size=batch).run()
    return {"frames": result.frames_out, "seconds": result.elapsed, "fps": result.fps}


def round_trips(matter: Any, images: np.ndarray, trace: Path) -> dict[str, Any]:
    """The torch profiler's copies between host and device while one batch goes the device
    path: ``DeviceResident`` around the matte controls (threshold, feather) compositing
    over green, step by step — pre-processing (upload, resize, normalise), the model,
    post-processing (upsampling, threshold, feather, composite) and the copy back. No copy
    may go device -> host before the copy back. The whole way is also written as a Chrome
    trace (``trace``). Without CUDA the same code runs on CPU tensors and nothing is
    measured."""
    from streammat.matting.gpu import DeviceResident, device_copies, matter_device
    from streammat.matting.temporal import TemporalMatter
    from streammat.sinks.compositing import Compositor, parse_background

    controls = TemporalMatter(matter, threshold=0.5, feather=4)
    resident = DeviceResident(controls, matter_device(matter), compositor=Compositor(parse_background("green")))
    batch = make_batch(images, 0)
    resident(batch)  # warm-up: kernels, plans, the plate on the device
    sync()
    step, pre = device_copies(lambda: resident.prepare(batch))
    step, model = device_copies(lambda: resident.infer(step))
    made, post = device_copies(lambda: resident.finish_on_device(step))
    _, back = device_copies(lambda: [t.to("cpu") for t in made if t is not None])
    device_copies(lambda: resident(batch), trace=trace)
    copies = {"pre-processing": pre, "model": model, "post-processing": post, "copy back": back}
    if not torch.cuda.is_available():
        return {"status": "not measured (no CUDA)", "copies": copies, "trace": str(trace)}
    before = sum(c["DtoH"] for c in (pre, model, post))
    return {
        "status": "no host round trip" if before == 0 else f"{before} device->host copies before the copy back",
        "no_round_trip": before == 0,
        "copies": copies,
        "trace": str(trace),
        "runner": matter.choice.runner,
    }


def finishing(matter: Any, batch: int, width: int, height: int) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The matting stage with threshold, feather 4 and a composite over green, finished on
    the device (``DeviceResident``: alpha and composite back) and on the host (the alpha
    back, then OpenCV's feather and numpy's composite), to see whether finishing on the
    device helps."""
    from streammat.matting.gpu import DeviceResident, matter_device
    from streammat.matting.temporal import TemporalMatter
    from streammat.sinks.compositing import Compositor, parse_background

    green = parse_background("green")
    resident = DeviceResident(
        TemporalMatter(matter, threshold=0.5, feather=4), matter_device(matter), compositor=Compositor(green)
    )
    controls, compositor = TemporalMatter(matter, threshold=0.5, feather=4), Compositor(green)
    compositor.prepare(width, height)

    def on_host(b: Any) -> Any:
        matted = controls(b)
        return compositor.composites(b.images.numpy(), matted.alpha.numpy())

    return resident, on_host


def model_home(workdir: Path, small: bool) -> dict[str, str]:
    """A model home with the u2net-shaped graph and the selfie models (linked from the
    current home, which the carried folder or ``streammat models pull`` filled)."""
    from streammat.models import store
    from streammat.testing import install_model
    from streammat.testing.u2net_graph import u2net_graph

    home = workdir / "home"
    notes = {}
    for name in ("selfie", "selfie-landscape"):
        src = store.model_file(name)
        if src.is_file():
            dst = home / "models" / name / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                shutil.copyfile(src, dst)
        else:
            notes[name] = f"not in {src}: carry it or run `streammat models pull selfie`"
    t0 = time.perf_counter()
    install_model(home, "u2net", u2net_graph("u2net", width=0.125 if small else 1.0))
    log.warning("u2net-shaped graph built in %.1f s", time.perf_counter() - t0)
    os.environ["REMBG_HOME"] = str(home)
    os.environ.pop("U2NET_HOME", None)
    return notes


def make_matter(model: str, column: str, cpu_threads: int) -> Any:
    from streammat.matting import create_matter
    from streammat.matting.sessions import create_session

    if column == "cpu":
        torch.set_num_threads(cpu_threads)
        session = create_session(model, device="cpu", threads=cpu_threads)
        return create_matter(session, device="cpu", backend="ort")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    return create_matter(create_session(model, device="cuda"), device="cuda")


def run_column(model: str, column: str, args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    budget, frames, res = ctx["budget"], ctx["frames"], {}
    try:
        matter = make_matter(model, column, args.cpu_threads)
    except Exception as exc:  # noqa: BLE001 - a missing model is a row note, not the end
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    res["runner"] = matter.choice.describe()
    batches = [int(b) for b in args.batches.split(",")]
    fps_hint = None
    for b in batches:
        est = 3 * b / fps_hint if fps_hint else 0.0
        if not budget.allows(est):
            res[f"model@{b}"] = res[f"matting@{b}"] = {"skipped": "time budget"}
            continue
        x = matter.prepare(make_batch(frames[:b], 0))
        if column != "cpu" or b == batches[0]:
            matter.infer(x)  # warm-up (CUDA: kernels, graphs; CPU: allocations)
            matter(make_batch(frames[:b], 0))
        res[f"model@{b}"] = repeat(lambda x=x: matter.infer(x), b, args.min_seconds)
        res[f"matting@{b}"] = repeat(lambda b=b: matter(make_batch(frames[:b], 0)), b, args.min_seconds)
        fps_hint = res[f"matting@{b}"]["fps"]
    for b in [int(b) for b in args.pipeline_batches.split(",")]:
        for sink in SINKS:
            speeds = [v["fps"] for k, v in res.items() if k.startswith("matting@") and "fps" in v]
            speed = min(speeds) if speeds else 1.0
            if not budget.allows(ctx["clip_frames"] / min(speed, ctx["decode_fps"]) + 2):
                res[f"pipeline:{sink}@{b}"] = {"skipped": "time budget"}
                continue
            res[f"pipeline:{sink}@{b}"] = pipeline(ctx["clip"], matter, sink, ctx["workdir"], b, ctx["threads"])
    if column == "gpu" or not torch.cuda.is_available():  # without CUDA: the code path, not measured
        trace = Path(args.json).with_name(f"profile_{model}_{column}.json")
        res["round_trips"] = round_trips(matter, frames[: min(batches[-1], 8)], trace)
    if column == "gpu":
        b = batches[-1]
        if hasattr(matter._runner, "cuda_graphs"):
            matter._runner.cuda_graphs = True
            matter(make_batch(frames[:b], 0))
            res[f"matting+cuda_graphs@{b}"] = repeat(lambda: matter(make_batch(frames[:b], 0)), b, args.min_seconds)
            matter._runner.cuda_graphs = False
        on_device, on_host = finishing(matter, b, ctx["frames"].shape[2], ctx["frames"].shape[1])
        res[f"matting+finish on device@{b}"] = repeat(lambda: on_device(make_batch(frames[:b], 0)), b, args.min_seconds)
        res[f"matting+finish on host@{b}"] = repeat(lambda: on_host(make_batch(frames[:b], 0)), b, args.min_seconds)
        pinned = matter._upload
        matter._upload = lambda images: images.to(matter.device)
        res[f"matting+plain_upload@{b}"] = repeat(lambda: matter(make_batch(frames[:b], 0)), b, args.min_seconds)
        matter._upload = pinned
    return res


def report(result: dict[str, Any], path: Path) -> None:
    cols = result["columns"]
    print(f"\n{result['title']}")
    print(f"{'model':8s} {'measurement':28s} {cols['cpu']:>22s} {cols['gpu']:>26s} {'GPU/CPU':>8s}")
    for model, per in result["models"].items():
        keys = list(dict.fromkeys(k for c in per.values() for k in c if k not in ("runner", "round_trips", "error")))
        for c, v in per.items():
            print(f"{model:8s} {'runner (' + c + ')':28s} {v.get('runner', v.get('error', '-'))}")
        for k in keys:
            cells = [per.get(c, {}).get(k, {}) for c in ("cpu", "gpu")]
            text = [f"{v['fps']:.1f}" if "fps" in v else v.get("skipped", "not measured yet") for v in cells]
            ratio = f"{cells[1]['fps'] / cells[0]['fps']:.1f}x" if all("fps" in v for v in cells) else "-"
            print(f"{model:8s} {k:28s} {text[0]:>22s} {text[1]:>26s} {ratio:>8s}")
    print(f"decode only: {result['decode']['fps']:.1f} frames/s")
    for k, v in result["targets"].items():
        print(f"target {k}: {v}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {path}", flush=True)


def targets(result: dict[str, Any], batch: int) -> dict[str, str]:
    out = {}
    for model, per in result["models"].items():
        gpu = per.get("gpu", {}).get(f"matting@{batch}", {})
        # the CPU's throughput hardly depends on the batch: where its largest batch was cut
        # by the time budget, its best measured batch stands in (and is named)
        cpu_runs = {k: v for k, v in per.get("cpu", {}).items() if k.startswith("matting@") and "fps" in v}
        key = (
            f"matting@{batch}"
            if f"matting@{batch}" in cpu_runs
            else max(cpu_runs, key=lambda k: cpu_runs[k]["fps"], default=None)
        )
        name = f"{model} matting stage @{batch} >= 10x CPU"
        if key and "fps" in gpu:
            ratio = gpu["fps"] / cpu_runs[key]["fps"]
            out[name] = f"{'met' if ratio >= 10 else 'not met'} ({ratio:.1f}x the CPU's {key})"
        else:
            out[name] = "not measured yet"
        null = per.get("gpu", {}).get(f"pipeline:null@{batch}", {})
        if "fps" in null and "fps" in gpu:
            dec = result["decode"]["fps"]
            if gpu["fps"] <= dec:
                bound = "the matting stage"
            else:
                bound = "decoding" if null["fps"] >= 0.8 * dec else "neither: the pipeline's own overhead"
            out[f"{model} pipeline to null bound by"] = (
                f"{bound} (pipeline {null['fps']:.0f}, decode {dec:.0f}, matting {gpu['fps']:.0f} frames/s)"
            )
        trips = per.get("gpu", {}).get("round_trips") or per.get("cpu", {}).get("round_trips")
        if trips:
            steps = ", ".join(f"{k} {v['DtoH']}" for k, v in trips["copies"].items())
            measured = "no_round_trip" in trips  # without CUDA the profiler sees no copies at all
            text = f"{trips['status']} (device->host copies: {steps})" if measured else trips["status"]
            out[f"{model} no host round trip (profiler)"] = text
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="selfie,u2net")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--pipeline-batches", default="32")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=96, help="length of the generated clip")
    p.add_argument("--cpu-threads", type=int, default=2, help="threads of the CPU column's model")
    p.add_argument("--min-seconds", type=float, default=1.0, help="minimum time per measurement")
    p.add_argument("--budget", type=float, default=300.0, help="seconds; later measurements are skipped")
    p.add_argument("--small", action="store_true", help="dry run: 320x180, batches 1,4, a narrow u2net")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default="bench_gpu.json")
    args = p.parse_args(argv)
    if args.small:
        args.size, args.frames, args.batches, args.pipeline_batches = "320x180", 16, "1,4", "4"
        args.min_seconds = min(args.min_seconds, 0.2)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    from streammat.matting.threads import plan_threads
    from streammat.sample import make_sample_clip

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-gpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))
    notes = model_home(workdir, args.small)
    clip = make_sample_clip(workdir / "clip.mp4", width=width, height=height, seconds=args.frames / 30, audio=False)
    threads = plan_threads().encode_threads
    batches = [int(b) for b in args.batches.split(",")]
    dec, frames = decode(clip, max(2, threads // 4), max(batches))
    cuda = torch.cuda.is_available()
    gpu_name = torch.cuda.get_device_name(0) if cuda else None
    result: dict[str, Any] = {
        "title": f"{width}x{height}, {args.frames} frames; GPU: {gpu_name or 'none'}; {os.cpu_count()} cores",
        "columns": {"cpu": f"CPU ({args.cpu_threads} thr) fps", "gpu": f"GPU ({gpu_name or 'none'}) fps"},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "decode": dec,
        "notes": notes,
        "models": {},
    }
    ctx = {"budget": Budget(args.budget), "frames": frames, "clip": clip, "clip_frames": dec["frames"]}
    ctx.update(workdir=workdir, threads=threads, decode_fps=dec["fps"])
    models = [m for m in args.models.split(",") if m and m not in notes]
    columns = (["gpu"] if cuda else []) + ["cpu"]
    for column in columns:  # GPU first: the numbers this script exists for
        for model in models:
            log.warning("%s on %s", model, column)
            result["models"].setdefault(model, {})[column] = run_column(model, column, args, ctx)
    result["targets"] = targets(result, batches[-1])
    report(result, Path(args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())

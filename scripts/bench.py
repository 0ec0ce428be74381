#!/usr/bin/env python
"""Benchmark: the seed's per-frame loop against streammat's batched stage and pipeline.

One run, one machine, the same frames (a generated 720p clip with a person,
``streammat.sample.make_sample_clip``) and the same model (``selfie`` unless ``--model``):

1. seed: ``reference.remove_background`` (the ComfyUI node's code path) on float batches
   of 8, with a session made by ``rembg.new_session`` with rembg's default options —
   decode excluded, as in ComfyUI where frames arrive as tensors;
2. matting stage alone (``create_matter`` → ``BatchedMatter``) on the same frames;
   the whole pipeline (decode → batch → matting → sink) to a ``NullSink``;
3. the whole pipeline to each alpha format (``create_sink``: .mov, .webm, .mkv, PNGs);
4. each stage alone, the limits: decode only, model only (``inner_session.run`` on
   preprocessed batches), encode only per format (precomputed matted batches);
5. peak RSS (``ru_maxrss``) of the pipeline on a 10 s and a 60 s clip, each in a
   subprocess.

Ratios: pipeline/seed (target >= 5x); pipeline vs the back-to-back limit
``1/(t_decode + t_model + t_encode)`` (target >= 1.0x, aim 1.2x); RSS 60 s vs 10 s
(within 10 %). Prints a table and writes JSON (``--json``).

    python scripts/bench.py                       # everything, selfie, ./bench-work
    python scripts/bench.py --formats mkv --skip-rss
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("bench")

FORMATS = {"mov": "out.mov", "webm": "out.webm", "mkv": "out.mkv", "png": "png/"}


_OVERRIDES: dict[str, int] | None = None


def _setup(model: str, device: str) -> tuple[Any, Any, Any]:
    from streammat._allocator import tune_allocator
    from streammat.matting import create_matter
    from streammat.matting.sessions import create_session
    from streammat.matting.threads import plan_threads

    tune_allocator()  # as the CLI does
    plan = plan_threads()
    overrides = {k: v for k, v in (_OVERRIDES or {}).items() if v}
    if overrides:
        plan = replace(plan, **overrides)
    plan.apply()
    session = create_session(model, device=device, threads=plan.onnx_intra_op)
    return plan, session, create_matter(session, device=device)


def _seed_session(model: str) -> Any:
    """The session as the seed node makes it: rembg's ``new_session`` with its defaults."""
    import rembg

    from streammat.models import selfie

    selfie.register()
    return rembg.new_session(model, providers=["CPUExecutionProvider"])


def _clip(workdir: Path, seconds: int) -> Path:
    from streammat.sample import make_sample_clip

    path = workdir / f"clip{seconds}s.mp4"
    if not path.exists():
        log.warning("generating %s", path)
        make_sample_clip(path, width=1280, height=720, seconds=seconds, fps=30, audio=True)
    return path


def _batch(images: np.ndarray, start: int) -> Any:
    from streammat.frames import Batch

    n = images.shape[0]
    idx = tuple(range(start, start + n))
    return Batch(torch.from_numpy(images), idx, Fraction(1, 30), idx)


def decode_only(clip: Path, threads: int, keep: int) -> tuple[dict[str, float], np.ndarray]:
    from streammat.sources.file import FileSource

    src = FileSource(clip, threads=threads)
    src.open()
    kept: list[np.ndarray] = []
    n = 0
    t = time.perf_counter()
    for frame in src:
        n += 1
        if len(kept) < keep:
            kept.append(np.asarray(frame.image))
    dt = time.perf_counter() - t
    src.close()
    return {"frames": n, "seconds": dt}, np.stack(kept)


def seed_loop(session: Any, frames: np.ndarray, batch: int) -> dict[str, float]:
    from streammat.matting.reference import remove_background

    dt = 0.0
    for i in range(0, len(frames), batch):
        x = torch.from_numpy(frames[i : i + batch]).float().div_(255.0)  # ComfyUI IMAGE
        t = time.perf_counter()
        remove_background(session, x)
        dt += time.perf_counter() - t
    return {"frames": len(frames), "seconds": dt}


def matting_only(matter: Any, frames: np.ndarray, batch: int) -> tuple[dict[str, float], list[Any]]:
    matter(_batch(frames[:batch], 0))  # warm-up
    out, dt = [], 0.0
    for i in range(0, len(frames) - batch + 1, batch):
        b = _batch(frames[i : i + batch], i)
        t = time.perf_counter()
        out.append(matter(b))
        dt += time.perf_counter() - t
    return {"frames": len(out) * batch, "seconds": dt}, out


def model_only(matter: Any, frames: np.ndarray, batch: int) -> dict[str, float] | None:
    from streammat.matting.batched import preprocess_array

    runner = getattr(matter, "_runner", None)
    if runner is None:  # exact rembg path: no separable model stage
        return None
    inputs = [preprocess_array(frames[i : i + batch], matter.family) for i in range(0, len(frames) - batch + 1, batch)]
    runner(inputs[0])
    t = time.perf_counter()
    for x in inputs:
        runner(x)
    return {"frames": len(inputs) * batch, "seconds": time.perf_counter() - t}


def encode_only(fmt: str, workdir: Path, matted: list[Any], frames: int, threads: int) -> dict[str, float]:
    from streammat.frames import StreamInfo
    from streammat.sinks import create_sink

    first = matted[0].batch
    info = StreamInfo(width=first.width, height=first.height, time_base=Fraction(1, 30), rate=Fraction(30))
    (workdir / "encode-only").mkdir(parents=True, exist_ok=True)
    sink = create_sink(str(workdir / "encode-only" / FORMATS[fmt]), threads=threads, overwrite=True)
    n, i = 0, 0
    t = time.perf_counter()
    sink.open(info)
    while n < frames:
        mb = matted[i % len(matted)]
        sink.write(_retime(mb, n))
        n += len(mb)
        i += 1
    sink.close(complete=True)
    return {"frames": n, "seconds": time.perf_counter() - t}


def _retime(mb: Any, start: int) -> Any:
    from streammat.frames import Batch, MattedBatch

    b = mb.batch
    idx = tuple(range(start, start + len(b)))
    return MattedBatch(Batch(b.images, idx, b.time_base, idx), mb.alpha)


def pipeline(clip: Path, matter: Any, sink_spec: str | None, workdir: Path, plan: Any, batch: int) -> dict[str, Any]:
    from streammat.pipeline import Pipeline
    from streammat.sinks import NullSink, create_sink
    from streammat.sources.file import FileSource

    (workdir / "pipeline").mkdir(parents=True, exist_ok=True)
    sink = (
        NullSink()
        if sink_spec is None
        else create_sink(str(workdir / "pipeline" / sink_spec), threads=plan.encode_threads, overwrite=True)
    )
    result = Pipeline(FileSource(clip, threads=plan.decode_threads), matter, [sink], batch_size=batch).run()
    return {"frames": result.frames_out, "seconds": result.elapsed, "busy": result.busy}


def rss_child(args: argparse.Namespace) -> None:
    plan, _session, matter = _setup(args.model, args.device)
    workdir = Path(args.workdir)
    spec = None if args.rss_format == "null" else FORMATS[args.rss_format]
    r = pipeline(Path(args.rss_child), matter, spec, workdir / f"rss-{Path(args.rss_child).stem}", plan, args.batch)
    r["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(r))


def _rss(args: argparse.Namespace, clip: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--rss-child",
        str(clip),
        "--rss-format",
        args.rss_format,
        "--model",
        args.model,
        "--device",
        args.device,
        "--workdir",
        args.workdir,
        "--batch",
        str(args.batch),
        "--onnx-threads",
        str(args.onnx_threads),
        "--decode-threads",
        str(args.decode_threads),
        "--encode-threads",
        str(args.encode_threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fps(r: dict[str, float] | None) -> float:
    return r["frames"] / r["seconds"] if r and r["seconds"] > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="selfie")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workdir", default="bench-work")
    p.add_argument("--clip", help="an existing clip instead of the generated 10 s one")
    p.add_argument("--frames", type=int, default=96, help="frames held in memory for the stage-alone runs")
    p.add_argument("--encode-frames", type=int, default=150)
    p.add_argument("--formats", default="mov,webm,mkv,png")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--only-rss", action="store_true", help="only the peak-RSS runs")
    p.add_argument("--rss-format", default="webm", choices=[*FORMATS, "null"])
    p.add_argument("--json", default="bench.json")
    p.add_argument("--onnx-threads", type=int, default=0, help="override the thread plan")
    p.add_argument("--decode-threads", type=int, default=0, help="override the thread plan")
    p.add_argument("--encode-threads", type=int, default=0, help="override the thread plan")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    global _OVERRIDES
    _OVERRIDES = {
        "onnx_intra_op": args.onnx_threads,
        "decode_threads": args.decode_threads,
        "encode_threads": args.encode_threads,
    }
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if args.rss_child:
        rss_child(args)
        return 0
    workdir = Path(args.workdir)
    formats = [f for f in args.formats.split(",") if f]
    if args.only_rss:
        res0: dict[str, Any] = {"model": args.model, "batch": args.batch, "matter": "-", "plan": "-"}
        run_rss(res0, args, Path(args.clip) if args.clip else _clip(workdir, 10))
        report(res0, args)
        return 0
    plan, session, matter = _setup(args.model, args.device)
    clip = Path(args.clip) if args.clip else _clip(workdir, 10)
    res: dict[str, Any] = {
        "model": args.model,
        "batch": args.batch,
        "clip": str(clip),
        "plan": plan.__dict__,
        "matter": type(matter).__name__,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
    }
    st: dict[str, Any] = {}
    log.warning("decode only")
    st["decode"], frames = decode_only(clip, plan.decode_threads, args.frames)
    log.warning("seed loop")
    st["seed"] = seed_loop(_seed_session(args.model), frames, args.batch)
    log.warning("matting stage")
    st["matting"], matted = matting_only(matter, frames, args.batch)
    log.warning("model only")
    st["model"] = model_only(matter, frames, args.batch)
    log.warning("pipeline -> null")
    st["pipeline:null"] = pipeline(clip, matter, None, workdir, plan, args.batch)
    for f in formats:
        log.warning("encode only %s", f)
        st[f"encode:{f}"] = encode_only(f, workdir, matted, args.encode_frames, plan.encode_threads)
        log.warning("pipeline -> %s", f)
        st[f"pipeline:{f}"] = pipeline(clip, matter, FORMATS[f], workdir, plan, args.batch)
    res["stages"] = st

    t_dec, t_mod, t_mat = 1 / fps(st["decode"]), 1 / fps(st["model"]), 1 / fps(st["matting"])
    ratios: dict[str, float] = {
        "pipeline_null/seed": fps(st["pipeline:null"]) / fps(st["seed"]),
        "matting/seed": fps(st["matting"]) / fps(st["seed"]),
    }
    for f in ["null", *formats]:
        t_enc = 0.0 if f == "null" else 1 / fps(st[f"encode:{f}"])
        ratios[f"pipeline_{f}/limit(model)"] = fps(st[f"pipeline:{f}"]) * (t_dec + t_mod + t_enc)
        ratios[f"pipeline_{f}/limit(matting)"] = fps(st[f"pipeline:{f}"]) * (t_dec + t_mat + t_enc)
        if f != "null":
            ratios[f"pipeline_{f}/seed"] = fps(st[f"pipeline:{f}"]) / fps(st["seed"])
    res["ratios"] = ratios
    report(res, args)  # the stage results are kept even if the RSS runs fail
    if not args.skip_rss:
        run_rss(res, args, clip)
        report(res, args)
    return 0


def run_rss(res: dict[str, Any], args: argparse.Namespace, clip: Path) -> None:
    log.warning("peak RSS, 10 s and 60 s clips (subprocesses, sink %s)", args.rss_format)
    rss: dict[str, Any] = {}
    for label, path in (("10s", clip), ("60s", _clip(Path(args.workdir), 60))):
        try:
            rss[label] = _rss(args, path)
        except subprocess.CalledProcessError as exc:
            rss[label] = {"error": (exc.stderr or "").strip().splitlines()[-1:]}
    res["rss"] = rss
    if all("maxrss_mb" in v for v in rss.values()):
        res.setdefault("ratios", {})["rss_60s/10s"] = rss["60s"]["maxrss_mb"] / rss["10s"]["maxrss_mb"]


def report(res: dict[str, Any], args: argparse.Namespace) -> None:
    st = res.get("stages", {})
    print(
        f"\nmodel {res['model']}, batch {res['batch']}, {res['matter']}, {os.cpu_count()} cores, threads {res['plan']}"
    )
    print(f"{'stage':24s} {'frames':>7s} {'seconds':>8s} {'frames/s':>9s}")
    for k, v in st.items():
        if v is not None:
            print(f"{k:24s} {v['frames']:7d} {v['seconds']:8.2f} {fps(v):9.1f}")
    for k, v in res.get("rss", {}).items():
        label = f"rss {k} ({args.rss_format})"
        if "maxrss_mb" in v:
            print(f"{label:24s} {v['frames']:7d} {v['seconds']:8.2f} {fps(v):9.1f}  peak RSS {v['maxrss_mb']:.0f} MB")
        else:
            print(f"{label:24s} failed: {v.get('error')}")
    print()
    for k, v in res.get("ratios", {}).items():
        print(f"{k:34s} {v:6.2f}")
    Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    print(f"\nwrote {args.json}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

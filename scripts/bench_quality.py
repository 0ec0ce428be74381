#!/usr/bin/env python
"""Benchmark: matte quality against a known alpha, per model and post-processing setting.

One run, one machine. Two 720p clips with a true alpha (``streammat.quality.clips``: the
astronaut cut out once with hair-like strands, over a scrolling texture, camera jitter,
sensor noise, H.264 crf 23): ``moving`` (she sways, the camera shakes) and ``static``
(nothing moves but noise). Each model mattes the clips once in batches of 8 (the
matting stage, timed); every setting (``streammat.quality.settings``) then
post-processes those mattes in time order (timed per batch) and is scored with the
metrics of ``streammat.quality.metrics``:

- on ``moving``: SAD, MSE, gradient and connectivity error (whole frame), SAD in the
  edge band (pixels within 10 px of the true edge or strands), SAD on moving edges (the
  band where the true alpha changed since the previous frame), dtSSD;
- on ``static``: dtSSD (flicker where nothing moves) and SAD in the edge band.

Gradient and connectivity error are computed on every 4th frame (they cost ~0.4 s a
frame here). Cost, two ways:

- the matting stage: post-processing ms per 8-frame 720p batch, and the throughput of
  matting + post-processing as a fraction of matting alone, both timed back to back on
  the same batches of the moving clip (twice over);
- the whole pipeline (``streammat.compose.build_pipeline``, as ``streammat process``
  runs it: decode → matting → post-processing → encode on their own threads, so the
  post-processing overlaps the model): the moving clip written as an H.264 file played
  forward and back, to no output (a null sink) and to ProRes 4444 ``.mov`` (the default
  encoder), frames/s with each setting as a fraction of frames/s without any, and the
  process's CPU time per frame (all threads) as a multiple of that without any — on a
  machine others load, the steadier of the two. The runs are interleaved (every setting
  once per round, several rounds), so that the load of a shared machine weighs on all
  alike.
``--sweep`` adds refinement and smoothing variants (radius, eps, band, grid; strength,
motion level) to choose defaults from. Prints a table and writes JSON.

    python scripts/bench_quality.py                        # selfie, ~7 min on 2 busy cores
    python scripts/bench_quality.py --models selfie,selfie-landscape --sweep
    python scripts/bench_quality.py --cost-only              # the cost alone, ~4 min
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streammat.frames import Batch  # noqa: E402
from streammat.quality import metrics  # noqa: E402
from streammat.quality.clips import Clip, make_clip, write_clip  # noqa: E402
from streammat.quality.settings import SETTINGS, PostProcess, Setting  # noqa: E402

log = logging.getLogger("bench_quality")

BATCH = 8
EDGE_BAND = 10  # pixels either side of the true edge
SLOW_METRICS_EVERY = 4
#: the pipeline's outputs: none (a null sink), and a ProRes 4444 file (the default encoder)
PIPELINE_OUTPUTS = {"null": None, "prores": "out.mov"}
#: ProRes is slow here (~10 frames/s): only these settings are timed into it
PRORES_SETTINGS = ("none", "refine+motion")


def sweep_settings() -> list[Setting]:
    """Variants around the defaults, one setting changed at a time, to choose them from."""
    out = []
    for radius in (8, 32):
        out.append(Setting(f"refine radius {radius}", refine={"radius": radius}))
    for eps in (1e-3, 1e-2):
        out.append(Setting(f"refine eps {eps:g}", refine={"eps": eps}))
    out.append(Setting("refine band 16", refine={"band": 16}))
    for sub in (8, 32):
        out.append(Setting(f"refine grid {sub}", refine={"subsample": sub}))
    for levels in ((0.0, 1.0), (0.25, 0.75)):
        out.append(Setting(f"refine levels {levels[0]:g}-{levels[1]:g}", refine={"levels": levels}))
    for strength in (0.6, 0.9):
        out.append(Setting(f"motion strength {strength:g}", smoothing="motion", strength=strength))
    for level in (6.0, 24.0):
        out.append(Setting(f"motion level {level:g}", smoothing="motion", strength=0.8, motion={"motion": level}))
    return out


def _batch(images: torch.Tensor, start: int) -> Batch:
    """A ``Batch`` of real frames (``valid`` given while the class still has it)."""
    n = images.shape[0]
    kwargs: dict[str, Any] = {}
    if "valid" in {f.name for f in fields(Batch)}:
        kwargs["valid"] = n
    idx = tuple(range(start, start + n))
    return Batch(images=images, pts=idx, time_base=Fraction(1, 30), indices=idx, **kwargs)


def matte_clip(matter: Any, clip: Clip) -> np.ndarray:
    """The matter's alpha for every frame of the clip."""
    out = np.empty(clip.alpha.shape, np.uint8)
    for start in range(0, len(clip.frames), BATCH):
        images = torch.from_numpy(clip.frames[start : start + BATCH])
        out[start : start + images.shape[0]] = matter(_batch(images, start)).alpha[: images.shape[0]].numpy()
    return out


def _band(true: np.ndarray) -> np.ndarray:
    """Pixels within ``EDGE_BAND`` of where the true alpha is neither 0 nor 1."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_BAND + 1,) * 2)
    some = cv2.dilate((true > 0).view(np.uint8), k)
    full = cv2.erode((true == 255).view(np.uint8), k)
    return (some & (1 - full)).astype(bool)


def score(setting: Setting, clip: Clip, raw: np.ndarray, *, slow: bool = True) -> dict[str, float]:
    """Post-process ``raw`` with ``setting`` batch by batch; the clip's mean metrics."""
    post = PostProcess(setting)
    rows: dict[str, list[float]] = {}
    prev: tuple[np.ndarray, np.ndarray] | None = None
    for start in range(0, len(clip.frames), BATCH):
        images = torch.from_numpy(clip.frames[start : start + BATCH])
        alpha = torch.from_numpy(raw[start : start + BATCH].copy())  # post-processed in place
        out = post(images, alpha).numpy()
        for k in range(out.shape[0]):
            t = start + k
            pred = out[k].astype(np.float32) / 255.0
            true = clip.alpha[t].astype(np.float32) / 255.0
            band = _band(clip.alpha[t])
            row = {"sad": metrics.sad(pred, true), "mse": metrics.mse(pred, true)}
            row["sad_band"] = metrics.region_sad(pred, true, band)
            if slow and t % SLOW_METRICS_EVERY == 0:
                row["grad"] = metrics.gradient_error(pred, true)
                row["conn"] = metrics.connectivity_error(pred, true)
            if prev is not None:
                row["dtssd"] = metrics.dtssd(pred, prev[0], true, prev[1])
                moved = cv2.dilate((clip.alpha[t] != clip.alpha[t - 1]).view(np.uint8), np.ones((5, 5), np.uint8))
                row["sad_moving_edges"] = metrics.region_sad(pred, true, band & moved.astype(bool))
            prev = (pred, true)
            for key, value in row.items():
                if not math.isnan(value):
                    rows.setdefault(key, []).append(value)
    return {key: float(np.mean(values)) for key, values in rows.items()}


def throughput(matter: Any, clip: Clip, settings: list[Setting], rounds: int = 2) -> tuple[float, dict[str, float]]:
    """Mean seconds per full batch of the matting stage and of each setting's
    post-processing, timed back to back on the same batches (the machine's load then
    weighs on both alike)."""
    posts = {s.name: PostProcess(s) for s in settings}
    t_matting, t_post = [], {name: [] for name in posts}
    for _ in range(rounds):
        for start in range(0, len(clip.frames) - BATCH + 1, BATCH):
            images = torch.from_numpy(clip.frames[start : start + BATCH])
            t0 = time.perf_counter()
            alpha = matter(_batch(images, start)).alpha[:BATCH]
            t_matting.append(time.perf_counter() - t0)
            for name, post in posts.items():
                work = alpha.clone()
                t0 = time.perf_counter()
                post(images, work)
                t_post[name].append(time.perf_counter() - t0)
    return float(np.mean(t_matting)), {name: float(np.mean(v)) for name, v in t_post.items()}


def pipeline_throughput(
    session: Any, model: str, clip: Clip, settings: list[Setting], *, frames: int, rounds: int, outputs: list[str]
) -> dict[str, dict[str, list[float]]]:
    """Frames/s and process CPU time per frame (all threads) of the whole pipeline per
    output and setting (settings that ``streammat process`` can express), runs
    interleaved: ``{output: {setting: {"fps": [...], "cpu_ms_per_frame": [...]}}}``."""
    from streammat.compose import build_pipeline
    from streammat.config import ProcessConfig, settings_from

    runs: dict[str, dict[str, dict[str, list[float]]]] = {out: {} for out in PIPELINE_OUTPUTS}
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        source = write_clip(clip, Path(tmp) / "moving.mp4", frames=frames)
        for r in range(rounds):
            for out in outputs:
                name = PIPELINE_OUTPUTS[out]
                for setting in settings:
                    if setting.options is None or (out == "prores" and setting.name not in PRORES_SETTINGS):
                        continue
                    values = {"source": str(source), "model": model, "device": "cpu", **setting.options}
                    if name is not None:
                        values.update(output=str(Path(tmp) / name), overwrite=True)
                    config = settings_from(ProcessConfig, values, where="bench_quality")
                    cpu = time.process_time()
                    result = build_pipeline(config, session=session, require_output=False).run()
                    cpu = time.process_time() - cpu
                    if result.frames_out != frames:
                        raise RuntimeError(f"pipeline wrote {result.frames_out} of {frames} frames")
                    row = runs[out].setdefault(setting.name, {"fps": [], "cpu_ms_per_frame": []})
                    row["fps"].append(result.fps)
                    row["cpu_ms_per_frame"].append(cpu / frames * 1e3)
                    log.info(
                        "round %d, %s, %s: %.1f frames/s, %.1f ms CPU a frame",
                        r + 1,
                        out,
                        setting.name,
                        result.fps,
                        cpu / frames * 1e3,
                    )
    return runs


def _vs_none(runs: dict[str, dict[str, list[float]]], name: str, key: str) -> float | None:
    """The mean over rounds of ``key`` with setting ``name`` / ``key`` with no post-processing."""
    if name not in runs or "none" not in runs:
        return None
    return float(np.mean([a / b for a, b in zip(runs[name][key], runs["none"][key], strict=True)]))


def run(
    models: list[str],
    settings: list[Setting],
    frames: int,
    *,
    slow: bool,
    quality: bool = True,
    pipeline_frames: int = 96,
    rounds: int = 3,
    outputs: list[str] | None = None,
) -> dict[str, Any]:
    from streammat._allocator import tune_allocator
    from streammat.matting import create_matter
    from streammat.matting.sessions import create_session
    from streammat.matting.threads import plan_threads

    tune_allocator()  # as the CLI does
    plan = plan_threads()
    plan.apply()  # as the CLI does: torch and OpenCV on the cores the plan gives them
    t0 = time.perf_counter()
    clips = {kind: make_clip(kind, frames=frames) for kind in ("moving", "static")}
    log.info("clips made in %.1f s", time.perf_counter() - t0)
    results: dict[str, Any] = {}
    for model in models:
        session = create_session(model, device="cpu", threads=plan.onnx_intra_op)
        matter = create_matter(session, device="cpu")
        runs = pipeline_throughput(
            session,
            model,
            clips["moving"],
            settings,
            frames=pipeline_frames,
            rounds=rounds,
            outputs=list(PIPELINE_OUTPUTS) if outputs is None else outputs,
        )
        raws = {kind: matte_clip(matter, clip) for kind, clip in clips.items()} if quality else {}
        t_matting, t_posts = throughput(matter, clips["moving"], settings)
        per_setting = {}
        for setting in settings:
            t_post = t_posts[setting.name]
            row: dict[str, Any] = {
                "setting": asdict(setting),
                "post_ms_per_batch": t_post * 1e3,
                "throughput_vs_matting": t_matting / (t_matting + t_post),
                "pipeline_runs": {out: runs[out].get(setting.name) for out in PIPELINE_OUTPUTS},
                "pipeline_vs_none": {out: _vs_none(runs[out], setting.name, "fps") for out in PIPELINE_OUTPUTS},
                "pipeline_cpu_vs_none": {
                    out: _vs_none(runs[out], setting.name, "cpu_ms_per_frame") for out in PIPELINE_OUTPUTS
                },
            }
            if quality:
                row["moving"] = score(setting, clips["moving"], raws["moving"], slow=slow)
                row["static"] = score(setting, clips["static"], raws["static"], slow=False)
            per_setting[setting.name] = row
            log.info("%s / %s done", model, setting.name)
        results[model] = {"matting_ms_per_batch": t_matting * 1e3, "settings": per_setting}
    return results


def _fmt(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def print_table(results: dict[str, Any]) -> None:
    quality = all("moving" in r for res in results.values() for r in res["settings"].values())
    head = "| model | setting | "
    if quality:
        head += "SAD | MSE | Grad | Conn | SAD band | SAD moving edges | dtSSD moving | dtSSD static | "
    head += (
        "ms / batch of 8 | matting stage throughput vs none | pipeline throughput vs none: null sink | ProRes "
        "| pipeline CPU time vs none: null sink | ProRes |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for model, res in results.items():
        for name, r in res["settings"].items():
            line = f"| {model} | {name} | "
            if quality:
                m, s = r["moving"], r["static"]
                line += (
                    f"{_fmt(m['sad'])} | {_fmt(m['mse'])} | {_fmt(m.get('grad'))} | {_fmt(m.get('conn'))} "
                    f"| {_fmt(m['sad_band'])} | {_fmt(m['sad_moving_edges'])} | {_fmt(m['dtssd'])} "
                    f"| {_fmt(s['dtssd'], 3)} | "
                )
            vs, cpu = r["pipeline_vs_none"], r["pipeline_cpu_vs_none"]
            line += (
                f"{_fmt(r['post_ms_per_batch'], 1)} | {_pct(r['throughput_vs_matting'])} "
                f"| {_pct(vs['null'])} | {_pct(vs['prores'])} | {_pct(cpu['null'])} | {_pct(cpu['prores'])} |"
            )
            print(line)
        print(f"\nmatting stage alone ({model}): {res['matting_ms_per_batch']:.1f} ms per 720p batch of {BATCH}")
        for out in PIPELINE_OUTPUTS:
            runs = res["settings"]["none"]["pipeline_runs"][out] if "none" in res["settings"] else None
            if runs:
                fps = ", ".join(f"{x:.1f}" for x in runs["fps"])
                cpu = ", ".join(f"{x:.1f}" for x in runs["cpu_ms_per_frame"])
                print(f"pipeline, no post-processing, to {out}: {fps} frames/s; {cpu} ms CPU a frame")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="selfie", help="comma-separated model names (default: selfie)")
    ap.add_argument("--frames", type=int, default=48, help="frames per clip (default: 48)")
    ap.add_argument("--sweep", action="store_true", help="also run refinement/smoothing variants")
    ap.add_argument("--no-slow", action="store_true", help="skip gradient and connectivity error")
    ap.add_argument("--cost-only", action="store_true", help="measure the cost only, not the quality")
    ap.add_argument("--pipeline-frames", type=int, default=96, help="frames per pipeline run (default: 96)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of pipeline runs (default: 3)")
    ap.add_argument(
        "--outputs", default=",".join(PIPELINE_OUTPUTS), help="pipeline outputs to time (default: null,prores)"
    )
    ap.add_argument("--json", default="bench_quality.json", help="where to write the results")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.outputs.split(",")) - set(PIPELINE_OUTPUTS) - {""})
    if unknown:
        ap.error(f"--outputs: unknown {', '.join(unknown)}; expected some of {', '.join(PIPELINE_OUTPUTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    settings = list(SETTINGS) + (sweep_settings() if args.sweep else [])
    t0 = time.perf_counter()
    load_at_start = list(os.getloadavg())
    results = run(
        args.models.split(","),
        settings,
        args.frames,
        slow=not args.no_slow,
        quality=not args.cost_only,
        pipeline_frames=args.pipeline_frames,
        rounds=args.rounds,
        outputs=[o for o in args.outputs.split(",") if o],
    )
    print_table(results)
    meta = {
        "machine": f"{platform.machine()}, {platform.processor() or platform.node()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "frames_per_clip": args.frames,
        "size": "1280x720",
        "batch": BATCH,
        "pipeline_frames": args.pipeline_frames,
        "rounds": args.rounds,
        "load_average_start": load_at_start,
        "load_average_end": list(os.getloadavg()),
        "seconds": time.perf_counter() - t0,
    }
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwrote {args.json} ({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

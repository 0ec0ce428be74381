#!/usr/bin/env python
"""Benchmark: the same clips single-process vs on a local Ray, and a scaling estimate.

One run, one machine:

1. single process: each clip through ``build_pipeline`` one after another (the way
   ``streammat process A B … -o DIR/`` runs without ``--cluster``);
2. local Ray (``ray.init(num_cpus=CORES)``, started before the clock): the same clips
   through ``run_cluster``, fused (each model actor decodes, mattes and encodes whole
   chunks, the default without a GPU) and split (CPU tasks decode and encode, and send
   the frames to one model actor, the way for GPU actors); the ratio cluster/single is
   the overhead of chunking, segment encoding, Ray's scheduling and the join (target <= 1.15);
3. per-chunk costs measured in this process on one chunk: decode (``ChunkSource``),
   model (``build_matter``), encode (the segment sink), and the join per chunk;
4. a scaling table for 1–16 nodes computed from those costs (assumptions printed with it).

The model is a tiny u2net-shaped ONNX model unless ``--model`` names a real one (then
its own model home is used).

    python scripts/bench_cluster.py --json bench-cluster.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

ASSUMPTIONS = [
    "every node has the cores of this machine and no GPU, and runs one fused model actor per core, "
    "each decoding, matting and encoding one chunk at a time",
    "a chunk costs the measured decode + model + encode on one core, so a node finishes a chunk every "
    "(decode + model + encode) / cores",
    "chunks spread evenly over the nodes; the inputs and outputs sit on a shared file system "
    "whose bandwidth does not limit (not measured here)",
    "the join (stream copy) runs once per clip after its last chunk, on an actor beside the chunk it runs; "
    "the joins of different clips run in parallel on different nodes",
    "a fixed part (the model actors' start-up: a new process imports the stack and loads the model; Ray's "
    "scheduling) is the measured 1-node time minus the 1-node chunk work, and stays the same for any number of nodes",
]


def _clips(folder: Path, count: int, frames: int, size: tuple[int, int]) -> list[str]:
    from streammat.testing import make_clip

    return [
        str(make_clip(folder / f"clip{i}.mp4", frames=frames, width=size[0], height=size[1], gop=30, audio="aac"))
        for i in range(count)
    ]


def _single(clips: list[str], out: Path, settings: Any) -> float:
    from streammat.compose import build_pipeline
    from streammat.outputs import output_for

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for clip in clips:
        target = str(output_for(clip, out, settings.format))
        build_pipeline(settings.model_copy(update={"source": clip, "output": target})).run()
    return time.perf_counter() - t0


def _actor_startup(settings: Any) -> float:
    """Seconds until one model actor is ready: a new worker process imports the stack and
    loads the model (the fixed cost every run pays once per actor, in parallel)."""
    import ray

    from streammat.cluster.tasks import MatterActor

    t0 = time.perf_counter()
    actor = ray.remote(MatterActor).options(num_cpus=0).remote(settings, 1)
    ray.get(actor.pid.remote())
    seconds = time.perf_counter() - t0
    ray.kill(actor)
    return seconds


def _chunk_costs(clip: str, out: Path, settings: Any, chunk_frames: int) -> dict[str, float]:
    """Seconds per chunk for decode, model, encode and join, each stage alone."""
    import torch

    from streammat.cluster.chunk_source import ChunkSource
    from streammat.cluster.join import join_segments
    from streammat.cluster.plan import plan_video
    from streammat.compose import build_matter
    from streammat.frames import Batch
    from streammat.matting.threads import plan_threads
    from streammat.sinks import create_sink

    plan = plan_video(clip, chunk_frames=chunk_frames)
    chunk = plan.chunks[0]
    t0 = time.perf_counter()
    with ChunkSource(clip, chunk) as source:
        info = source.info
        frames = list(source)
    decode = time.perf_counter() - t0
    matter = build_matter(settings, plan=plan_threads())
    batches = [frames[i : i + settings.batch_size] for i in range(0, len(frames), settings.batch_size)]
    t0 = time.perf_counter()
    matted = []
    for group in batches:
        images = torch.stack([torch.as_tensor(f.image) for f in group])
        batch = Batch(images, tuple(f.pts for f in group), group[0].time_base, tuple(f.index for f in group))
        matted.append(matter(batch))
    model = time.perf_counter() - t0
    segment = out / "segment.mkv"
    sink = create_sink(str(segment), format=settings.format)
    t0 = time.perf_counter()
    sink.open(info)
    for m in matted:
        sink.write(m)
    sink.close()
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    join_segments([str(segment)], str(out / "joined.mkv"), audio_from=clip)
    join = time.perf_counter() - t0
    return {"frames": chunk.frames, "decode": decode, "model": model, "encode": encode, "join": join}


def _scaling(
    costs: dict[str, float], chunks: int, clips: int, cores: int, measured: float, nodes: list[int]
) -> tuple[float, list[dict[str, float]]]:
    """Estimated seconds on N nodes: a fixed part (start-up, scheduling) plus the chunk work."""
    per_chunk = (costs["decode"] + costs["model"] + costs["encode"]) / max(1, cores)

    def work(n: int) -> float:
        return math.ceil(chunks / n) * per_chunk + math.ceil(clips / n) * costs["join"]

    fixed = max(0.0, measured - work(1))
    rows = [{"nodes": n, "seconds": fixed + work(n), "speedup": (fixed + work(1)) / (fixed + work(n))} for n in nodes]
    return fixed, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--chunk-frames", type=int, default=240, help="as the cluster: section's default")
    ap.add_argument("--model", default=None, help="a real model name (default: a tiny test model)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--modes", default="fused,split", help="cluster runs in this order, e.g. fused,split,fused,split")
    ap.add_argument("--backlog-chunks", type=int, default=1000, help="chunks of the second estimate's backlog")
    ap.add_argument("--json", default="bench-cluster.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    model = args.model
    if model is None:
        from streammat.testing import install_model, tiny_u2net_model

        install_model(work / "home", "u2netp", tiny_u2net_model())
        os.environ["REMBG_HOME"] = str(work / "home")  # before ray.init: the workers inherit it
        model = "u2netp"

    import ray

    from streammat.cluster import run_cluster
    from streammat.config import ClusterSettings, ProcessConfig

    w, h = (int(v) for v in args.size.split("x"))
    clips = _clips(work, args.clips, args.frames, (w, h))
    settings = ProcessConfig(model=model, format="ffv1", batch_size=8)
    single = _single(clips, work / "single", settings)
    t0 = time.perf_counter()
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    startup = time.perf_counter() - t0
    runs: list[tuple[str, float]] = []  # a mode may run more than once (fused,split,fused,split)
    for n, mode in enumerate(args.modes.split(",")):
        cluster = ClusterSettings(chunk_frames=args.chunk_frames, fused=mode == "fused")
        result = run_cluster(clips, work / f"ray-{n}-{mode}", settings, cluster)
        if not result.ok:
            raise SystemExit(f"cluster run ({mode}) failed: {[(f.input, f.error) for f in result.failed]}")
        runs.append((mode, result.elapsed))
    actor_start = _actor_startup(settings)
    ray.shutdown()
    clustered = min(seconds for _, seconds in runs)
    costs = _chunk_costs(clips[0], work, settings, args.chunk_frames)
    chunks = sum(f.chunks for f in result.files)
    nodes = [1, 2, 4, 8, 16]
    fixed, scaling = _scaling(costs, chunks, len(clips), args.cores, clustered, nodes)
    backlog_clips = max(1, round(args.backlog_chunks * len(clips) / chunks))
    _, backlog = _scaling(costs, args.backlog_chunks, backlog_clips, args.cores, 0.0, nodes)
    for row in backlog:  # the same fixed part on top of the backlog's chunk work
        row["seconds"] += fixed
    for row in backlog:
        row["speedup"] = backlog[0]["seconds"] / row["seconds"]

    frames = args.clips * args.frames
    print(f"{args.clips} clips x {args.frames} frames {args.size}, model {model}, {args.cores} cores, {chunks} chunks")
    print(f"{'run':<28}{'seconds':>9}{'frames/s':>10}{'ratio':>8}")
    print(f"{'single process':<28}{single:>9.2f}{frames / single:>10.1f}{1.0:>8.2f}")
    for mode, seconds in runs:
        print(f"{f'local Ray, {mode}':<28}{seconds:>9.2f}{frames / seconds:>10.1f}{seconds / single:>8.2f}")
    print(f"{'  ray.init (not counted)':<28}{startup:>9.2f}")
    print(f"{'  one model actor start-up':<28}{actor_start:>9.2f}")
    print(f"\nper chunk of {costs['frames']} frames, each stage alone (s):")
    print("  " + "  ".join(f"{k} {costs[k]:.3f}" for k in ("decode", "model", "encode", "join")))
    print(f"\nfixed part (the faster 1-node run minus its chunk work): {fixed:.2f} s")
    print(f"{'':>5}{'these clips':>23}{f'{args.backlog_chunks} chunks, {backlog_clips} clips':>30}")
    print(f"{'nodes':>5}{'est. seconds':>14}{'speedup':>9}{'est. seconds':>21}{'speedup':>9}")
    for row, big in zip(scaling, backlog, strict=True):
        line = f"{row['nodes']:>5}{row['seconds']:>14.2f}{row['speedup']:>9.2f}"
        print(line + f"{big['seconds']:>21.1f}{big['speedup']:>9.2f}")
    print("\nassumptions of the estimate:")
    for a in ASSUMPTIONS:
        print(f"- {a}")
    report = {
        "machine": {"cores": args.cores, "platform": platform.platform(), "load": os.getloadavg()},
        "clips": args.clips,
        "frames": args.frames,
        "size": args.size,
        "model": model,
        "chunk_frames": args.chunk_frames,
        "single_s": single,
        "cluster_s": [{"mode": mode, "seconds": seconds, "ratio": seconds / single} for mode, seconds in runs],
        "ray_init_s": startup,
        "actor_startup_s": actor_start,
        "per_chunk_s": costs,
        "fixed_s": fixed,
        "scaling": scaling,
        "backlog": {"chunks": args.backlog_chunks, "clips": backlog_clips, "scaling": backlog},
        "assumptions": ASSUMPTIONS,
    }
    Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

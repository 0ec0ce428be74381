"""Encode-only throughput of every file sink at 720p RGBA (frames/s), plus PNG writers.

Usage: python scripts/bench_encoders.py [--frames 48] [--size 1280x720] [--json out.json]

Frames are synthetic (moving gradient + soft alpha disc), prepared before timing; each
sink is opened, fed the frames in batches of 8 and closed (the flush counts). Prints a
table and writes JSON. Numbers depend on the machine: quote them with its core count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.sinks import create_sink


def make_batches(w: int, h: int, n: int, batch: int = 8) -> list[MattedBatch]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for s in range(0, n, batch):
        imgs, alphas = [], []
        for i in range(s, min(s + batch, n)):
            img = np.empty((h, w, 3), np.uint8)
            img[..., 0] = xs * 200 / w + i
            img[..., 1] = ys * 255 / h
            img[..., 2] = (xs + ys + 4 * i) % 256
            d = np.sqrt((xs - w * (0.3 + 0.005 * i)) ** 2 + (ys - h / 2) ** 2)
            alphas.append(np.clip((h / 3 - d) * 8 + 128, 0, 255).astype(np.uint8))
            imgs.append(img)
        k = len(imgs)
        b = Batch(torch.from_numpy(np.stack(imgs)), tuple(range(s, s + k)), Fraction(1, 30), tuple(range(s, s + k)))
        out.append(MattedBatch(b, torch.from_numpy(np.stack(alphas))))
    return out


def bench_sink(name: str, batches, info: StreamInfo, folder: Path, **kw) -> tuple[float, int]:
    out = folder / name
    sink = create_sink(str(out), **kw)
    t = time.perf_counter()
    sink.open(info)
    for mb in batches:
        sink.write(mb)
    sink.close()
    dt = time.perf_counter() - t
    size = sum(f.stat().st_size for f in out.rglob("*")) if out.is_dir() else out.stat().st_size
    return dt, size


def bench_png_writers(batches, folder: Path) -> dict[str, float]:
    """cv2.imwrite (compression 1) vs PyAV's png encoder, RGBA per frame."""
    frames = [mb.rgba()[i].numpy() for mb in batches for i in range(len(mb))]
    t = time.perf_counter()
    for i, f in enumerate(frames):
        cv2.imwrite(
            str(folder / f"cv_{i}.png"),
            cv2.cvtColor(f, cv2.COLOR_RGBA2BGRA),
            [cv2.IMWRITE_PNG_COMPRESSION, 1],
        )
    cv = len(frames) / (time.perf_counter() - t)
    cc = av.codec.CodecContext.create("png", "w")
    cc.width, cc.height, cc.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgba"
    cc.options = {"compression_level": "1"}
    t = time.perf_counter()
    for i, f in enumerate(frames):
        for p in cc.encode(av.VideoFrame.from_ndarray(f, format="rgba")):
            (folder / f"av_{i}.png").write_bytes(bytes(p))
    avf = len(frames) / (time.perf_counter() - t)
    return {"png cv2.imwrite (level 1)": cv, "png PyAV encoder (level 1)": avf}


CASES = [
    ("prores_ks 4444 .mov", "a.mov", {}),
    ("prores_aw 4444 .mov", "b.mov", {"codec": "prores"}),
    ("vp9 alpha .webm", "c.webm", {}),
    ("ffv1 bgra .mkv", "d.mkv", {}),
    ("png sequence (sink)", "seq", {}),
    ("h264 composite .mp4", "e.mp4", {"background": "green"}),
    ("h264 matte .mp4", "f.mp4", {"matte": True}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--json", default="bench_encoders.json")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    batches = make_batches(w, h, args.frames)
    info = StreamInfo(w, h, Fraction(1, 30), rate=Fraction(30))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, name, kw in CASES:
            dt, size = bench_sink(name, batches, info, folder, **kw)
            rows.append({"encoder": label, "fps": args.frames / dt, "mb_per_frame": size / args.frames / 1e6})
        for label, fps in bench_png_writers(batches, folder).items():
            rows.append({"encoder": label, "fps": fps, "mb_per_frame": None})
    print(f"{w}x{h}, {args.frames} frames, {os.cpu_count()} CPUs, av {av.__version__}")
    print(f"{'encoder':32} {'frames/s':>9} {'MB/frame':>9}")
    for r in rows:
        mb = "" if r["mb_per_frame"] is None else f"{r['mb_per_frame']:.3f}"
        print(f"{r['encoder']:32} {r['fps']:9.1f} {mb:>9}")
    Path(args.json).write_text(json.dumps({"size": [w, h], "frames": args.frames, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

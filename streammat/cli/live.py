"""``streammat live`` — webcam background removal with low latency.

The camera (``--camera 0|/dev/videoN|rtsp://…|FILE``) is read by ``CameraSource``
(newest-frame policy, watchdog + reconnect), matted one frame at a time, smoothed by
``TemporalMatter``, and sent to any combination of ``--publish URL``, ``--preview``,
``-o FILE`` (alpha video) and ``--virtual-camera``. A summary (frames, fps, dropped,
p50/p95 capture→output latency, camera outages) is printed at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ._matte import MATTE_OPTIONS, add_matte_arguments
from ._publish import PUBLISH_OPTIONS, add_publish_arguments
from ._run import options, run_pipeline

if TYPE_CHECKING:
    from ..pipeline import Progress

log = logging.getLogger(__name__)

_MAX_SAMPLES = 200_000  # latency samples kept for the summary (~2 h at 30 fps)

#: argument → setting
OPTIONS = {
    "camera": "source",
    "width": "width",
    "height": "height",
    "fps": "fps",
    "loop": "loop",
    "watchdog": "watchdog",
    "duration": "duration",
    "frames": "frames",
    "output": "output",
    "overwrite": "overwrite",
    "format": "format",
    "codec": "codec",
    "preview": "preview",
    "virtual_camera": "virtual_camera",
    "background": "background",
    "model": "model",
    "device": "device",
    "backend": "backend",
    "threads": "threads",
    "batch_size": "batch_size",
    "flush_after": "flush_after",
    **MATTE_OPTIONS,
    **PUBLISH_OPTIONS,
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live",
        help="remove the background of a webcam live (preview, publish, record, virtual camera)",
        description="Matte a live camera with low latency. Outputs combine: --preview, --publish URL, "
        "-o FILE (alpha video), --virtual-camera. A video file given as --camera plays in real time. "
        "Ctrl-C ends the run; recordings are finalized.",
    )
    src = p.add_argument_group("camera")
    p.add_argument("--config", help="YAML settings file, `live:` section (see configs/live.yaml)")
    src.add_argument("--camera", help="camera index (0), /dev/videoN, rtsp://… URL, or a video file (default 0)")
    src.add_argument("--width", type=int, help="requested capture width")
    src.add_argument("--height", type=int, help="requested capture height")
    src.add_argument("--fps", type=float, help="requested capture frame rate")
    src.add_argument("--loop", action="store_true", default=None, help="replay a file camera from the start at its end")
    src.add_argument(
        "--watchdog", type=float, help="seconds without a new frame before the camera counts as lost (default 2)"
    )
    src.add_argument("--no-reconnect", action="store_true", help="end the run when the camera is lost")
    src.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    src.add_argument("--frames", type=int, metavar="N", help="stop after the camera delivered N frames")

    out = p.add_argument_group("outputs")
    out.add_argument("-o", "--output", help="record alpha video (.mov, .webm, .mkv; .mp4 gets --background)")
    out.add_argument("-y", "--overwrite", action="store_true", default=None, help="replace an existing recording")
    out.add_argument("--format", help="recording format, overriding the name: prores, vp9, ffv1, png")
    out.add_argument("--codec", help="recording encoder override")
    out.add_argument("--preview", action="store_true", default=None, help="show a window with fps and latency")
    out.add_argument(
        "--virtual-camera",
        nargs="?",
        const="",
        default=None,
        metavar="DEVICE",
        help="send the composite to a virtual webcam (pip install 'streammat[virtualcam]')",
    )
    out.add_argument(
        "--background",
        help="background of the preview/virtual camera: COLOR (name, #rrggbb), IMAGE file, or blur",
    )

    mat = p.add_argument_group("matting")
    mat.add_argument("--model", help="model name or .onnx path (default: selfie)")
    mat.add_argument("--device", help="where the model runs: auto (default), cpu, cuda, tensorrt")
    mat.add_argument("--backend", help="model runner: auto (default), ort (onnxruntime), torch")
    mat.add_argument("--threads", type=int, help="model threads (default: planned from the CPU cores)")
    mat.add_argument("--exact", action="store_true", help="rembg's exact per-frame path (slow)")
    mat.add_argument("--batch-size", type=int, help="frames per model call (default 1: lowest latency)")
    mat.add_argument("--flush-after", type=float, metavar="S", help="send a partial batch after S s (default 0.02)")
    add_matte_arguments(mat, smoothing_default="0.5")
    add_publish_arguments(p)
    p.set_defaults(func=run)


def settings(args: argparse.Namespace) -> Any:
    """The config file's ``live:`` settings (or the defaults), overridden by the options given."""
    from ..config import LiveConfig, merge

    given = options(args, OPTIONS)
    if args.no_reconnect:
        given["reconnect"] = False
    if args.exact:
        given["fast"] = False
    return merge(LiveConfig, args.config, given)


class LatencyMeter:
    """Progress callback: per-frame capture→output latency samples and limit checks."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.frames = 0
        self.elapsed = 0.0
        self._lock = threading.Lock()

    def __call__(self, p: Progress) -> None:
        with self._lock:
            self.frames, self.elapsed = p.frames, p.elapsed
            if p.latency is not None and len(self.samples) < _MAX_SAMPLES:
                self.samples.append(p.latency)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            data = sorted(self.samples)
        if not data:
            return None
        k = min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))
        return data[k]


def summary(meter: LatencyMeter, stats: dict[str, int], elapsed: float, name: str) -> str:
    fps = meter.frames / elapsed if elapsed > 0 else 0.0
    p50, p95 = meter.percentile(50), meter.percentile(95)
    lat = f"latency p50 {1000 * p50:.0f} ms, p95 {1000 * p95:.0f} ms" if p50 is not None else "latency n/a"
    line = f"{name}: {meter.frames} frames in {elapsed:.1f} s ({fps:.1f} fps), dropped {stats.get('dropped', 0)}, {lat}"
    if stats.get("lost"):
        line += f"; camera lost {stats['lost']}x, reconnected {stats.get('reconnects', 0)}x"
    return line


def run(args: argparse.Namespace) -> int:
    from ..compose import build_pipeline

    cfg = settings(args)
    meter = LatencyMeter()
    pipeline = build_pipeline(cfg, on_progress=meter)
    t0 = time.monotonic()
    stats: dict[str, int] = {}
    try:
        result = run_pipeline(pipeline)
        stats = result.source_stats
    finally:
        if not stats:
            stats = dict(pipeline.source.stats)
        if not args.quiet:
            name = getattr(pipeline.source, "info", None)
            print(summary(meter, stats, time.monotonic() - t0, name.name if name else cfg.source), file=sys.stderr)
            outputs = ", ".join(s.description for s in pipeline.sinks)
            print(f"outputs: {outputs}", file=sys.stderr)
    return 0

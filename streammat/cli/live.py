"""``streammat live`` — webcam background removal with low latency.

The camera (``--camera 0|/dev/videoN|rtsp://…|FILE``) is read by ``CameraSource``
(newest-frame policy, watchdog + reconnect), matted one frame at a time, smoothed by
``TemporalMatter``, and sent to any combination of ``--publish URL``, ``--preview``,
``-o FILE`` (alpha video) and ``--virtual-camera``. A summary (frames, fps, dropped,
p50/p95 capture→output latency, camera outages) is printed at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import LiveConfig, load_config, override
from ..errors import ConfigError, OutputError
from ..matting.providers import BACKENDS
from ..pipeline import Pipeline, Progress
from ._publish import add_publish_arguments, publish_sinks

log = logging.getLogger(__name__)

_MAX_SAMPLES = 200_000  # latency samples kept for the summary (~2 h at 30 fps)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live",
        help="remove the background of a webcam live (preview, publish, record, virtual camera)",
        description="Matte a live camera with low latency. Outputs combine: --preview, --publish URL, "
        "-o FILE (alpha video), --virtual-camera. A video file given as --camera plays in real time.",
    )
    src = p.add_argument_group("camera")
    p.add_argument("--config", help="YAML settings file, `live:` section (see configs/live.yaml)")
    src.add_argument(
        "--camera",
        help="camera index (0), /dev/videoN, rtsp://… URL, or a video file (default 0)",
    )
    src.add_argument("--width", type=int, help="requested capture width")
    src.add_argument("--height", type=int, help="requested capture height")
    src.add_argument("--fps", type=float, help="requested capture frame rate")
    src.add_argument("--loop", action="store_true", help="replay a file camera from the start at its end")
    src.add_argument(
        "--watchdog",
        type=float,
        help="seconds without a new frame before the camera counts as lost (default 2)",
    )
    src.add_argument("--no-reconnect", action="store_true", help="end the run when the camera is lost")
    src.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    src.add_argument("--frames", type=int, metavar="N", help="stop after the camera delivered N frames")

    out = p.add_argument_group("outputs")
    out.add_argument("-o", "--output", help="record alpha video (.mov, .webm, .mkv; .mp4 gets --background)")
    out.add_argument("--format", help="recording format, overriding the name: prores, vp9, ffv1, png")
    out.add_argument("--codec", help="recording encoder override")
    out.add_argument("--preview", action="store_true", help="show a window with fps and latency")
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
    mat.add_argument("--device", choices=("auto", "cpu", "cuda", "tensorrt"), help="default auto")
    mat.add_argument("--backend", choices=BACKENDS, help="model runner: auto (default), ort (onnxruntime), torch")
    mat.add_argument("--threads", type=int, help="model threads (default: planned from the CPU cores)")
    mat.add_argument("--exact", action="store_true", help="rembg's exact per-frame path (slow)")
    mat.add_argument("--batch-size", type=int, help="frames per model call (default 1: lowest latency)")
    mat.add_argument("--flush-after", type=float, metavar="S", help="send a partial batch after S s (default 0.02)")
    mat.add_argument("--smoothing", type=float, help="temporal EMA of the mask, 0..<1 (default 0.5)")
    mat.add_argument("--threshold", type=float, help="binarize the mask at this level (0..1)")
    mat.add_argument("--feather", type=int, metavar="PX", help="soften mask edges by PX pixels (default 0)")
    mat.add_argument("--every", type=int, metavar="N", help="compute the mask every N frames, reuse it between")
    add_publish_arguments(p)
    p.set_defaults(func=run)


# -- building blocks -----------------------------------------------------------------
def _settings(args: argparse.Namespace) -> None:
    """Fill every option the command line left out from the config file (or the defaults of
    ``LiveConfig``), validated there; then check the run limits."""
    cfg = override(load_config(args.config, LiveConfig), args)
    if args.no_reconnect:
        cfg = dataclasses.replace(cfg, reconnect=False)
    for f in fields(LiveConfig):
        setattr(args, f.name, getattr(cfg, f.name))
    if args.frames is not None and args.frames < 1 or args.duration is not None and args.duration <= 0:
        raise ConfigError("--frames and --duration must be positive")


def build_sinks(args: argparse.Namespace, stop: Any) -> list[Any]:
    """The sinks the options ask for; validated before the camera or model is opened."""
    sinks: list[Any] = []
    others = bool(args.output or getattr(args, "publish", None) or args.virtual_camera is not None)
    if args.preview:
        from ..sinks.preview import PreviewSink, preview_unavailable

        reason = preview_unavailable()
        if reason is None:
            sinks.append(PreviewSink(f"streammat: {args.camera}", background=args.background, on_quit=stop))
        elif others:
            print(f"streammat: warning: no preview: {reason}", file=sys.stderr)
        else:
            raise OutputError(f"--preview: {reason}")
    if args.output:
        from ..sinks import create_sink

        background = args.background if Path(args.output).suffix.lower() == ".mp4" else None
        sinks.append(create_sink(args.output, format=args.format, background=background, codec=args.codec))
    sinks.extend(publish_sinks(args))
    if args.virtual_camera is not None:
        from ..sinks.virtual_camera import INSTALL_HINT, VirtualCameraSink

        if not _has("pyvirtualcam"):
            raise OutputError(INSTALL_HINT)
        sinks.append(
            VirtualCameraSink(background=args.background or "blur", device=args.virtual_camera or None, fps=args.fps)
        )
    if not sinks:
        raise ConfigError("nothing to do: give --preview, -o FILE, --publish URL and/or --virtual-camera")
    return sinks


def build_matter(args: argparse.Namespace) -> Any:
    from ..matting import create_matter
    from ..matting.sessions import create_session
    from ..matting.temporal import TemporalMatter
    from ..matting.threads import plan_threads

    plan = plan_threads()
    plan.apply()
    session = create_session(args.model, device=args.device, threads=args.threads or plan.onnx_intra_op)
    inner = create_matter(session, fast=not args.exact, device=args.device, backend=args.backend)
    return TemporalMatter(
        inner, smoothing=args.smoothing, threshold=args.threshold, feather=args.feather, every=args.every
    )


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
    from ..sources.camera import CameraSource

    _settings(args)
    pipeline_box: list[Pipeline] = []
    sinks = build_sinks(args, stop=lambda: pipeline_box[0].stop() if pipeline_box else None)
    source = CameraSource(
        args.camera,
        width=args.width,
        height=args.height,
        fps=args.fps,
        watchdog=args.watchdog,
        reconnect=args.reconnect,
        loop=args.loop,
        max_frames=args.frames,
        max_seconds=args.duration,
    )
    info = source.open()  # fail fast on a missing camera, before loading the model
    try:
        matter = build_matter(args)
    except BaseException:
        source.close()
        raise
    meter = LatencyMeter()
    pipeline = Pipeline(
        source,
        matter,
        sinks,
        batch_size=args.batch_size,
        queue_depth=1,
        flush_after=args.flush_after if args.batch_size > 1 else None,
        on_progress=meter,
    )
    pipeline_box.append(pipeline)
    t0 = time.monotonic()
    stats: dict[str, int] = {}
    try:
        result = pipeline.run()
        stats = result.source_stats
    finally:
        if not stats:
            stats = dict(source.stats)
        if not args.quiet:
            print(summary(meter, stats, time.monotonic() - t0, info.name), file=sys.stderr)
            outputs = ", ".join(s.description for s in sinks)
            print(f"outputs: {outputs}", file=sys.stderr)
    return 0

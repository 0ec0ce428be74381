"""``streammat process INPUT -o OUTPUT`` — matte a video file (or a ZeroMQ stream)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..config import ProcessConfig, load_config, override
from ..errors import ConfigError
from ..matting.providers import BACKENDS
from ..matting.threads import ThreadPlan, plan_threads
from ..pipeline import Pipeline
from ..sources import open_source
from ._progress import ProgressBar
from ._publish import add_publish_arguments, publish_sinks

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="matte a video file into alpha video, a matte or a composite",
        description="Matte INPUT (a video file, or zmq+tcp://HOST:PORT for a ZeroMQ frame stream). "
        "The output kind follows OUTPUT's name: .mov ProRes 4444, .webm VP9 alpha, .mkv FFV1, "
        "a folder or pattern%%05d.png a PNG sequence.",
    )
    p.add_argument("input", help="video file, or zmq+tcp://HOST:PORT / zmq+ipc://PATH")
    p.add_argument("-o", "--output", help="output file, folder or PNG pattern")
    p.add_argument("--config", help="YAML settings file (see configs/default.yaml)")
    p.add_argument("--model", help="model name (default: selfie) or path to an .onnx file")
    p.add_argument("--batch-size", type=int, help="frames per model call (default: 8)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "tensorrt"), help="where the model runs")
    p.add_argument("--backend", choices=BACKENDS, help="model runner: auto (default), ort (onnxruntime), torch")
    p.add_argument("--format", help="output format, overriding the name: prores, vp9, ffv1, png")
    p.add_argument("--codec", help="encoder override, e.g. prores (faster ProRes 4444 encoder)")
    p.add_argument("--background", help="composite onto COLOR (name, #rrggbb), an IMAGE file, or 'blur' (.mp4)")
    p.add_argument("--matte", action="store_true", default=None, help="write the alpha matte as grayscale video")
    p.add_argument("--threads", type=int, help="model threads (default: planned from the CPU cores)")
    p.add_argument("--exact", action="store_true", help="use rembg's exact per-frame path (slow)")
    p.add_argument("--smoothing", type=float, help="temporal EMA of the mask, 0..<1 (default 0: off)")
    p.add_argument("--threshold", type=float, help="binarize the mask at this level (0..1)")
    p.add_argument("--feather", type=int, metavar="PX", help="soften mask edges by PX pixels")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    z = p.add_argument_group("ZeroMQ input (INPUT = zmq+tcp://HOST:PORT, protocol: docs/protocol.md)")
    z.add_argument("--source-topic", default="", help="subscribe to this topic prefix only")
    z.add_argument("--source-timeout", type=float, help="give up when nothing arrives for S seconds (default: wait)")
    z.add_argument("--source-latest", action="store_true", help="keep only the newest frame when matting is slower")
    z.add_argument("--source-secure", metavar="KEYS_DIR", help="CURVE client keys (see `streammat keys generate`)")
    add_publish_arguments(p)
    p.set_defaults(func=run)


def settings(args: argparse.Namespace) -> ProcessConfig:
    """The config file's settings (or the defaults), overridden by the options given."""
    cfg = override(load_config(args.config), args)
    return cfg.replace(fast=False) if args.exact else cfg


def build_sinks(args: argparse.Namespace, cfg: ProcessConfig, plan: ThreadPlan) -> list[Any]:
    sinks: list[Any] = []
    if args.output:
        from ..sinks import create_sink

        sinks.append(
            create_sink(
                args.output,
                format=cfg.format,
                matte=cfg.matte,
                background=cfg.background,
                codec=cfg.codec,
                threads=plan.encode_threads,
            )
        )
    sinks.extend(publish_sinks(args))
    if not sinks:
        raise ConfigError("nothing to write: give -o OUTPUT and/or --publish URL")
    return sinks


def build_matter(cfg: ProcessConfig, plan: ThreadPlan) -> Any:
    """The session (created once) and the matting stage for ``cfg``."""
    from ..matting import create_matter
    from ..matting.sessions import create_session

    session = create_session(cfg.model, device=cfg.device, threads=cfg.threads or plan.onnx_intra_op)
    matter = create_matter(session, fast=cfg.fast, device=cfg.device, backend=cfg.backend)
    if cfg.smoothing or cfg.threshold is not None or cfg.feather:
        from ..matting.temporal import TemporalMatter

        return TemporalMatter(matter, smoothing=cfg.smoothing, threshold=cfg.threshold, feather=cfg.feather)
    return matter


def source_options(args: argparse.Namespace, plan: ThreadPlan) -> dict[str, Any]:
    if not args.input.startswith("zmq+"):
        return {"threads": plan.decode_threads}
    from ..transport.security import ClientSecurity

    return {
        "topic": args.source_topic,
        "timeout": args.source_timeout,
        "backpressure": "latest" if args.source_latest else "block",
        "security": ClientSecurity.from_dir(args.source_secure) if args.source_secure else None,
    }


def run(args: argparse.Namespace) -> int:
    cfg = settings(args)
    plan = plan_threads()
    plan.apply()
    sinks = build_sinks(args, cfg, plan)  # validates the output before any work
    source = open_source(args.input, **source_options(args, plan))
    info = source.open()  # fail fast on a bad input, before loading the model
    try:
        matter = build_matter(cfg, plan)
    except BaseException:
        source.close()
        raise
    bar = ProgressBar(enabled=False if args.no_progress else None)
    pipeline = Pipeline(source, matter, sinks, batch_size=cfg.batch_size, queue_depth=cfg.queue_depth, on_progress=bar)
    try:
        result = pipeline.run()
    finally:
        bar.finish()
    outputs = ", ".join(s.description for s in sinks)
    print(f"{info.name}: {result.frames_out} frames in {result.elapsed:.1f} s ({result.fps:.1f} fps) -> {outputs}")
    return 0

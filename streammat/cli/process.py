"""``streammat process INPUT -o OUTPUT`` — matte a video file (or a ZeroMQ stream)."""

from __future__ import annotations

import argparse
import logging

from ..errors import Interrupted
from ._matte import MATTE_OPTIONS, add_matte_arguments
from ._publish import PUBLISH_OPTIONS, add_publish_arguments
from ._run import options, run_pipeline

log = logging.getLogger(__name__)

#: argument → setting
OPTIONS = {
    "input": "source",
    "output": "output",
    "model": "model",
    "batch_size": "batch_size",
    "device": "device",
    "backend": "backend",
    "format": "format",
    "codec": "codec",
    "background": "background",
    "matte": "matte",
    "threads": "threads",
    **MATTE_OPTIONS,
    "overwrite": "overwrite",
    "max_pixels": "max_pixels",
    "source_topic": "source_topic",
    "source_timeout": "source_timeout",
    "source_latest": "source_latest",
    "source_secure": "source_secure",
    "source_reliable": "source_reliable",
    **PUBLISH_OPTIONS,
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "process",
        help="matte a video file into alpha video, a matte or a composite",
        description="Matte INPUT (a video file or URL, an image sequence, - for standard input, or "
        "zmq+tcp://HOST:PORT for a ZeroMQ frame stream). The output kind follows OUTPUT's name: "
        ".mov ProRes 4444, .webm VP9 alpha, .mkv FFV1, a folder or pattern%05d.png a PNG sequence.",
    )
    p.add_argument(
        "input", nargs="+", help="video file or URL, image sequence, -, or zmq+tcp://HOST:PORT (several: -o FOLDER/)"
    )
    p.add_argument("-o", "--output", help="output file, folder or PNG pattern")
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on Ray: local, auto or ray://HOST:10001; -o is a folder (pip install 'streammat[cluster]')",
    )
    p.add_argument("-y", "--overwrite", action="store_true", default=None, help="replace an existing output")
    p.add_argument("--config", help="YAML settings file (see configs/default.yaml)")
    p.add_argument("--model", help="model name (default: selfie) or path to an .onnx file")
    p.add_argument("--batch-size", type=int, help="frames per model call (default: 8)")
    p.add_argument("--device", help="where the model runs: auto, cpu, cuda, tensorrt")
    p.add_argument("--backend", help="model runner: auto (default), ort (onnxruntime), torch")
    p.add_argument("--format", help="output format, overriding the name: prores, vp9, ffv1, png")
    p.add_argument("--codec", help="encoder override, e.g. prores (faster ProRes 4444 encoder)")
    p.add_argument("--background", help="composite onto COLOR (name, #rrggbb), an IMAGE file, or 'blur' (.mp4)")
    p.add_argument("--matte", action="store_true", default=None, help="write the alpha matte as grayscale video")
    p.add_argument("--threads", type=int, help="model threads (default: planned from the CPU cores)")
    p.add_argument("--exact", action="store_true", help="use rembg's exact per-frame path (slow)")
    add_matte_arguments(p, smoothing_default="0: off")
    p.add_argument("--max-pixels", type=int, metavar="N", help="refuse frames larger than N pixels (default 8K UHD)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    z = p.add_argument_group("ZeroMQ input (INPUT = zmq+tcp://HOST:PORT, protocol: docs/protocol.md)")
    z.add_argument("--source-topic", help="subscribe to this topic prefix only")
    z.add_argument("--source-timeout", type=float, help="give up when nothing arrives for S seconds (default: wait)")
    z.add_argument("--source-latest", action="store_true", default=None, help="keep only the newest frame")
    z.add_argument("--source-secure", metavar="KEYS_DIR", help="CURVE client keys (see 'streammat keys generate')")
    z.add_argument(
        "--source-reliable",
        action="store_true",
        default=None,
        help="receive every frame (the publisher needs --publish-reliable; it then waits for us)",
    )
    add_publish_arguments(p)
    p.set_defaults(func=run)


def settings(args: argparse.Namespace):  # noqa: ANN201 - ProcessConfig, imported lazily
    """The config file's settings (or the defaults), overridden by the options given."""
    from ..config import ProcessConfig, merge

    given = options(args, OPTIONS)
    if args.exact:
        given["fast"] = False
    return merge(ProcessConfig, args.config, given)


def run(args: argparse.Namespace) -> int:
    from ..compose import build_pipeline
    from ._progress import ProgressBar

    if args.cluster is not None or len(args.input) > 1:
        from ._many import run_many

        return run_many(args, settings)
    args.input = args.input[0]
    cfg = settings(args)
    bar = ProgressBar(enabled=False if args.no_progress else None)
    pipeline = build_pipeline(cfg, on_progress=bar)
    try:
        result = run_pipeline(pipeline)
    finally:
        bar.finish()
    outputs = ", ".join(s.description for s in pipeline.sinks)
    if result.stopped:
        raise Interrupted(f"stopped by the user after {result.frames_out} frames -> {outputs}")
    name = result.info.name
    print(f"{name}: {result.frames_out} frames in {result.elapsed:.1f} s ({result.fps:.1f} fps) -> {outputs}")
    return 0

"""Sinks: where matted frames go.

``create_sink(output, ...)`` picks the file sink from the output name (``.mov`` ProRes
4444, ``.webm`` VP9 alpha, ``.mkv`` FFV1, a folder or ``%05d.png`` pattern → PNGs),
overridable with ``format`` (one of ``FORMATS``; the format then also picks the container
of a name without a video extension). ``matte=True`` writes the alpha as a grayscale
video; ``background=`` composites onto a colour, an image or the blurred frame.
Every sink follows the lifecycle in ``sinks/base.py`` and is a context manager.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, OutputError
from ._codecs import EXTENSIONS, FORMATS, OUTPUT_FORMATS, alpha_spec, composite_spec, container_for, matte_spec
from .base import Sink
from .compositing import Compositor, parse_background
from .null import NullSink
from .png_sequence import PngSequenceSink, is_pattern
from .video import VideoSink

__all__ = ["Sink", "NullSink", "VideoSink", "PngSequenceSink", "FORMATS", "create_sink"]


def _format_for(output: str) -> str:
    if is_pattern(output):
        return "png"
    p = Path(output)
    ext = p.suffix.lower()
    folder_name = output.endswith(("/", "\\"))
    if ext in EXTENSIONS and ext != ".png" and not folder_name:
        return EXTENSIONS[ext]  # a video name, even if a folder of that name exists (open() fails)
    if folder_name or p.is_dir() or not p.suffix:
        return "png"
    video = ", ".join(e for e in EXTENSIONS if e != ".png")
    raise OutputError(
        f"cannot tell the output format of {output}: use {video} (.mp4 with --background/--matte), "
        "a folder or a %05d.png pattern, or give --format"
    )


def _path_arg(name: str, value: Any) -> str:
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and text:
            return text
    raise ConfigError(f"{name} must be a file or folder name (str or os.PathLike), got {value!r}")


def _optional_str(name: str, value: Any, allowed: Iterable[str] | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        choices = f"one of {', '.join(allowed)}" if allowed is not None else "a string"
        raise ConfigError(f"{name} must be {choices} or None, got {value!r}")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")


def _inputs_arg(inputs: Any) -> list[str]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    try:
        return [_path_arg("inputs", i) for i in inputs]
    except TypeError:
        raise ConfigError(f"inputs must be a list of file names or URLs, got {inputs!r}") from None


def create_sink(
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    matte: bool = False,
    background: str | None = None,
    codec: str | None = None,
    threads: int = 2,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Sink:
    """Construct (not open) the sink for ``output``, after checking everything that can be
    checked before frames arrive.

    ``overwrite`` allows replacing an existing output (ffmpeg's ``-y``); ``inputs`` are
    the run's input names (URLs are ignored): an output that is one of them is refused
    even with ``overwrite``. Raises ``ConfigError`` for bad arguments (unknown format,
    codec or background, wrong types) and ``OutputError`` for outputs that cannot be
    written or cannot hold what was asked (an existing file, alpha in ``.mp4``)."""
    name = _path_arg("output", output)
    _optional_str("format", format, OUTPUT_FORMATS)
    _optional_str("background", background)
    _optional_str("codec", codec)
    _flag("matte", matte)
    _flag("overwrite", overwrite)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
    input_names = _inputs_arg(inputs)
    if matte and background:
        raise ConfigError("--matte and --background cannot be combined; use two outputs")
    fmt = format or _format_for(name)
    if fmt == "null":
        return NullSink()
    compositor = Compositor(parse_background(background)) if background else None
    mode = "matte" if matte else ("composite" if compositor else "alpha")
    if fmt == "png":
        return PngSequenceSink(
            name, mode=mode, compositor=compositor, threads=threads, overwrite=overwrite, inputs=input_names
        )
    if mode == "matte":
        spec = matte_spec(fmt, codec)
    elif mode == "composite":
        spec = composite_spec(fmt, codec)
    else:
        spec = alpha_spec(fmt, codec)
    return VideoSink(
        name,
        spec,
        container=container_for(fmt, name),
        mode=mode,
        compositor=compositor,
        threads=threads,
        overwrite=overwrite,
        inputs=input_names,
    )

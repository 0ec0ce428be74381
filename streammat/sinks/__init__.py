"""Sinks: where matted frames go.

``create_sink(output, ...)`` picks the file sink from the output name (``.mov`` ProRes
4444, ``.webm`` VP9 alpha, ``.mkv`` FFV1, a folder or ``%05d.png`` pattern → PNGs),
overridable with ``format`` (one of ``FORMATS``). ``matte=True`` writes the alpha as a
grayscale video; ``background=`` composites onto a colour, an image or the blurred frame.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, OutputError
from ._codecs import EXTENSIONS, FORMATS, alpha_spec, composite_spec, matte_spec
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
    if ext in EXTENSIONS and ext != ".png" and not output.endswith(("/", "\\")):
        return EXTENSIONS[ext]  # a video name, even if a folder of that name exists (open() fails)
    if output.endswith(("/", "\\")) or p.is_dir() or not p.suffix:
        return "png"
    if ext not in EXTENSIONS:
        raise OutputError(
            f"cannot tell the output format of {output}: use .mov, .webm, .mkv, .mp4 (with "
            f"--background/--matte), a folder or a %05d.png pattern, or give --format"
        )
    return EXTENSIONS[ext]


def create_sink(
    output: str,
    *,
    format: str | None = None,
    matte: bool = False,
    background: str | None = None,
    codec: str | None = None,
    threads: int = 2,
) -> Sink:
    """Construct (not open) the sink for ``output``.

    Raises ``ConfigError`` for unknown formats/backgrounds, ``OutputError`` for outputs
    that cannot hold what was asked (e.g. alpha in ``.mp4``)."""
    if matte and background:
        raise ConfigError("--matte and --background cannot be combined; use two outputs")
    fmt = format or _format_for(output)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "null":
        return NullSink()
    compositor = Compositor(parse_background(background)) if background else None
    mode = "matte" if matte else ("composite" if compositor else "alpha")
    if fmt == "png":
        return PngSequenceSink(output, mode=mode, compositor=compositor, threads=threads)
    if mode == "matte":
        spec = matte_spec(fmt, codec)
    elif mode == "composite":
        spec = composite_spec(fmt, codec)
    else:
        spec = alpha_spec(fmt, codec)
    return VideoSink(output, spec, mode=mode, compositor=compositor, threads=threads)

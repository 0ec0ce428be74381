"""Small PyAV helpers of the file source: RGB conversion, rotation, stream descriptions,
durations and ffmpeg's error text."""

from __future__ import annotations

import av
import numpy as np

__all__ = ["to_rgb", "quarter_turns", "estimate_frames", "parse_clock", "describe_streams", "reason"]


def to_rgb(vf: av.VideoFrame) -> np.ndarray:
    # One swscale thread: ~10x faster than the default here (thread start-up per call), and
    # ffmpeg 8.1's threaded conversions to/from high bit depths were seen to corrupt pixels.
    rgb = vf.to_ndarray(format="rgb24", threads=1)
    turns = quarter_turns(vf)
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
    return rgb


def quarter_turns(vf: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make the frame upright (display matrix)."""
    try:
        rotation = int(round(vf.rotation or 0))
    except (AttributeError, TypeError):  # pragma: no cover - older PyAV
        return 0
    return (rotation // 90) % 4


def estimate_frames(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> int | None:
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration and rate:
        return max(1, round(container.duration / av.time_base * float(rate)))
    return None


def parse_clock(text: str | None) -> float | None:
    """``"00:00:04.000000000"`` → 4.0; None when absent or malformed."""
    if not text:
        return None
    try:
        h, m, sec = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def describe_streams(container: av.container.InputContainer) -> str:
    """``"audio (aac), subtitle (mov_text)"``, or ``"none"``."""
    parts = []
    for s in container.streams:
        ctx = getattr(s, "codec_context", None)
        codec = getattr(ctx, "name", None) if ctx is not None else None
        parts.append(f"{s.type} ({codec})" if codec else str(s.type))
    return ", ".join(parts) if parts else "none"


def reason(exc: Exception) -> str:
    """ffmpeg's message without the errno/file noise PyAV adds."""
    msg = getattr(exc, "strerror", None) or str(exc)
    return str(msg).split(":")[-1].strip() or type(exc).__name__

"""Small synthetic clips encoded with PyAV (video, optional audio, VFR, rotation)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def make_clip(
    path: str | Path,
    *,
    width: int = 64,
    height: int = 48,
    frames: int = 12,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    rate: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    rotation: int | None = None,
    gop: int | None = None,
) -> Path:
    """Encode a small synthetic clip with PyAV: a moving bright disc over a gradient.

    ``pts``/``time_base`` give explicit (e.g. variable-rate) timestamps; ``audio`` names
    an audio codec (``"aac"``, ``"libopus"``, ``"mp3"``…) for a 440 Hz tone track that
    covers the video's duration; ``rotation`` writes display-rotation metadata; ``gop`` is
    the keyframe interval in frames (the encoder's default when None)."""
    import av

    path = Path(path)
    tb = time_base or Fraction(1, rate)
    stamps = pts if pts is not None else list(range(frames))
    if len(stamps) != frames:
        raise ValueError(f"expected {frames} pts, got {len(stamps)}")
    if pix_fmt is None:
        pix_fmt = "yuv444p" if (width % 2 or height % 2) and codec == "libx264" else "yuv420p"
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        vs.time_base = tb
        vs.codec_context.time_base = tb
        if gop is not None:
            vs.codec_context.gop_size = gop
        if rotation is not None:
            vs.set_display_rotation(rotation)
        a_stream = None
        if audio:
            a_stream = out.add_stream(audio, rate=48000, layout="stereo")
        for i, p in enumerate(stamps):
            cx, cy = (i * 5) % width, height // 2
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (min(width, height) // 4) ** 2
            img = np.stack([xx * 255 // max(1, width - 1), yy * 255 // max(1, height - 1), np.full_like(xx, 80)], -1)
            img[disc] = (250, 250, 250)
            vf = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            vf.pts, vf.time_base = p, tb
            for pkt in vs.encode(vf):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if a_stream is not None:
            _write_tone(a_stream, out, seconds=float((stamps[-1] + 1) * tb))
    return path


def _write_tone(stream, out, *, seconds: float, rate: int = 48000) -> None:
    import av

    frame_size = stream.codec_context.frame_size or 1024
    total = int(seconds * rate)
    pts = 0
    while pts < total:
        t = (pts + np.arange(frame_size)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name
        data = np.stack([tone, tone]) if fmt.endswith("p") else np.stack([tone, tone], -1).reshape(1, -1)
        if fmt.startswith("s16"):
            data = (data * 32767).astype(np.int16)
        elif fmt.startswith("s32"):
            data = (data * 2147483647).astype(np.int32)
        af = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        af.sample_rate, af.pts, af.time_base = rate, pts, Fraction(1, rate)
        pts += frame_size
        for pkt in stream.encode(af):
            out.mux(pkt)
    for pkt in stream.encode():
        out.mux(pkt)

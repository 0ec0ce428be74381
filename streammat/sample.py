"""A sample clip to try streammat on: a person moving over a textured background.

The person is scikit-image's ``astronaut()`` photo (Eileen Collins), faded into a
scrolling procedural texture, with a stereo AAC tone track, encoded as H.264 ``.mp4``.
Everything is generated, so the clip is the same on every machine and needs no network.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import ConfigError, OutputError

__all__ = ["make_sample_clip"]

log = logging.getLogger(__name__)


def _person(height: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo scaled to ``height`` and a soft elliptical alpha for blending."""
    try:
        from skimage import data
    except ImportError as exc:
        raise ConfigError("the sample clip needs scikit-image: pip install 'streammat[demo]'") from exc
    import cv2

    img = data.astronaut()
    img = cv2.resize(img, (height, height), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:height, 0:height].astype(np.float32) / height
    # an ellipse around her head and shoulders, fading out towards the photo's edges
    r = ((xx - 0.5) / 0.48) ** 2 + ((yy - 0.62) / 0.62) ** 2
    alpha = np.clip((1.0 - r) / 0.25, 0.0, 1.0)[..., None]
    return img.astype(np.float32), alpha


def _texture(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A colourful, busy background twice as wide as the frame, so it can scroll."""
    rng = np.random.default_rng(seed)
    w2 = width * 2
    yy, xx = np.mgrid[0:height, 0:w2].astype(np.float32)
    tex = np.zeros((height, w2, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 6.28)
        tex[..., c] = 0.5 + 0.25 * np.sin(xx * fx + ph) * np.cos(yy * fy - ph)
    checker = ((xx // 40 + yy // 40) % 2).astype(np.float32)
    tex += 0.15 * checker[..., None] * np.array([0.9, 0.6, 0.2], np.float32)
    tex += rng.normal(0, 0.03, tex.shape).astype(np.float32)
    # keep it periodic over `width` so scrolling wraps without a seam
    tex[:, width:] = tex[:, :width]
    return np.clip(tex * 255, 0, 255)


def make_sample_clip(
    path: str | Path,
    *,
    width: int = 1280,
    height: int = 720,
    seconds: float = 10.0,
    fps: int = 30,
    audio: bool = True,
    crf: int = 20,
) -> Path:
    """Write the sample clip to ``path`` (H.264 + AAC in .mp4/.mov/.mkv) and return it."""
    path = Path(path)
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise ConfigError(f"sample size must be even and at least 64x64, got {width}x{height}")
    n = max(1, round(seconds * fps))
    person, alpha = _person(int(height * 0.85))
    ph = person.shape[0]
    tex = _texture(width, height)
    try:
        out = av.open(str(path), "w")
    except (av.error.FFmpegError, OSError) as exc:
        raise OutputError(f"{path}: cannot write ({exc})") from exc
    with out:
        vs = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        a_stream = None
        if audio:
            a_stream = out.add_stream("aac", rate=48000, layout="stereo")
        audio_pts = 0
        sr = 48000
        for i in range(n):
            t = i / fps
            shift = int(t * 60) % width
            frame = tex[:, shift : shift + width].copy()
            x = int((width - ph) * (0.5 + 0.4 * math.sin(2 * math.pi * t / 6.0)))
            y = height - ph + int(8 * math.sin(2 * math.pi * t / 1.5))
            y = max(0, y)
            h_vis = min(ph, height - y)
            region = frame[y : y + h_vis, x : x + ph]
            a = alpha[:h_vis]
            region[:] = person[:h_vis] * a + region * (1 - a)
            vf = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for pkt in vs.encode(vf):
                out.mux(pkt)
            if a_stream is not None:
                end = round((i + 1) * sr / fps)
                count = end - audio_pts
                ts = (audio_pts + np.arange(count)) / sr
                tone = 0.2 * np.sin(2 * np.pi * (330 + 110 * math.sin(t)) * ts)
                samples = np.stack([tone, tone]).astype(np.float32)
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                af.sample_rate, af.pts, af.time_base = sr, audio_pts, Fraction(1, sr)
                audio_pts = end
                for pkt in a_stream.encode(af):
                    out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if a_stream is not None:
            for pkt in a_stream.encode():
                out.mux(pkt)
    log.info("wrote sample clip %s (%dx%d, %d frames)", path, width, height, n)
    return path

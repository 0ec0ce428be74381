"""Test clips with a known alpha: a person cut out once, composited over moving textures.

As in the matting literature's composition benchmarks, the ground truth is the alpha the
frames are composited with: ``frame = alpha·person + (1 - alpha)·background``, then
camera jitter, sensor noise and a real H.264 encode and decode (libx264, crf 23) as a
camera and a upload would add them. Everything is generated from scikit-image's
``astronaut()`` photo, so a clip is the same on every machine and needs no network:

- the person: GrabCut (seeded, deterministic) separates the astronaut's head and
  shoulders from the studio once; the cut gets a soft edge one pixel wide and
  hair-like strands of partial alpha around the head, and her colours are carried out
  past the cut (inpainting) so the strands are not tinted by the studio behind her;
- ``moving``: she sways left and right and bobs, the background scrolls, the camera
  shakes by up to 3 pixels a frame;
- ``static``: nothing moves; only sensor noise and compression change between frames,
  which shows flicker where nothing should change.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import ConfigError

__all__ = ["Clip", "make_clip", "write_clip", "person_cutout", "CLIP_KINDS"]

CLIP_KINDS = ("moving", "static")
#: the photo rows kept: head and shoulders, above the helmet she holds
_PHOTO_ROWS = 340
_NOISE_SIGMA = 4.0  # grey levels, a webcam indoors
_CRF = 23
_JITTER = 3  # pixels


@dataclass(frozen=True)
class Clip:
    """Decoded frames ``(T,H,W,3)`` uint8 and their true alpha ``(T,H,W)`` uint8."""

    name: str
    frames: np.ndarray
    alpha: np.ndarray
    fps: int


@lru_cache(maxsize=2)
def person_cutout(height: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at ``height`` pixels: colours ``(h,w,3)`` float32 0..255 and alpha
    ``(h,w)`` float32 0..1 (soft edge, hair strands)."""
    try:
        from skimage import data
    except ImportError as exc:
        raise ConfigError("the quality clips need scikit-image: pip install 'streammat[demo]'") from exc
    photo = data.astronaut()[:_PHOTO_ROWS]
    hard = _grabcut(photo)
    scale = height / photo.shape[0]
    size = (round(photo.shape[1] * scale), height)
    colour = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
    hard = (cv2.resize(hard.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
    alpha = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), 0.8)
    alpha = np.maximum(alpha, _hair(hard, head=(228 * scale, 100 * scale), neck=175 * scale))
    # carry her colours outwards so partial alpha mixes person colour, not the old studio
    inner = cv2.erode(hard, np.ones((5, 5), np.uint8))
    ring = cv2.dilate(hard, np.ones((41, 41), np.uint8)) & (1 - inner)
    colour = cv2.inpaint(colour, ring * 255, 5, cv2.INPAINT_TELEA)
    return colour.astype(np.float32), alpha.astype(np.float32)


def _grabcut(photo: np.ndarray) -> np.ndarray:
    """The astronaut's head and shoulders as a 0/1 mask, from GrabCut seeded with rough
    shapes (face and chest sure, the rocket and flag corners sure background)."""
    h, w = photo.shape[:2]
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    cv2.ellipse(mask, (228, 100), (78, 92), 0, 0, 360, cv2.GC_PR_FGD, -1)
    torso = np.array([[110, 170], [340, 170], [370, 300], [380, h], [15, h], [30, 240]], np.int32)
    cv2.fillPoly(mask, [torso], cv2.GC_PR_FGD)
    cv2.ellipse(mask, (225, 120), (40, 55), 0, 0, 360, cv2.GC_FGD, -1)
    cv2.fillPoly(mask, [np.array([[100, 260], [300, 260], [320, h], [60, h]], np.int32)], cv2.GC_FGD)
    mask[:300, 365:] = cv2.GC_BGD
    mask[:5] = cv2.GC_BGD
    mask[:200, :90] = cv2.GC_BGD
    cv2.setRNGSeed(0)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=4)
    fg = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    # fill holes (her dark collar): background that does not reach the top or the sides
    _, labels = cv2.connectedComponents(1 - fg, connectivity=4)
    outside = np.unique(np.concatenate([labels[0], labels[:, 0], labels[:, -1]]))
    return (~np.isin(labels, outside[outside > 0])).astype(np.uint8)


def _hair(hard: np.ndarray, *, head: tuple[float, float], neck: float, strands: int = 900) -> np.ndarray:
    """Partial alpha of thin strands leaving the head's outline outwards, 0..1."""
    rng = np.random.default_rng(3)
    contours, _ = cv2.findContours(hard, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate(contours)[:, 0].astype(np.float32)
    points = points[points[:, 1] < neck]
    canvas = np.zeros(hard.shape, np.uint8)
    for k in rng.integers(0, len(points), strands):
        x, y = points[k]
        angle = math.atan2(y - head[1], x - head[0]) + rng.normal(0, 0.35)
        length = rng.uniform(3, 14)
        end = (round(x + length * math.cos(angle)), round(y + length * math.sin(angle)))
        start = (round(x - 2 * math.cos(angle)), round(y - 2 * math.sin(angle)))
        shade = int(rng.uniform(0.35, 0.9) * 255)
        cv2.line(canvas, start, end, shade, 1, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def _texture(width: int, height: int, seed: int) -> np.ndarray:
    """A busy, colourful background periodic over ``width`` (so it can scroll), float 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tex = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        kx = 2 * math.pi * rng.integers(2, 9) / width
        tex[..., c] = 0.5 + 0.25 * np.sin(xx * kx + rng.uniform(0, 6.3)) * np.cos(yy * rng.uniform(0.01, 0.03))
    checker = ((xx // 40 + yy // 40) % 2).astype(np.float32)
    tex += 0.18 * checker[..., None] * rng.uniform(0.2, 1.0, 3).astype(np.float32)
    noise = np.pad(rng.normal(0, 1, (height, width, 3)).astype(np.float32), ((0, 0), (24, 24), (0, 0)), "wrap")
    tex += 0.6 * cv2.GaussianBlur(noise, (0, 0), 6)[:, 24:-24]  # wrapped: no seam when scrolling
    return np.clip(tex * 255, 0, 255)


def make_clip(kind: str, *, frames: int = 64, width: int = 1280, height: int = 720, fps: int = 30) -> Clip:
    """The ``moving`` or ``static`` clip, composited, noised, encoded and decoded."""
    if kind not in CLIP_KINDS:
        raise ConfigError(f"clip kind: expected one of {', '.join(CLIP_KINDS)}, got {kind!r}")
    person, person_alpha = person_cutout(round(height * 0.85))
    ph, pw = person_alpha.shape
    quantised = np.round(person_alpha * 255) / 255  # the truth is what 8 bits can hold
    tex = _texture(width, height, seed=11)
    rng = np.random.default_rng(5)
    moving = kind == "moving"
    pictures = np.empty((frames, height, width, 3), np.uint8)
    truth = np.empty((frames, height, width), np.uint8)
    for t in range(frames):
        jx, jy = rng.integers(-_JITTER, _JITTER + 1, 2) if moving else (0, 0)
        sway = 150 * math.sin(2 * math.pi * t / (2.0 * fps)) if moving else 0.0
        bob = 6 * (1 + math.sin(2 * math.pi * t / (0.7 * fps))) if moving else 0.0
        scroll = (6 * t if moving else 0) + jx
        frame = np.roll(tex, -scroll, axis=1)
        x = round((width - pw) / 2 + sway) + jx
        y = height - ph + _JITTER + round(bob) + jy  # her cut-off bottom stays below the frame
        a = np.zeros((height, width), np.float32)
        _paste(a, quantised, x, y)
        _blend(frame, person, quantised, x, y)
        frame += rng.standard_normal(frame.shape, dtype=np.float32) * _NOISE_SIGMA
        pictures[t] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        truth[t] = np.round(a * 255).astype(np.uint8)
    return Clip(kind, _h264_roundtrip(pictures, fps), truth, fps)


def _region(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Where ``src`` with its top-left corner at ``(x, y)`` overlaps ``dst``: (dst, src) slices."""
    h, w = dst.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = max(x0, min(x + src.shape[1], w)), max(y0, min(y + src.shape[0], h))
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))


def _paste(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    d, s = _region(dst, src, x, y)
    dst[d] = src[s]


def _blend(frame: np.ndarray, colour: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """``frame = alpha·colour + (1 - alpha)·frame`` where the person is, in place."""
    d, s = _region(frame, alpha, x, y)
    frame[d] += alpha[s][..., None] * (colour[s] - frame[d])


def write_clip(clip: Clip, path: str | Path, *, frames: int | None = None) -> Path:
    """Write ``clip``'s frames to ``path`` as H.264 (crf 23): an input file for the whole
    pipeline. ``frames`` (default: the clip's own) longer than the clip plays it forward
    and backward again, so motion stays smooth across the turns."""
    n = len(clip.frames)
    period = max(1, 2 * n - 2)
    order = [(t % period) if (t % period) < n else period - (t % period) for t in range(frames or n)]
    _encode_h264(clip.frames[order], clip.fps, str(path), format=None)
    return Path(path)


def _encode_h264(pictures: np.ndarray, fps: int, dest: str | io.BytesIO, *, format: str | None) -> None:
    """Encode ``(T,H,W,3)`` RGB pictures with libx264 (crf 23, yuv420p) into ``dest``."""
    with av.open(dest, "w", format=format) as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(_CRF), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = pictures.shape[2], pictures.shape[1], "yuv420p"
        for i, picture in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _h264_roundtrip(pictures: np.ndarray, fps: int) -> np.ndarray:
    """Encode with libx264 (crf 23, yuv420p) in memory and decode back to RGB."""
    buf = io.BytesIO()
    _encode_h264(pictures, fps, buf, format="mp4")
    buf.seek(0)
    decoded = np.empty_like(pictures)
    with av.open(buf, "r") as src:
        for i, frame in enumerate(src.decode(video=0)):
            decoded[i] = frame.to_ndarray(format="rgb24")
    return decoded

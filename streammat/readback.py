"""Read streammat's outputs back as straight RGBA frames, alpha included.

Works for every output format: ProRes 4444 ``.mov``, VP9 ``.webm`` (decoded with the
``libvpx-vp9`` decoder, because ffmpeg's native ``vp9`` decoder silently drops alpha),
FFV1 ``.mkv``, H.264 composites/mattes, and PNG sequences (a folder or a ``%05d.png``
pattern, timed by their ``timestamps.json`` sidecar). Files without alpha come back with
alpha 255; gray (matte) images come back as gray RGB with alpha 255.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from .errors import InputError
from .sinks._codecs import alpha_depth
from .sinks.png_sequence import PATTERN, SIDECAR, is_pattern, sidecar_of, split_pattern

__all__ = ["RGBAFrame", "read_rgba", "probe"]


@dataclass(frozen=True)
class RGBAFrame:
    """One frame: ``image`` is ``(H,W,4)`` uint8 straight RGBA."""

    image: np.ndarray
    pts: int
    time_base: Fraction

    @property
    def time(self) -> Fraction:
        return self.pts * self.time_base


# -- PNG sequences -----------------------------------------------------------------
def _png_index(path: Path) -> tuple[Path, list[tuple[str, int]], Fraction]:
    """(folder, [(file, pts)], time_base) of a PNG folder or pattern."""
    pattern = is_pattern(str(path))
    if pattern:
        folder, _, base = split_pattern(str(path))
        sidecar = folder / sidecar_of(base)
        if not sidecar.is_file():  # a partial folder keeps its own sidecar
            sidecar = folder / f"{base}.partial" / SIDECAR
            folder = sidecar.parent
    else:
        folder = path
        sidecar = folder / SIDECAR
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text())
            tb = Fraction(data["time_base"])
            entries = [(str(e["file"]), int(e["pts"])) for e in data["frames"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"bad timestamps file {sidecar}: {exc}") from exc
        return folder, entries, tb
    if pattern:
        head, tail = PATTERN.split(path.name, maxsplit=1)
        rx = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
        files = sorted((int(m.group(1)), p.name) for p in folder.iterdir() if (m := rx.fullmatch(p.name)))
        names = [n for _, n in files]
    else:
        names = sorted(p.name for p in folder.glob("*.png"))
    if not names:
        raise InputError(f"no PNG frames in {path}")
    return folder, [(n, i) for i, n in enumerate(names)], Fraction(1, 25)  # no sidecar: 25 fps


def _read_png(file: Path) -> np.ndarray:
    img = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read {file}")
    if img.ndim == 2:
        out = np.empty((*img.shape, 4), np.uint8)
        out[..., :3] = img[..., None]
        out[..., 3] = 255
        return out
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def _is_png_sequence(path: Path) -> bool:
    return path.is_dir() or is_pattern(str(path))


# -- video files -------------------------------------------------------------------
def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"cannot open {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream")
    return container


def _video_frames(container: av.container.InputContainer) -> Iterator[av.VideoFrame]:
    stream = container.streams.video[0]
    if stream.codec_context.name == "vp9":
        # the native vp9 decoder returns yuv420p without the alpha side data; libvpx keeps it
        cc = av.codec.CodecContext.create(av.codec.Codec("libvpx-vp9", "r"))
        if stream.codec_context.extradata:
            cc.extradata = stream.codec_context.extradata
        cc.width, cc.height = stream.width, stream.height
        for packet in container.demux(stream):
            yield from cc.decode(packet if packet.size else None)
    else:
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _to_rgba(frame: av.VideoFrame) -> np.ndarray:
    """RGBA with the alpha plane of ``yuva*`` frames read directly (exact, rounded to 8 bits);
    swscale's alpha conversion is off by one at high bit depths."""
    name = frame.format.name
    if name in ("rgba", "bgra", "gbrap"):
        image = frame.reformat(format="rgba", threads=1).to_ndarray()
    else:  # PyAV assumes an unspecified (limited) range unless told: pass the frame's own
        # threads=1: swscale's threaded slices corrupt high-bit-depth conversions (FFmpeg 8.1)
        image = frame.reformat(format="rgba", src_color_range=frame.color_range or None, threads=1).to_ndarray()
    bits = alpha_depth(name)
    if bits:
        plane = frame.planes[3]
        h, w = image.shape[:2]
        if bits == 8:
            image[..., 3] = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
        else:
            v = np.frombuffer(plane, np.uint16).reshape(-1, plane.line_size // 2)[:h, :w].astype(np.uint32)
            top = (1 << bits) - 1
            image[..., 3] = (v * 255 + top // 2) // top
    return image


def read_rgba(path: str | Path) -> Iterator[RGBAFrame]:
    """Yield every frame of ``path`` as straight RGBA with its pts and time_base."""
    p = Path(path)
    if _is_png_sequence(p):
        folder, entries, tb = _png_index(p)
        for name, pts in entries:
            yield RGBAFrame(_read_png(folder / name), pts, tb)
        return
    with _open(p) as container:
        tb = container.streams.video[0].time_base
        try:
            for frame in _video_frames(container):
                yield RGBAFrame(_to_rgba(frame), int(frame.pts), tb)
        except av.FFmpegError as exc:
            raise InputError(f"cannot decode {p}: {exc}") from exc


def _has_alpha(pix_fmt: str | None) -> bool:
    if not pix_fmt:
        return False
    return pix_fmt.startswith(("yuva", "gbrap", "rgba", "bgra", "argb", "abgr", "ya"))


def probe(path: str | Path) -> dict[str, Any]:
    """Facts about an output, for tests and summaries.

    Keys: ``frames``, ``pts`` (list), ``time_base``, ``duration`` (seconds, video end),
    ``width``, ``height``, ``codec``, ``pix_fmt``, ``alpha`` (bool, stored alpha plane),
    ``has_audio``, ``audio_codec``, ``audio_duration`` (seconds)."""
    p = Path(path)
    if _is_png_sequence(p):
        folder, entries, tb = _png_index(p)
        first = cv2.imread(str(folder / entries[0][0]), cv2.IMREAD_UNCHANGED) if entries else None
        channels = 0 if first is None else (1 if first.ndim == 2 else first.shape[2])
        pts = [e[1] for e in entries]
        step = pts[-1] - pts[-2] if len(pts) > 1 else 1
        return {
            "frames": len(entries),
            "pts": pts,
            "time_base": tb,
            "duration": float((pts[-1] + step) * tb) if pts else 0.0,
            "width": None if first is None else first.shape[1],
            "height": None if first is None else first.shape[0],
            "codec": "png",
            "pix_fmt": {1: "gray", 3: "rgb24", 4: "rgba"}.get(channels, "?"),
            "alpha": channels == 4,
            "has_audio": False,
            "audio_codec": None,
            "audio_duration": 0.0,
        }
    with _open(p) as container:
        vs = container.streams.video[0]
        codec, pix_fmt = vs.codec_context.name, vs.codec_context.pix_fmt
        if codec == "vp9" and str(vs.metadata.get("alpha_mode", vs.metadata.get("ALPHA_MODE", ""))) == "1":
            pix_fmt = pix_fmt.replace("yuv", "yuva", 1) if pix_fmt and "yuva" not in pix_fmt else pix_fmt
        audio = container.streams.audio[0] if container.streams.audio else None
        pts: list[int] = []
        end = Fraction(0)
        audio_end = Fraction(0)
        audio_start: Fraction | None = None
        for packet in container.demux(*([vs] + ([audio] if audio else []))):
            if packet.size == 0 or packet.pts is None:
                continue
            t_end = (packet.pts + (packet.duration or 0)) * packet.time_base
            if packet.stream is vs:
                pts.append(int(packet.pts))
                end = max(end, t_end)
            else:
                audio_start = packet.pts * packet.time_base if audio_start is None else audio_start
                audio_end = max(audio_end, t_end)
        pts.sort()
        return {
            "frames": len(pts),
            "pts": pts,
            "time_base": vs.time_base,
            "duration": float(end),
            "width": vs.width,
            "height": vs.height,
            "codec": codec,
            "pix_fmt": pix_fmt,
            "alpha": _has_alpha(pix_fmt),
            "has_audio": audio is not None,
            "audio_codec": audio.codec_context.name if audio else None,
            "audio_duration": float(audio_end - (audio_start or 0)) if audio else 0.0,
        }

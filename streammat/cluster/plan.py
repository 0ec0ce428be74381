"""Where a video is cut: chunks of about K frames that each start at a keyframe.

The keyframes are found by demuxing packets without decoding them. Chunk ``i`` holds the
frames whose pts lie in ``[start_i, start_{i+1})``; it is decoded by seeking to a
keyframe and decoding forward, so every chunk decodes exactly the frames a single pass
over the file would. A chunk that needs warm-up frames for a stateful matter (temporal
smoothing, every-N reuse) starts decoding earlier, at the keyframe before its warm-up.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import av

from ..errors import ConfigError, InputError
from ..sources.file import NOT_A_VIDEO

__all__ = ["Chunk", "VideoPlan", "plan_video", "split"]


@dataclass(frozen=True)
class Chunk:
    """One piece of a video: frames ``[start, end)`` by pts (``end`` None: to the end)."""

    index: int
    #: keyframe to seek to; decoding starts here
    seek: int
    #: pts of the first warm-up frame (matted, not written); equals ``start`` without warm-up
    warm: int
    start: int
    end: int | None
    #: index of the chunk's first frame in the whole video, and its frame count
    first_frame: int
    frames: int
    #: frames between ``warm`` and ``start``
    warmup_frames: int = 0


@dataclass(frozen=True)
class VideoPlan:
    path: str
    frames: int
    chunks: tuple[Chunk, ...]


def _index(path: str) -> tuple[list[int], list[int]]:
    """The video's frame pts in presentation order and its keyframe pts, from packets."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"{path}: {NOT_A_VIDEO} ({exc})") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: no video stream")
        stream = container.streams.video[0]
        pts: list[int] = []
        keys: list[int] = []
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None:
                    raise InputError(f"{path}: frames without timestamps cannot be split; run it without --cluster")
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
        except av.FFmpegError as exc:
            raise InputError(f"{path}: damaged container ({exc})") from exc
    if not pts or not keys:
        raise InputError(f"{path}: no decodable video frames")
    pts.sort()
    keys.sort()
    if len(set(pts)) != len(pts):
        raise InputError(f"{path}: repeated timestamps cannot be split; run it without --cluster")
    return pts, keys


def split(pts: list[int], keys: list[int], *, chunk_frames: int, warmup: int = 0, every: int = 1) -> list[Chunk]:
    """Chunks of at least ``chunk_frames`` frames (the last may be shorter), each starting
    at a keyframe. ``warmup`` frames before each chunk are decoded and matted to warm a
    stateful matter; for ``every`` > 1 the warm-up starts on a multiple of ``every`` so the
    reused masks fall on the same frames as in one pass."""
    if chunk_frames < 1:
        raise ConfigError(f"chunk_frames: expected an integer >= 1, got {chunk_frames!r}")
    first_key = bisect.bisect_left(pts, keys[0])  # frames before the first keyframe are not decodable
    starts: list[int] = [first_key]
    for key in keys:
        i = bisect.bisect_left(pts, key)
        if i - starts[-1] >= chunk_frames:
            starts.append(i)
    chunks = []
    for n, begin in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(pts)
        warm_index = begin
        if begin > first_key and (warmup or every > 1):
            warm_index = max(first_key, begin - warmup)
            warm_index -= (warm_index - first_key) % every
        seek = keys[max(0, bisect.bisect_right(keys, pts[warm_index]) - 1)]
        end = pts[stop] if stop < len(pts) else None
        chunks.append(
            Chunk(n, seek, pts[warm_index], pts[begin], end, begin - first_key, stop - begin, begin - warm_index)
        )
    return chunks


def plan_video(path: str, *, chunk_frames: int, warmup: int = 0, every: int = 1) -> VideoPlan:
    """The chunks of the video at ``path`` (see ``split``)."""
    pts, keys = _index(path)
    chunks = split(pts, keys, chunk_frames=chunk_frames, warmup=warmup, every=every)
    return VideoPlan(path, sum(c.frames for c in chunks), tuple(chunks))

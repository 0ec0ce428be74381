"""A source of one chunk's frames: seek to its keyframe, decode forward, keep ``[start, end)``.

Frames between the chunk's warm-up pts and its start are handed to ``warm`` (batches of
``batch_size``) before the first chunk frame is yielded, so a stateful matter has seen
them when the chunk's own frames arrive; they are never written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from fractions import Fraction

import av

from ..errors import InputError
from ..frames import Frame, StreamInfo
from ..sources._av import reason, to_rgb
from ..sources.base import SourceLifecycle
from .plan import Chunk

__all__ = ["ChunkSource"]

log = logging.getLogger(__name__)


class ChunkSource(SourceLifecycle):
    """The frames of ``chunk`` of the video at ``path``, with the file's own pts."""

    backpressure = "block"

    def __init__(
        self,
        path: str,
        chunk: Chunk,
        *,
        warm: Callable[[list[Frame]], None] | None = None,
        batch_size: int = 8,
    ) -> None:
        self.path = path
        self.chunk = chunk
        self.name = f"{path} (chunk {chunk.index})"
        self._warm = warm
        self._batch_size = max(1, batch_size)
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._first: av.VideoFrame | None = None
        self._stats = {"decoded": 0, "warmup": 0}

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def _open(self) -> StreamInfo:
        try:
            self._container = container = av.open(self.path, metadata_errors="ignore")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.chunk.index:  # the first chunk starts where the file does
                container.seek(self.chunk.seek, stream=stream, backward=True, any_frame=False)
        except (av.FFmpegError, OSError, IndexError) as exc:
            raise InputError(f"{self.name}: cannot open ({exc})") from exc
        self._frames = self._decode(container, stream)
        self._first = next(self._frames, None)
        if self._first is None:
            raise InputError(f"{self.name}: no decodable frames")
        rgb_shape = to_rgb(self._first).shape
        return StreamInfo(
            width=rgb_shape[1],
            height=rgb_shape[0],
            time_base=Fraction(stream.time_base),
            rate=Fraction(stream.average_rate) if stream.average_rate else None,
            frames=self.chunk.frames,
            audio_path=None,  # the join muxes the whole file's audio once
            name=self.name,
        )

    def _decode(self, container: av.container.InputContainer, stream: object) -> Iterator[av.VideoFrame]:
        """Decoded frames from the seek point on, in presentation order, up to ``end``."""
        chunk = self.chunk
        try:
            for vf in container.decode(stream):
                if vf.pts is None:
                    raise InputError(f"{self.name}: a frame without a timestamp")
                if vf.pts < chunk.warm:
                    continue  # before the warm-up (or a leading frame of an open GOP)
                if chunk.end is not None and vf.pts >= chunk.end:
                    return
                yield vf
        except av.FFmpegError as exc:
            raise InputError(f"{self.name}: corrupt data ({reason(exc)})") from exc

    def _release(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        if self.info is None or self._frames is None:
            raise InputError(f"{self.name}: source is not open")
        chunk, tb = self.chunk, self.info.time_base
        pending = [] if self._first is None else [self._first]
        self._first = None
        warm: list[Frame] = []
        warm_index = chunk.first_frame - chunk.warmup_frames
        index = chunk.first_frame
        for vf in _chain(pending, self._frames):
            if vf.pts < chunk.start:
                warm.append(Frame(to_rgb(vf), vf.pts, tb, warm_index))
                warm_index += 1
                if len(warm) == self._batch_size:
                    self._send_warmup(warm)
                    warm = []
                continue
            if warm:
                self._send_warmup(warm)
                warm = []
            yield Frame(to_rgb(vf), vf.pts, tb, index)
            index += 1
            self._stats["decoded"] += 1
        if self._stats["decoded"] != chunk.frames:
            raise InputError(f"{self.name}: decoded {self._stats['decoded']} of {chunk.frames} frames (corrupt data?)")

    def _send_warmup(self, frames: list[Frame]) -> None:
        self._stats["warmup"] += len(frames)
        if self._warm is not None:
            self._warm(frames)


def _chain(first: list[av.VideoFrame], rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield from first
    yield from rest

"""Video files (and URLs ffmpeg reads: rtsp://, http://…) through PyAV: any container and
codec ffmpeg reads.

Backpressure "block": a slow consumer slows decoding and nothing is lost. Each frame
keeps its own pts (variable frame rate stays variable). Frames are converted to RGB24
whatever the input (10-bit, 4:4:4, odd sizes) and turned upright per the rotation
metadata. Corrupt packets are skipped and counted (at most ``max_consecutive_errors`` in
a row). Frames are never lost silently: a file with skipped packets, or one that ends
before its stated length, raises ``InputError`` after every decodable frame was delivered,
so the pipeline finalizes its outputs as partial.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from ..frames import Frame, StreamInfo

__all__ = ["FileSource"]

log = logging.getLogger(__name__)

# A file whose container states N frames but yields fewer than this share is truncated.
_TRUNCATION_SLACK = 0.98


class FileSource:
    backpressure = "block"

    def __init__(self, path: str | os.PathLike[str], *, threads: int = 0, max_consecutive_errors: int = 25) -> None:
        #: what the user gave: a file path, or a URL ffmpeg reads (rtsp://, http://, file:…)
        self.name = os.fspath(path)
        self.is_url = "://" in self.name
        self.path = Path(path)
        self.threads = threads
        self.max_consecutive_errors = max_consecutive_errors
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._first: av.VideoFrame | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._closed = threading.Event()
        self._stats = {"decoded": 0, "skipped": 0, "repaired_pts": 0}
        self.info: StreamInfo | None = None

    # -- lifecycle ----------------------------------------------------------------
    def open(self) -> StreamInfo:
        name = self.name
        if not self.is_url:
            if not self.path.exists():
                raise InputError(f"{name}: no such file")
            if self.path.is_dir():
                raise InputError(f"{name}: is a directory, not a video file")
            if self.path.stat().st_size == 0:
                raise InputError(f"{name}: empty file (0 bytes)")
        # a network input that stops answering is an error after 10 s, not a hang
        options = {"rw_timeout": "10000000"} if self.is_url else {}
        try:
            container = av.open(name, options=options, metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            problem = "cannot open" if self.is_url else "not a video, or damaged/truncated"
            raise InputError(f"{name}: {problem} ({_reason(exc)})") from exc
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
        self._container = container
        if not container.streams.video:
            container.close()
            raise InputError(f"{name}: no video stream (streams: {_describe_streams(container)})")
        stream = container.streams.video[0]
        if stream.codec_context is None or not stream.codec_context.codec:
            container.close()
            raise InputError(f"{name}: unsupported video codec")
        stream.thread_type = "AUTO"
        if self.threads:
            stream.codec_context.thread_count = self.threads
        self._stream = stream
        self._frames = self._decode()
        try:
            self._first = next(self._frames)
        except StopIteration:
            self.close()
            raise InputError(f"{name}: no decodable video frames") from None
        except InputError:
            self.close()
            raise
        w, h = self._first.width, self._first.height
        if _quarter_turns(self._first) % 2:
            w, h = h, w
        self.info = StreamInfo(
            width=w,
            height=h,
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000),
            rate=Fraction(stream.average_rate) if stream.average_rate else None,
            frames=stream.frames or _estimate_frames(stream, container),
            audio_path=name if container.streams.audio else None,
            name=name,
        )
        log.info(
            "%s: %dx%d %s, %s frames, audio: %s",
            name,
            w,
            h,
            stream.codec_context.name,
            self.info.frames or "?",
            bool(container.streams.audio),
        )
        return self.info

    def close(self) -> None:
        self._closed.set()
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # pragma: no cover - closing a broken container
                log.debug("error closing %s", self.name, exc_info=True)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def __enter__(self) -> FileSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self.info is None or self._frames is None or self._first is None:
            raise InputError(f"{self.name}: source is not open")
        tb = self.info.time_base
        last_pts: int | None = None
        index = 0
        pending: av.VideoFrame | None = self._first
        self._first = None
        while pending is not None and not self._closed.is_set():
            vf = pending
            pts = vf.pts if vf.pts is not None else (last_pts + 1 if last_pts is not None else 0)
            if last_pts is not None and pts <= last_pts:
                # Muxers need strictly increasing pts; broken files repeat them.
                pts = last_pts + 1
                self._stats["repaired_pts"] += 1
            last_pts = pts
            yield Frame(_to_rgb(vf), pts, tb, index)
            index += 1
            self._stats["decoded"] = index
            try:
                pending = next(self._frames)
            except StopIteration:
                pending = None
        if self._closed.is_set():
            return
        if self._stats["repaired_pts"]:
            log.warning("%s: repaired %d non-increasing timestamps", self.name, self._stats["repaired_pts"])
        if self._stats["skipped"]:
            n = self._stats["skipped"]
            raise InputError(
                f"{self.name}: corrupt data: skipped {n} undecodable packet{'s' * (n > 1)}, their frames are missing"
            )
        if self._stream is not None and self._stream.frames and index < self._stream.frames * _TRUNCATION_SLACK:
            raise InputError(f"{self.name}: truncated or corrupt: decoded {index} of {self._stream.frames} frames")
        missing = self._missing_seconds(last_pts)
        if missing is not None:
            raise InputError(f"{self.name}: truncated or corrupt: video stops {missing:.1f} s before its stated end")

    def _missing_seconds(self, last_pts: int | None) -> float | None:
        """Seconds of video missing at the end when the container states a longer duration
        (containers like Matroska state no frame count). None when nothing is missing."""
        stream, container, info = self._stream, self._container, self.info
        if stream is None or container is None or info is None or last_pts is None:
            return None
        frame = float(1 / info.rate) if info.rate else 0.04
        end = float((last_pts - (stream.start_time or 0)) * info.time_base) + frame
        tight = max(0.5, 3 * frame)
        tagged = _parse_clock(stream.metadata.get("DURATION"))  # Matroska's per-stream tag
        if stream.duration:
            expected, slack = float(stream.duration * stream.time_base), tight
        elif tagged is not None:
            expected, slack = tagged, tight
        elif container.duration and len(container.streams) == 1:
            expected, slack = container.duration / av.time_base, tight
        elif container.duration:
            # the container's duration covers audio too, which may outlast the video a little
            expected = container.duration / av.time_base
            slack = max(1.0, 3 * frame, 0.1 * expected)
        else:
            return None
        return expected - end if expected - end > slack else None

    def _decode(self) -> Iterator[av.VideoFrame]:
        assert self._container is not None and self._stream is not None
        consecutive = 0
        demux = self._container.demux(self._stream)
        while not self._closed.is_set():
            try:
                packet = next(demux)
            except StopIteration:
                return
            except av.error.EOFError:
                return
            except av.error.FFmpegError as exc:
                # A broken container structure ends the readable part of the file.
                log.warning("%s: cannot read past a damaged part (%s)", self.name, _reason(exc))
                return
            except (OSError, ValueError) as exc:
                if self._closed.is_set():
                    return
                raise InputError(f"{self.name}: read error ({exc})") from exc
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as exc:  # a corrupt packet: skip, count
                self._stats["skipped"] += 1
                consecutive += 1
                log.debug("%s: skipped a corrupt packet at pts %s: %s", self.name, packet.pts, exc)
                if consecutive > self.max_consecutive_errors:
                    raise InputError(
                        f"{self.name}: corrupt data: {consecutive} packets in a row failed to decode"
                    ) from exc
                continue
            consecutive = 0
            yield from frames


def _to_rgb(vf: av.VideoFrame) -> np.ndarray:
    # One swscale thread: ~10x faster than the default here (thread start-up per call), and
    # ffmpeg 8.1's threaded conversions to/from high bit depths were seen to corrupt pixels.
    rgb = vf.to_ndarray(format="rgb24", threads=1)
    turns = _quarter_turns(vf)
    if turns:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=turns))
    return rgb


def _quarter_turns(vf: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that make the frame upright (display matrix)."""
    try:
        rotation = int(round(vf.rotation or 0))
    except (AttributeError, TypeError):  # pragma: no cover - older PyAV
        return 0
    return (rotation // 90) % 4


def _estimate_frames(stream: av.video.stream.VideoStream, container: av.container.InputContainer) -> int | None:
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration and stream.time_base and rate:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration and rate:
        return max(1, round(container.duration / av.time_base * float(rate)))
    return None


def _parse_clock(text: str | None) -> float | None:
    """``"00:00:04.000000000"`` → 4.0; None when absent or malformed."""
    if not text:
        return None
    try:
        h, m, sec = text.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return None


def _describe_streams(container: av.container.InputContainer) -> str:
    kinds = [s.type for s in container.streams]
    return ", ".join(kinds) if kinds else "none"


def _reason(exc: Exception) -> str:
    """ffmpeg's message without the errno/file noise PyAV adds."""
    msg = getattr(exc, "strerror", None) or str(exc)
    return str(msg).split(":")[-1].strip() or type(exc).__name__

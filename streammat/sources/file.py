"""Video files, pipes and URLs ffmpeg reads (rtsp://, http://…) through PyAV: any container
and codec ffmpeg reads.

Backpressure "block": a slow consumer slows decoding and nothing is lost. Each frame
keeps its own pts (variable frame rate stays variable); frames without timestamps, or
whose timestamps do not increase (raw H.264 streams), are numbered from the frame rate as
ffmpeg's ``+genpts`` does. Frames are converted to RGB24 whatever the input (10-bit,
4:4:4, odd sizes) and turned upright per the rotation metadata. Corrupt packets are
skipped and counted (at most ``max_consecutive_errors`` in a row). Frames are never lost
silently: a file with skipped packets, or one that ends before its stated length, raises
``InputError`` after every decodable frame was delivered, so the pipeline finalizes its
outputs as partial.

Inputs: a file path, a named pipe, ``-`` (standard input), or a URL. A URL that does not
answer within ``timeout`` seconds, when opening or later, is an ``InputError``. Opening
runs on a worker thread, so Ctrl-C and SIGTERM interrupt a stalled open at once. Frames
above ``max_pixels`` are refused before they are allocated: the decoder itself gets the
limit, and the stream's declared size is checked when it opens.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av

from ..errors import ConfigError, InputError
from ..frames import MAX_PIXELS, Frame, StreamInfo
from ._av import describe_streams, estimate_frames, parse_clock, quarter_turns, reason, to_rgb
from .base import (
    SourceLifecycle,
    check_frame_size,
    check_max_pixels,
    check_positive,
    check_spec,
    check_threads,
)

__all__ = ["FileSource", "STDIN"]

#: what a local file that FFmpeg cannot open is said to be
NOT_A_VIDEO = "not a video, or damaged/truncated"

log = logging.getLogger(__name__)

#: the input name that means "read standard input"
STDIN = "-"
# A file whose container states N frames but yields fewer than this share is truncated.
_TRUNCATION_SLACK = 0.98
# How often a thread waiting for the opening worker looks up (signals, close()).
_POLL = 0.1
# Frame rate assumed for numbering frames that have no timestamps and no stated rate.
_FALLBACK_RATE = Fraction(25)


class FileSource(SourceLifecycle):
    """A video file, named pipe, ``-`` (stdin) or URL, decoded with PyAV.

    - ``threads``: decoder threads (0: ffmpeg decides).
    - ``timeout``: seconds a URL may take to open or to deliver the next packet.
    - ``max_pixels``: the largest frame (width × height) accepted.
    """

    backpressure = "block"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 0,
        max_consecutive_errors: int = 25,
        timeout: float = 10.0,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        #: what the user gave: a file path, ``-``, or a URL ffmpeg reads (rtsp://, http://, file:…)
        self.name = check_spec(path)
        self.threads = check_threads(threads)
        if isinstance(max_consecutive_errors, bool) or not isinstance(max_consecutive_errors, int):
            raise ConfigError(f"max_consecutive_errors: expected an int >= 0, got {max_consecutive_errors!r}")
        self.max_consecutive_errors = max_consecutive_errors
        self.timeout = check_positive(timeout, "timeout")
        self.max_pixels = check_max_pixels(max_pixels)
        self.is_url = "://" in self.name
        self.info: StreamInfo | None = None
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._first: av.VideoFrame | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._closed = threading.Event()
        # close() from another thread must not free the container under a read in progress
        self._lock = threading.Lock()
        self._reading = False
        self._stats = {"decoded": 0, "skipped": 0, "repaired_pts": 0}

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    # -- lifecycle ----------------------------------------------------------------
    def _open(self) -> StreamInfo:
        is_pipe = self._check_input()
        opened: dict[str, Any] = {}
        done, lock, abandoned = threading.Event(), threading.Lock(), [False]

        def work() -> None:
            try:
                opened["value"] = self._probe()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                opened["error"] = exc
            with lock:
                done.set()
                if abandoned[0] and "value" in opened:
                    opened["value"][0].close()

        threading.Thread(target=work, name="sm-open", daemon=True).start()
        try:
            # short waits: the main thread's signal handlers run, and close() is noticed
            while not done.wait(_POLL):
                if self._closed.is_set():
                    raise InputError(f"{self.name}: closed while opening")
        except BaseException:
            # Ctrl-C/SIGTERM or close(): leave the worker in its blocking call; it closes what it opened
            with lock:
                abandoned[0] = True
                if done.is_set() and "value" in opened:
                    opened["value"][0].close()
            raise
        if "error" in opened:
            raise opened["error"]
        container, stream, frames, first = opened["value"]
        if self._closed.is_set():
            container.close()
            raise InputError(f"{self.name}: the source is closed; create a new one")
        self._container, self._stream, self._frames, self._first = container, stream, frames, first
        return self._describe(container, stream, first, is_pipe)

    def _check_input(self) -> bool:
        """Refuse what cannot be a video before ffmpeg sees it; True for pipes and stdin."""
        name = self.name
        if name == STDIN:
            if os.isatty(0):
                raise InputError("-: standard input is a terminal; pipe a video into it (… | streammat process - …)")
            return True
        if self.is_url:
            return False
        try:
            st = os.stat(name)
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{name}: is a directory, not a video file")
        if stat.S_ISFIFO(mode):
            return True
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            raise InputError(
                f"{name}: is a device, not a video file or pipe (a camera is read by: streammat live --camera {name})"
            )
        if not stat.S_ISREG(mode):
            raise InputError(f"{name}: is not a regular file or pipe")
        if st.st_size == 0:
            raise InputError(f"{name}: empty file (0 bytes)")
        return False

    def _probe(self) -> tuple[av.container.InputContainer, Any, Iterator[av.VideoFrame], av.VideoFrame]:
        """Open the container and decode the first frame (on the worker thread)."""
        name = self.name
        limit = {"max_pixels": str(self.max_pixels)}  # ffmpeg refuses larger pictures itself
        try:
            container = av.open(
                "pipe:0" if name == STDIN else name,
                options=limit,
                timeout=(self.timeout, self.timeout) if self.is_url else None,
                metadata_errors="ignore",
            )
        except (av.error.ExitError, av.error.TimeoutError) as exc:
            raise InputError(f"{name}: no answer within {self.timeout:g} s (timeout)") from exc
        except av.error.FFmpegError as exc:
            problem = "cannot open" if self.is_url else NOT_A_VIDEO
            raise InputError(f"{name}: {problem} ({reason(exc)})") from exc
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from exc
        try:
            if not container.streams.video:
                raise InputError(f"{name}: no video stream (streams: {describe_streams(container)})")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx is None or not ctx.codec:
                raise InputError(f"{name}: unsupported video codec")
            check_frame_size(name, ctx.width, ctx.height, self.max_pixels)
            ctx.options = dict(limit)
            stream.thread_type = "AUTO"
            if self.threads:
                ctx.thread_count = self.threads
            frames = self._decode(container, stream)
            try:
                first = next(frames)
            except StopIteration:
                self._explain_undecodable(ctx)
                raise InputError(f"{name}: no decodable video frames") from None
            check_frame_size(name, first.width, first.height, self.max_pixels)
        except BaseException:
            container.close()
            raise
        return container, stream, frames, first

    def _explain_undecodable(self, ctx: Any) -> None:
        """A stream whose size only decoding reveals (an image) fails to decode when it is
        above the limit; read the size from the image header to say so."""
        if ctx.width or self.is_url or self.name == STDIN:
            return
        from .images import image_size

        size = image_size(self.name)
        if size is not None:
            check_frame_size(self.name, *size, self.max_pixels)

    def _describe(self, container: Any, stream: Any, first: av.VideoFrame, is_pipe: bool) -> StreamInfo:
        w, h = first.width, first.height
        if quarter_turns(first) % 2:
            w, h = h, w
        has_audio = bool(container.streams.audio)
        if has_audio and is_pipe:
            log.warning("%s: audio is not copied from a pipe (it cannot be read twice)", self.name)
        info = StreamInfo(
            width=w,
            height=h,
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000),
            rate=Fraction(stream.average_rate) if stream.average_rate else None,
            frames=stream.frames or estimate_frames(stream, container),
            audio_path=self.name if has_audio and not is_pipe else None,
            name=self.name,
        )
        codec = stream.codec_context.name
        log.info("%s: %dx%d %s, %s frames, audio: %s", self.name, w, h, codec, info.frames or "?", has_audio)
        return info

    def _release(self) -> None:
        self._closed.set()
        with self._lock:
            if self._reading:
                return  # the reading thread closes the container when its read returns
            container, self._container = self._container, None
        _close_quietly(container, self.name)

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self.info is None or self._frames is None or self._first is None:
            raise InputError(f"{self.name}: source is not open")
        tb = self.info.time_base
        rate = self.info.rate or self._stream_rate()
        step = max(1, round(1 / (rate * tb)))  # one frame period in pts units, for genpts
        last_pts: int | None = None
        index = 0
        pending: av.VideoFrame | None = self._first
        self._first = None
        while pending is not None and not self._closed.is_set():
            vf = pending
            check_frame_size(self.name, vf.width, vf.height, self.max_pixels)
            pts = vf.pts
            if pts is None or (last_pts is not None and pts <= last_pts):
                # Muxers need strictly increasing pts; raw streams have none, broken files repeat them.
                if not self._stats["repaired_pts"]:
                    log.warning(
                        "%s: frames without increasing timestamps; numbering them at %s fps (as ffmpeg's +genpts)",
                        self.name,
                        rate,
                    )
                pts = 0 if last_pts is None else last_pts + step
                self._stats["repaired_pts"] += 1
            last_pts = pts
            yield Frame(to_rgb(vf), pts, tb, index)
            index += 1
            self._stats["decoded"] = index
            try:
                pending = next(self._frames)
            except StopIteration:
                pending = None
        if self._closed.is_set():
            return
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

    def _stream_rate(self) -> Fraction:
        stream = self._stream
        rate = (stream.average_rate or stream.guessed_rate) if stream is not None else None
        return Fraction(rate) if rate else _FALLBACK_RATE

    def _missing_seconds(self, last_pts: int | None) -> float | None:
        """Seconds of video missing at the end when the container states a longer duration
        (containers like Matroska state no frame count). None when nothing is missing."""
        stream, container, info = self._stream, self._container, self.info
        if stream is None or container is None or info is None or last_pts is None:
            return None
        frame = float(1 / info.rate) if info.rate else 0.04
        end = float((last_pts - (stream.start_time or 0)) * info.time_base) + frame
        tight = max(0.5, 3 * frame)
        tagged = parse_clock(stream.metadata.get("DURATION"))  # Matroska's per-stream tag
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

    def _read(self, demux: Iterator[av.Packet]) -> av.Packet | None:
        """The next packet, or None at the end (or once closed)."""
        with self._lock:
            if self._closed.is_set():
                return None
            self._reading = True
        try:
            packet = next(demux)
        except (StopIteration, av.error.EOFError):
            return None
        except (av.error.ExitError, av.error.TimeoutError) as exc:
            if self._closed.is_set():
                return None
            raise InputError(f"{self.name}: no data for {self.timeout:g} s (timeout)") from exc
        except av.error.FFmpegError as exc:
            # A broken container structure ends the readable part of the file.
            log.warning("%s: cannot read past a damaged part (%s)", self.name, reason(exc))
            return None
        except (OSError, ValueError) as exc:
            if self._closed.is_set():
                return None
            raise InputError(f"{self.name}: read error ({exc})") from exc
        finally:
            with self._lock:
                self._reading = False
                closed, container = self._closed.is_set(), self._container
                if closed:
                    self._container = None
            if closed:
                _close_quietly(container, self.name)
        return None if closed else packet

    def _decode(self, container: av.container.InputContainer, stream: Any) -> Iterator[av.VideoFrame]:
        consecutive = 0
        demux = container.demux(stream)
        while (packet := self._read(demux)) is not None:
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


def _close_quietly(container: av.container.InputContainer | None, name: str) -> None:
    if container is None:
        return
    try:
        container.close()
    except Exception:  # pragma: no cover - closing a broken container
        log.debug("error closing %s", name, exc_info=True)

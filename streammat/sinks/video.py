"""Video file sinks: alpha video (ProRes 4444 / VP9 / FFV1), mattes and composites.

Timestamps: every frame keeps the input's integer pts. The encoder and stream use the
time base ``1/den`` of the input's ``num/den`` and pts are multiplied by ``num`` (exact).
MOV/MP4 keep that time scale (``video_track_timescale``); Matroska/WebM store
milliseconds, so there pts are rounded to the nearest 1/1000 s by the muxer.

Odd sizes: ProRes (prores_ks), VP9 (libvpx) and FFV1 take odd sizes as they are; H.264
4:2:0 cannot, so odd-sized composites/mattes are written as H.264 4:4:4 at the exact size.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import OutputError
from ..frames import MattedBatch, StreamInfo, join_rgba
from . import _safe_path
from ._codecs import CONTAINERS, CodecSpec, alpha_depth, check_codec, component_bits, muxer_options
from ._target import OutputTarget
from .audio import AudioPassthrough
from .base import CLOSE_DEADLINE, SinkLifecycle, run_with_deadline
from .compositing import Compositor

__all__ = ["VideoSink"]

log = logging.getLogger(__name__)

_BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
#: swscale threads for RGB→YUV. Must stay 1: with PyAV 18.1 / FFmpeg 8.1 the default
#: (threaded slices) returned corrupted, run-to-run different planes for 10-bit targets
#: (errors up to 364/1023 at 854x480, RGBA→yuva444p10le); single-threaded is exact.
_SWS_THREADS = 1
_RANGE = {"MPEG": 1, "JPEG": 2}


class VideoSink(SinkLifecycle):
    """Writes matted batches to one video file.

    ``mode`` is ``"alpha"`` (straight RGBA), ``"matte"`` (the alpha as grayscale) or
    ``"composite"`` (needs ``compositor``). ``threads`` caps the encoder's threads so
    encoding does not starve the model on small machines."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: CodecSpec,
        *,
        container: str | None = None,
        mode: str = "alpha",
        compositor: Compositor | None = None,
        threads: int = 2,
        copy_audio: bool = True,
        overwrite: bool = False,
        inputs: Iterable[str] = (),
    ) -> None:
        if mode == "composite" and compositor is None:
            raise ValueError("composite mode needs a compositor")
        shown = os.fspath(path)
        self.path = Path(shown)
        self._name = shown
        container = container or next((c for e, c in CONTAINERS.items() if shown.lower().endswith(e)), None)
        if container is None:
            raise OutputError(
                f"cannot tell which container to write {shown} as: name it {', '.join(CONTAINERS)} or give a format"
            )
        self.container = container
        self.spec = check_codec(spec, container, alpha=mode == "alpha", shown=shown)
        self.mode = mode
        self.compositor = compositor
        self.threads = threads
        self.copy_audio = copy_audio
        self.frames = 0
        self.final_path: Path | None = None
        self._target = OutputTarget(self.path, shown, overwrite=overwrite, inputs=inputs)
        self._target.check()
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._audio: AudioPassthrough | None = None
        self._tmp: Path | None = None
        self._failed: BaseException | None = None
        self._size = (0, 0)
        self._num = 1
        self._tb = Fraction(1)
        self._last_pts: int | None = None
        self._end: Fraction | None = None
        self._default_duration = 0
        self._warned_size = False

    # -- lifecycle ----------------------------------------------------------------
    def open(self, info: StreamInfo) -> None:
        self._start_open()
        try:
            self._tmp = tmp = self._target.acquire()
        except BaseException:
            self._state = "closed"
            raise
        w, h = info.width, info.height
        self._size = (w, h)
        self._num, den = info.time_base.numerator, info.time_base.denominator
        self._tb = Fraction(1, den)
        if info.rate:
            self._default_duration = max(1, round(1 / (info.rate * self._tb)))
        spec = self.spec
        pix_fmt = spec.pix_fmt_for(w, h)
        self._pix_fmt = pix_fmt
        self._alpha_bits = alpha_depth(pix_fmt) if self.mode == "alpha" else 0
        try:
            options = muxer_options(self.container, den)
            self._container = container = av.open(str(tmp), "w", format=self.container, options=options)
        except (av.FFmpegError, OSError) as exc:
            self._abort()
            raise OutputError(f"cannot write {self._name}: {_reason(exc)}") from exc
        try:
            stream = container.add_stream(spec.codec)
            cc = stream.codec_context
            stream.width, stream.height = w, h
            stream.pix_fmt = pix_fmt
            stream.time_base = self._tb
            cc.time_base = self._tb
            if info.rate:
                cc.framerate = info.rate
            if spec.color_range is not None:
                cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
                cc.color_range = _RANGE[spec.color_range]
            options = dict(spec.options)
            if spec.codec == "prores" and w % 2:
                raise OutputError(
                    f"cannot write {self._name}: the prores (prores_aw) encoder needs an even width, "
                    f"got {w}; use the default prores_ks"
                )
            cc.thread_count = self.threads
            cc.thread_type = "AUTO" if spec.codec not in ("libvpx-vp9",) else cc.thread_type
            cc.options = options
            stream.metadata.update(spec.metadata)
            cc.open()
            self._stream = stream
            if self.copy_audio:
                self._audio = AudioPassthrough.maybe(info.audio_path, container)
            try:
                container.start_encoding()  # header now: muxer and file errors surface in open()
            except av.FFmpegError as exc:
                if exc.errno is not None and exc.errno > 0 and exc.strerror:  # the file itself (EACCES, ENOENT, ...)
                    raise OutputError(f"cannot write {self._name}: {_reason(exc)}") from exc
                raise
        except (av.FFmpegError, ValueError) as exc:
            self._abort()
            raise OutputError(f"cannot write {self._name}: {spec.codec} encoder: {exc}") from exc
        except BaseException:
            self._abort()
            raise
        if self.compositor is not None:
            self.compositor.prepare(w, h)
        log.debug("writing %s to %s (%s %s)", self._name, tmp, spec.codec, pix_fmt)

    def _abort(self) -> None:
        """Undo a failed open: nothing is left behind, the sink is closed."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError):
                pass
        self._container = None
        if self._tmp is not None:
            _safe_path.discard(self._tmp)
        self._target.release()
        self._state = "closed"

    def write(self, batch: MattedBatch) -> None:
        self._check_open()
        n = len(batch)
        images, alpha = batch.batch.images_array, batch.alpha_array
        w, h = self._size
        if images.shape[1:3] != (h, w):
            images, alpha = self._fit(images, alpha)
        planes: np.ndarray | None = None
        if self.mode == "alpha" and self._alpha_bits:
            # planar yuva: colour converts from RGB and the alpha plane is written directly,
            # so no RGBA copy of the batch is made (swscale gives the same YUV planes)
            data, fmt, planes = images, "rgb24", alpha
        elif self.mode == "alpha":
            data = join_rgba(images, alpha)
            fmt = "rgba"
        elif self.mode == "matte":
            data, fmt = alpha, "gray"
        else:
            assert self.compositor is not None
            data = self.compositor.composites(images, alpha, made=batch)
            fmt = "rgb24"
        try:
            for i in range(n):
                self._encode(data[i], fmt, batch.batch.pts[i], None if planes is None else planes[i])
        except (av.FFmpegError, OSError) as exc:
            self._failed = exc
            raise OutputError(f"cannot write {self._name}: {_reason(exc)}") from exc

    def _fit(self, images: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Resize frames of another size (camera reopened) to the opened size."""
        w, h = self._size
        if not self._warned_size:
            log.warning(
                "%s: frame size changed to %dx%d; scaling to the opened %dx%d",
                self.path,
                images.shape[2],
                images.shape[1],
                w,
                h,
            )
            self._warned_size = True
        imgs = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in images])
        alps = np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in alpha])
        return imgs, alps

    def _encode(self, array: np.ndarray, fmt: str, pts: int, alpha: np.ndarray | None = None) -> None:
        assert self._stream is not None and self._container is not None
        opts = self._num * pts
        if self._last_pts is not None and opts <= self._last_pts:
            log.warning("%s: dropping a frame with non-increasing pts %d", self.path, pts)
            return
        spec = self.spec
        if fmt == "gray" and self._pix_fmt.startswith("yuv"):
            frame = _gray_yuv_frame(array, self._pix_fmt, full_range=spec.color_range == "JPEG")
        elif spec.color_range is not None:
            frame = av.VideoFrame.from_ndarray(array, format=fmt)
            frame = frame.reformat(
                format=self._pix_fmt,
                dst_colorspace="itu709",
                dst_color_range=spec.color_range,
                threads=_SWS_THREADS,
            )
        else:
            frame = av.VideoFrame.from_ndarray(array, format=fmt)
            if fmt != self._pix_fmt:
                frame = frame.reformat(format=self._pix_fmt, threads=_SWS_THREADS)
        if self._alpha_bits:
            _set_alpha_plane(frame, array[..., 3] if alpha is None else alpha, self._alpha_bits)
        frame.pts = opts
        frame.time_base = self._tb
        if self._last_pts is not None:
            self._default_duration = opts - self._last_pts
        if self._default_duration:
            frame.duration = self._default_duration
        self._last_pts = opts
        self._end = (opts + (self._default_duration or 0)) * self._tb
        packets = self._stream.encode(frame)
        if self._audio is not None:
            self._audio.mux_until(opts * self._tb)
        self._container.mux(packets)
        self.frames += 1

    def close(self, *, complete: bool = True) -> None:
        if not self._start_close():
            return
        try:
            if self._container is None or self._tmp is None:
                return  # never opened, or the open failed and cleaned up
            written = self.frames
            try:
                run_with_deadline(lambda: self._finalize(complete), CLOSE_DEADLINE, f"finishing {self._name}")
                error = None
            except (av.FFmpegError, OSError, OutputError) as exc:
                error = exc
            if error is None:
                self.final_path = _safe_path.finish(self._tmp, self.path, complete=complete, frames=written)
                return
            self.final_path, playable = _safe_path.salvage(self._tmp, self.path, written=written)
            kept = (
                f"kept {self.final_path} ({playable} of {written} frames playable)"
                if self.final_path
                else f"nothing playable was kept ({written} frames lost)"
            )
            if self._failed is not None:  # write() raised that error already: say what is left
                log.warning("%s: %s", self._name, kept)
                return
            raise OutputError(f"cannot finish {self._name}: {_reason(error)}; {kept}") from error
        finally:
            self._container = None
            self._target.release()

    def _finalize(self, complete: bool) -> None:
        """Flush the encoder and the audio, write the trailer; the first error is raised
        after the container was closed (it always is)."""
        container, stream = self._container, self._stream
        assert container is not None and stream is not None
        error: BaseException | None = None
        try:
            if self._failed is None:  # after a write error the encoder state is unknown
                container.mux(stream.encode(None))
                if self._audio is not None:
                    self._audio.finish(None if complete else self._end)
        except (av.FFmpegError, OSError, OutputError) as exc:
            error = exc
        finally:
            if self._audio is not None:
                self._audio.release()
            try:
                container.close()
            except (av.FFmpegError, OSError) as exc:
                error = error or exc
        if error is not None:
            raise error
        if self._failed is not None:
            raise self._failed

    @property
    def description(self) -> str:
        name = self.final_path or self._name
        return f"{name} ({self.spec.description}, {self.frames} frames)"


def _reason(exc: BaseException) -> str:
    """The OS's words for a file error (``No space left on device``), else the message."""
    strerror = getattr(exc, "strerror", None)
    return strerror.lower() if isinstance(strerror, str) and strerror else str(exc)


def _set_alpha_plane(frame: av.VideoFrame, alpha: np.ndarray, bits: int) -> None:
    """Write the alpha plane ourselves: swscale's RGBA→yuva conversion is not exact (±1 at
    10 bits) and, for widths that are not a multiple of 16, not even deterministic (it
    returned corrupted alpha blocks in some runs with ffmpeg 8.1)."""
    plane = frame.planes[3]
    h, w = alpha.shape
    if bits == 8:
        np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w] = alpha
        return
    dst = np.frombuffer(plane, np.uint16).reshape(-1, plane.line_size // 2)[:h, :w]
    a = alpha.astype(np.uint16)
    # bit replication: exact inverse of the decoders' scaling back to 8 bits
    np.bitwise_or(a << (bits - 8), a >> (16 - bits), out=dst)


def _gray_yuv_frame(gray: np.ndarray, pix_fmt: str, *, full_range: bool) -> av.VideoFrame:
    """A YUV frame with luma from ``gray`` and neutral chroma, built without swscale (exact
    and deterministic; swscale's gray→yuv422p10le gave corrupted blocks at odd widths)."""
    h, w = gray.shape
    frame = av.VideoFrame(w, h, pix_fmt)
    bits = component_bits(pix_fmt)
    dtype = np.uint8 if bits == 8 else np.uint16
    top = (1 << bits) - 1
    if full_range:
        y = gray if bits == 8 else (gray.astype(np.uint32) * top + 127) // 255
    else:  # limited range: 16..235 scaled to the bit depth
        scale = 1 << (bits - 8)
        y = (16 * scale) + (gray.astype(np.uint32) * 219 * scale + 127) // 255
    for i, plane in enumerate(frame.planes):
        itemsize = np.dtype(dtype).itemsize
        view = np.frombuffer(plane, dtype).reshape(-1, plane.line_size // itemsize)[: plane.height, : plane.width]
        if i == 0:
            view[...] = y
        else:
            view[...] = 1 << (bits - 1)
    return frame

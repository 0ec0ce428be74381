"""Audio passthrough from the input file into a video output.

Packets are copied as they are (remux, timestamps rebased by the muxer) when the output
container accepts the codec; otherwise the audio is transcoded to a codec it does accept
(Opus for WebM/Matroska, AAC for MOV/MP4) rather than dropped. Audio is interleaved with
video: ``mux_until(t)`` muxes the audio up to video time ``t`` as frames are written,
``finish()`` the rest at close, and ``release()`` closes the input. A corrupt packet of a
transcoded track is skipped and counted, as the file source does with video packets; the
count is logged once, at ``release()``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction

import av

from ..errors import OutputError

__all__ = ["AudioPassthrough"]

log = logging.getLogger(__name__)

# encoder used when the output container cannot hold the input's audio codec
_FALLBACK = {"webm": "libopus", "matroska": "libopus", "mov": "aac", "mp4": "aac"}


class AudioPassthrough:
    """Copies (or transcodes) the first audio stream of ``source`` into ``container``.

    Create it after the video stream was added and before the first packet is muxed."""

    def __init__(self, source: str, container: av.container.OutputContainer) -> None:
        self._out = container
        try:
            self._in = av.open(source)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot open {source} to copy its audio: {exc}") from exc
        if not self._in.streams.audio:
            self._in.close()
            raise LookupError("no audio")
        self._ist = self._in.streams.audio[0]
        name = self._ist.codec_context.name
        fmt_names = container.format.name.split(",")
        self.transcoded = name not in container.supported_codecs
        try:
            if not self.transcoded:
                self._ost = container.add_stream_from_template(self._ist)
            else:
                fallback = next((_FALLBACK[f] for f in fmt_names if f in _FALLBACK), "aac")
                rate = 48000 if fallback == "libopus" else (self._ist.codec_context.sample_rate or 48000)
                self._ost = container.add_stream(fallback, rate=rate)
                layout = self._ist.codec_context.layout.name
                self._ost.layout = layout if layout in ("mono", "stereo") else "stereo"
                self._resampler = av.AudioResampler(
                    format=self._ost.format.name, layout=self._ost.layout.name, rate=rate
                )
                log.info("audio %s cannot go into %s: transcoding it to %s", name, fmt_names[0], fallback)
        except (av.FFmpegError, ValueError) as exc:
            self._in.close()
            raise OutputError(f"cannot set up audio for {container.name}: {exc}") from exc
        self.codec = self._ost.codec_context.name
        self._no_negative = any(f in ("matroska", "webm") for f in fmt_names)
        self._packets: Iterator[av.Packet] = self._in.demux(self._ist)
        self._pending: av.Packet | None = None
        self._done = False
        self._released = False
        #: corrupt input packets skipped while transcoding
        self.skipped = 0

    @classmethod
    def maybe(cls, source: str | None, container: av.container.OutputContainer) -> AudioPassthrough | None:
        """The passthrough, or None when ``source`` is None or has no audio stream."""
        if not source:
            return None
        try:
            return cls(source, container)
        except LookupError:
            return None

    def _next(self) -> av.Packet | None:
        if self._pending is None and not self._done:
            for pkt in self._packets:
                if pkt.size:
                    self._pending = pkt
                    break
            else:
                self._done = True
        return self._pending

    def _emit(self, pkt: av.Packet | None) -> None:
        if not self.transcoded:
            assert pkt is not None
            if self._no_negative and pkt.pts is not None and pkt.pts < 0:
                # Matroska cannot store negative times: ffmpeg would shift every stream, video
                # included, to make them fit. Drop the encoder-priming packet(s) instead.
                log.debug("dropped an audio packet at negative pts %s", pkt.pts)
                return
            pkt.stream = self._ost
            self._out.mux(pkt)
            return
        try:
            frames = self._ist.codec_context.decode(pkt) if pkt is not None else [None]
        except av.FFmpegError:  # decoders report corrupt data with several error codes
            self.skipped += 1  # a corrupt packet: its few ms of sound are missing, the rest plays
            return
        for frame in frames:
            for rf in self._resampler.resample(frame):
                self._out.mux(self._ost.encode(rf))
        if pkt is None:
            self._out.mux(self._ost.encode(None))

    def mux_until(self, t: Fraction | None) -> None:
        """Mux audio packets that start before video time ``t``; everything when ``t`` is None."""
        try:
            while (pkt := self._next()) is not None:
                if t is not None and pkt.pts is not None and pkt.pts * self._ist.time_base > t:
                    return
                self._pending = None
                self._emit(pkt)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot copy audio into {self._out.name}: {exc}") from exc

    def finish(self, until: Fraction | None) -> None:
        """Mux the remaining audio (up to ``until`` if given) and flush an encoder."""
        self.mux_until(until)
        try:
            if self.transcoded:
                self._emit(None)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot copy audio into {self._out.name}: {exc}") from exc

    def release(self) -> None:
        """Close the input (idempotent) and report skipped packets."""
        if self._released:
            return
        self._released = True
        self._in.close()
        if self.skipped:
            log.warning(
                "%d corrupt audio packet(s) of %s were skipped; the audio has gaps there",
                self.skipped,
                self._in.name,
            )

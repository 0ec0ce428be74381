"""Join a video's segments by stream copy and mux the input's audio.

Every segment keeps the input's absolute pts and starts with a keyframe, and all segments
were encoded with the same settings, so concatenating their packets in chunk order is the
whole video: nothing is decoded, re-encoded or re-timed. The joined file is written to a
temporary name beside the output and renamed only when complete.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import av

from ..errors import OutputError
from ..sinks.audio import AudioPassthrough

__all__ = ["join_segments", "partial_name"]

log = logging.getLogger(__name__)


def partial_name(output: Path) -> Path:
    """Where the joined file is written until it is complete."""
    return output.with_name(f".{output.stem}.partial{output.suffix}")


def join_segments(segments: list[str], output: str, *, audio_from: str | None) -> int:
    """Write ``segments`` (in order) and the audio of ``audio_from`` into ``output``;
    returns the number of video packets written."""
    if not segments:
        raise OutputError(f"{output}: nothing to join")
    target = Path(output)
    tmp = partial_name(target)
    options = {}
    if target.suffix.lower() in (".mov", ".mp4"):
        with av.open(segments[0]) as first:
            tb = first.streams.video[0].time_base
        options = {"video_track_timescale": str(tb.denominator)}  # keep the segments' time scale
    written = 0
    try:
        with av.open(str(tmp), "w", options=options) as out:
            with av.open(segments[0]) as first:
                ost = out.add_stream_from_template(first.streams.video[0])
            audio = AudioPassthrough.maybe(audio_from, out)
            for segment in segments:
                with av.open(segment) as seg:
                    stream = seg.streams.video[0]
                    for packet in seg.demux(stream):
                        if not packet.size:
                            continue
                        if audio is not None and packet.pts is not None:
                            audio.mux_until(packet.pts * packet.time_base)
                        packet.stream = ost
                        out.mux(packet)
                        written += 1
            if audio is not None:
                audio.finish(None)
    except (av.FFmpegError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{output}: cannot join the segments ({exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)
    log.info("%s: joined %d segments (%d frames)", output, len(segments), written)
    return written

"""How much of an unfinished output a player can show.

Used on outputs that could not be finalized (full disk, encoder error, a writer that
was killed): what plays is kept as ``NAME.partial.EXT``, what does not is removed.
"""

from __future__ import annotations

from pathlib import Path

import av

__all__ = ["playable_frames", "drop_truncated_pngs"]

_PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every complete PNG file


def _video_frames(path: Path) -> int:
    """Video packets that can be read, in file order, until a truncated tail; 0 when the
    first one does not decode. Only the first is decoded: a large partial is counted in
    the time it takes to read its index and packets, not to decode them."""
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if count == 0:
                    packet.decode()  # raises when the data is not a frame
                count += 1
    except (av.FFmpegError, OSError, EOFError, IndexError):
        pass  # a truncated tail: what was read before it plays
    return count


def _complete_png(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(-len(_PNG_END), 2)
            return fh.read() == _PNG_END
    except OSError:
        return False


def drop_truncated_pngs(folder: Path) -> int:
    """Remove PNGs of ``folder`` that were cut short; return how many complete ones remain."""
    count = 0
    for png in folder.glob("*.png"):
        if _complete_png(png):
            count += 1
        else:
            png.unlink(missing_ok=True)
    return count


def playable_frames(path: Path) -> int:
    """Frames of the video file (or complete PNGs of the folder) at ``path``."""
    if path.is_dir():
        return sum(1 for png in path.glob("*.png") if _complete_png(png))
    return _video_frames(path)

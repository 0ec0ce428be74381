"""glibc malloc settings that keep a long video run's memory flat.

Every batch allocates and frees buffers of 3-30 MB (frames, alpha, RGBA for the encoder)
on four threads. With glibc's defaults the first free of such a buffer raises the mmap
threshold to its size, later buffers then come from per-thread arenas, and those arenas
fragment: peak RSS kept creeping up with the length of the video (60 s clip 13 % above a
10 s clip, 720p to VP9). Two arenas and a fixed 4 MiB mmap threshold make it flat
(60 s / 10 s = 1.00) at a small cost; a lower threshold (1 MiB) flattened it too but
page-faulted every frame buffer and cost ~25 % of the throughput. See scripts/bench.py.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator(*, arenas: int = 2, mmap_threshold: int = 4 << 20) -> bool:
    """Apply the settings on glibc (Linux); a no-op elsewhere or when the user set
    ``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_`` in the environment. Call it once,
    before the pipeline's threads start. Returns True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    if "MALLOC_ARENA_MAX" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    ok = bool(mallopt(_M_ARENA_MAX, arenas)) and bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    log.debug("malloc: %d arenas, mmap threshold %d bytes: %s", arenas, mmap_threshold, ok)
    return ok

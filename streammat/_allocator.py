"""glibc malloc settings that keep a long video run's memory flat.

Every batch allocates and frees buffers of 3-30 MB (frames, alpha, RGBA for the encoder)
on four threads. With glibc's defaults the first free of such a buffer raises the mmap
threshold to its size, later buffers then come from per-thread arenas, and those arenas
fragment: peak RSS kept creeping up with the length of the video (60 s clip 13 % above a
10 s clip, 720p to VP9). Two arenas and a fixed 4 MiB mmap threshold make it flat
(60 s / 10 s = 1.00) at a small cost; a lower threshold (1 MiB) flattened it too but
page-faulted every frame buffer and cost ~25 % of the throughput. See scripts/bench.py.

A fixed mmap threshold also freezes the trim threshold at 128 KiB: each freed frame buffer
(a 640x480 RGBA is 1.2 MB) then gives the top of its heap back to the kernel, and the next
one page-faults it in again, zeroed. Keeping up to 16 MiB of free heap cut a served camera
from 19-20 to 17 ms of CPU per frame here.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator(*, arenas: int = 2, mmap_threshold: int = 4 << 20, trim_threshold: int = 16 << 20) -> bool:
    """Apply the settings on glibc (Linux); a no-op elsewhere or when the user set
    ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``. Call it once,
    before the pipeline's threads start. Returns True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    ok = all(
        mallopt(option, value)
        for option, value in (
            (_M_ARENA_MAX, arenas),
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
        )
    )
    log.debug(
        "malloc: %d arenas, mmap threshold %d, trim threshold %d bytes: %s", arenas, mmap_threshold, trim_threshold, ok
    )
    return ok

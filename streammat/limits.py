"""Limits that protect a long-running process from hostile or broken input.

Kept in a module of its own, free of heavy imports, so the ZeroMQ protocol, the settings
and the sources all read the same numbers.
"""

from __future__ import annotations

__all__ = ["MAX_PIXELS"]

#: The largest frame any input may deliver, in pixels (8K UHD, 7680x4320). A few kilobytes
#: of header can declare a frame whose decoding needs gigabytes (a 752 KB H.264 file of
#: 16000x16000 drove a run past 18 GB), so sources and receivers refuse larger ones first.
MAX_PIXELS = 7680 * 4320

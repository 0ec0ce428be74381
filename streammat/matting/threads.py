"""How many threads each stage gets, so decode, matting and encode don't fight over cores.

Decode, matting and encode run at once on their own Python threads, and each has a native
pool of its own (FFmpeg codec threads, onnxruntime's intra-op pool, torch's and OpenCV's)
that by default sizes itself to every core and spin-waits. ``plan_threads`` gives the
model half the cores (on 2 cores one intra-op thread ran the model as fast as two, and the
pipeline to a null sink went from 92-104 to 112 frames/s), the small resizes one torch and
one OpenCV thread, the decoder two and the encoder every core (its threads only run while
frames wait). ``create_session`` also turns onnxruntime's spinning off (40 -> 64 frames/s).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

__all__ = ["ThreadPlan", "plan_threads"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThreadPlan:
    """Thread counts per stage (see the module docstring for the reasoning)."""

    cores: int
    onnx_intra_op: int
    torch_threads: int
    opencv_threads: int
    decode_threads: int
    encode_threads: int

    def apply(self) -> None:
        """Set the process-wide torch and OpenCV pool sizes (call once, at start-up).

        torch is not imported for this (2 s): when it is not loaded yet, its OpenMP pool
        takes the size from ``OMP_NUM_THREADS`` when a torch stage first imports it."""
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(self.torch_threads)
        else:
            os.environ["OMP_NUM_THREADS"] = str(self.torch_threads)
        try:
            import cv2

            cv2.setNumThreads(self.opencv_threads)
        except ImportError:  # pragma: no cover - opencv is a dependency
            pass
        log.debug("threads: %s", self)


def plan_threads(cores: int | None = None) -> ThreadPlan:
    """The thread plan for ``cores`` cores (default: ``os.cpu_count()``)."""
    c = max(1, int(cores if cores is not None else (os.cpu_count() or 1)))
    small = c < 8
    return ThreadPlan(
        cores=c,
        onnx_intra_op=max(1, c // 2),
        torch_threads=1 if small else 2,
        opencv_threads=1 if small else 2,
        decode_threads=1 if c == 1 else max(2, c // 4),
        encode_threads=c,
    )

"""How many threads each stage gets, so decode, matting and encode don't fight over cores.

The pipeline runs decode, matting and encode at the same time on their own Python threads
(``pipeline.py``). Each of them also has a native thread pool of its own: FFmpeg's codec
threads (decode and encode), onnxruntime's intra-op pool, torch's OpenMP pool (pre/post
processing) and OpenCV's pool (mask resize). Left at their defaults, every pool sizes
itself to *all* cores and onnxruntime's and OpenMP's workers spin-wait between runs,
so on a small machine they burn the cycles the encoder needs.

``plan_threads(cores)`` returns a ``ThreadPlan``:

- ``onnx_intra_op``: half the cores (1 on 2 cores). Measured here (2 cores, selfie at
  batch 8): the model runs as fast on 1 intra-op thread as on 2 (~180-200 frames/s
  either way), and the pipeline to a NullSink got faster with 1 (112 vs 92-104 frames/s):
  the second core goes to decode/encode. Idle ORT workers must sleep, not spin:
  ``create_session`` turns ``session.intra_op.allow_spinning`` off (2 cores, pipeline to
  a NullSink: 40 → 64 frames/s under load);
- ``torch_threads`` / ``opencv_threads``: 1 (2 from 8 cores): the resizes are small,
  memory-bound, and run on the matting thread between ONNX runs;
- ``decode_threads``: FFmpeg threads for the decoder: 2 (a quarter of the cores on large
  machines); on 2 cores 2 decoder threads measured a little faster than 1 in the
  pipeline (noisy: 62-65 vs 51-55 frames/s to a NullSink);
- ``encode_threads``: the encoders (ProRes, FFV1, VP9) are the slowest stage on a
  CPU-only machine, so they may use every core: their threads only run while frames wait.

The CLI applies the plan once at start-up (``plan.apply()`` for torch/OpenCV, and
``create_session(threads=plan.onnx_intra_op)`` for onnxruntime, ``FileSource(threads=
plan.decode_threads)`` and ``create_sink(threads=plan.encode_threads)`` for the codecs).
"""

from __future__ import annotations

import logging
import os
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
        """Set the process-wide torch and OpenCV pool sizes (call once, at start-up)."""
        import torch

        torch.set_num_threads(self.torch_threads)
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

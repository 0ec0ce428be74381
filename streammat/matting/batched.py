"""The batched fast path: rembg's per-image math, vectorized over a whole ``Batch``.

Per batch (``BatchedMatter.__call__``), in three steps the pipeline overlaps:

1. ``prepare``: resize the uint8 batch once to the model size and normalise per family
   (``families.py``) in float32 straight into the model's layout;
2. ``infer``: **one** graph run when the graph's batch dimension is dynamic (a loop over
   chunks of the fixed size otherwise; the runner pads the last chunk);
3. ``finish``: sigmoid / per-image min–max / truncation to uint8 as rembg does, then one
   resize to the frame size straight into the ``(N,H,W)`` alpha. No PIL, no float64.

On the CPU the steps work on the batch's host arrays (numpy, OpenCV; no torch import),
whichever runner runs the graph; on CUDA the batch stays on the device from upload to
alpha (``gpu.py``). ``model_io.py`` holds both versions of the math, side by side.

The result differs from ``rembg.remove(frame, session=s, only_mask=True)`` by the resize
kernels only; ``tests/test_batched.py`` states the bounds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import ModelError
from ..frames import Batch, MattedBatch
from .families import Family, family_for, session_name
from .model_io import postprocess, postprocess_array, preprocess, preprocess_array, resize_masks, resize_masks_array
from .runners import build_runner, probe_frame

__all__ = ["BatchedMatter", "preprocess", "postprocess", "preprocess_array", "postprocess_array"]

log = logging.getLogger(__name__)


class BatchedMatter:
    """Matter for the known model families: one vectorized pass per ``Batch``.

    ``device`` (``auto|cpu|cuda|tensorrt``) and ``backend`` (``auto|ort|torch``) pick the
    runner (``runners.build_runner``: onnxruntime on the CPU, onnxruntime's CUDA provider,
    or the graph as a torch module); on CUDA the batch stays on the device from upload to
    alpha (``gpu.py``). ``cuda_graphs`` replays the torch backend's CUDA graphs.
    ``family`` overrides the lookup (``families.family_for``). Raises ``ModelError`` for
    sessions it does not know (use ``create_matter`` to fall back to the exact path).
    """

    def __init__(
        self,
        session: Any,
        *,
        device: str = "cpu",
        backend: str = "auto",
        family: Family | None = None,
        cuda_graphs: bool = False,
    ) -> None:
        self.session = session
        fam = family or family_for(session)
        if fam is None:
            raise ModelError(f"model {session_name(session)!r} has no batched implementation")
        self.family = fam
        self._runner, self.choice = build_runner(
            session,
            device=device,
            backend=backend,
            layout=fam.layout,
            # a model input for the torch backend's one-off half-precision check (CUDA only)
            probe=lambda: preprocess(probe_frame(*fam.size), fam),
            judge=lambda raw: postprocess(raw, fam),
            cuda_graphs=cuda_graphs,
            name=fam.name,
        )
        self._upload: Any = None
        if self.choice.on_cuda:
            from .gpu import PinnedUploader

            self._upload = PinnedUploader(self.device)

    @property
    def backend(self) -> str:
        """``"cuda"`` when the batch stays on the GPU, else ``"cpu"``."""
        return "cuda" if self.choice.on_cuda else "cpu"

    @property
    def device(self) -> Any:
        """The torch device the batch is matted on (imports torch)."""
        import torch

        return torch.device(self.choice.device)

    # The three steps of ``__call__``. The pipeline runs them on three threads, so the
    # resizes of one batch overlap the model run of the next (``pipeline.StagedMatter``).
    def prepare(self, batch: Batch) -> Any:
        """The model input of the batch's frames: a host array, or a CUDA tensor."""
        with _model_errors(self.family.name):
            if self._upload is None:
                return preprocess_array(batch.images_array, self.family)
            return preprocess(self._upload(batch.images), self.family)

    def infer(self, prepared: Any) -> Any:
        """The raw model output for ``prepare``'s input."""
        with _model_errors(self.family.name):
            return self._runner(prepared)

    def finish(self, batch: Batch, raw: Any) -> MattedBatch:
        """Masks at frame size from the raw model output."""
        with _model_errors(self.family.name):
            if self._upload is None:
                alpha = np.empty((len(batch), batch.height, batch.width), np.uint8)
                resize_masks_array(postprocess_array(raw, self.family), alpha)
            else:
                # on the batch's device: a batch that came to the GPU keeps its alpha there
                alpha = resize_masks(postprocess(raw, self.family), batch.height, batch.width).to(batch.images.device)
        return MattedBatch(batch, alpha)

    def __call__(self, batch: Batch) -> MattedBatch:
        return self.finish(batch, self.infer(self.prepare(batch)))


@contextlib.contextmanager
def _model_errors(name: str) -> Iterator[None]:
    """onnxruntime and torch errors at run time (shapes, memory) as one-line ModelErrors."""
    try:
        yield
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{name}: inference failed: {exc}".splitlines()[0]) from exc

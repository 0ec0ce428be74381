"""What every matting stage is: a callable from a ``Batch`` to a ``MattedBatch``.

A matter may also offer its work as three steps (``StagedMatter``); the pipeline then
runs them on three threads so the pre- and post-processing of neighbouring batches
overlap the model run."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..frames import Batch, MattedBatch


@runtime_checkable
class Matter(Protocol):
    def __call__(self, batch: Batch) -> MattedBatch:
        """Compute the alpha matte of every frame in the batch (padding included or not)."""
        ...


@runtime_checkable
class StagedMatter(Matter, Protocol):
    """``matter(batch) == matter.finish(batch, matter.infer(matter.prepare(batch)))``.

    A staged matter may also offer ``reserve(timeout) -> bool`` when its ``infer`` only
    queues the work (a stream of a shared model): room for one more batch, which the
    pipeline waits for before it takes the next batch."""

    def prepare(self, batch: Batch) -> Any:
        """The model input for ``batch`` (resize, normalize)."""
        ...

    def infer(self, prepared: Any) -> Any:
        """The model run."""
        ...

    def finish(self, batch: Batch, raw: Any) -> MattedBatch:
        """The masks at frame size from the model output."""
        ...


def model_choice(matter: Any) -> Any:
    """The runner choice (``providers.RunnerChoice``: device, runner, reason) of the model of
    a matting stage: that of the innermost matter that states one (wrappers name theirs
    ``inner``), else None (a model on the CPU). Reads no tensors, so it imports no torch."""
    while matter is not None:
        choice = getattr(matter, "choice", None)
        if choice is not None:
            return choice
        matter = getattr(matter, "inner", None)
    return None

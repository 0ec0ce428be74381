"""The Ray side: a model actor per model copy, and plain functions that Ray runs as tasks.

Plain Ray actors rather than Ray Data's ``map_batches``: a video's chunks must come back
in order with their exact pts, and a stateful matter (temporal smoothing) must see one
chunk's batches in order on one actor; both are direct with actors and tasks, with
Ray's own retry rules (``max_retries`` for tasks, ``max_restarts`` and
``max_task_retries`` for actors) and without Ray Data's larger dependency surface.

The actor loads the model once (``create_session``); each chunk gets its own matter from
the composition root (``build_matter`` with that session), kept under the chunk's key
until the chunk is done, so chunks that share an actor never share temporal state.
The chunk task runs the decode → matte → encode ``Pipeline`` with a ``ChunkSource``, a
matter that calls the actor, and the segment sink from ``build_sinks``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import ProcessConfig
from ..errors import OutputError
from ..frames import Batch, Frame, MattedBatch
from .plan import Chunk

__all__ = ["MatterActor", "ActorMatter", "encode_chunk", "SEGMENT_SUFFIX"]

log = logging.getLogger(__name__)

#: segment container per output format: intra-coded (ProRes) or keyframe-started (FFV1)
SEGMENT_SUFFIX = {"ffv1": ".mkv", "prores": ".mov"}


class StateLost(RuntimeError):
    """A restarted actor no longer holds a chunk's temporal state: the chunk starts over."""


class MatterActor:
    """Holds one model session; mattes the batches of many chunks, each with its own matter."""

    def __init__(self, settings: ProcessConfig) -> None:
        from ..matting.sessions import create_session
        from ..matting.threads import plan_threads

        self._settings = settings
        self._plan = plan_threads()
        self._plan.apply()
        threads = settings.threads or self._plan.onnx_intra_op
        self._session = create_session(settings.model, device=settings.device, threads=threads)
        self._matters: dict[str, Any] = {}

    def matte(self, key: str, first: bool, images: np.ndarray, pts: tuple, time_base: Fraction, indices: tuple) -> Any:
        from ..compose import build_matter

        matter = self._matters.get(key)
        if matter is None:
            if not first:
                raise StateLost(f"chunk {key}: the model actor was restarted mid-chunk")
            matter = self._matters[key] = build_matter(self._settings, plan=self._plan, session=self._session)
        batch = Batch(torch.from_numpy(images.copy()), pts, time_base, indices)  # Ray's arrays are read-only
        return matter(batch).alpha.numpy()

    def release(self, key: str) -> None:
        self._matters.pop(key, None)

    def pid(self) -> int:
        """The actor's process id (fault-injection tests end it to see it replaced)."""
        import os

        return os.getpid()


class ActorMatter:
    """A matter whose model runs on a ``MatterActor``; ``warm`` feeds frames that are not written."""

    def __init__(self, actor: Any, key: str) -> None:
        self._actor = actor
        self._key = key
        self._first = True

    def _call(self, batch: Batch) -> np.ndarray:
        import ray

        images = np.ascontiguousarray(batch.images.numpy())
        ref = self._actor.matte.remote(self._key, self._first, images, batch.pts, batch.time_base, batch.indices)
        self._first = False
        return ray.get(ref)

    def warm(self, frames: list[Frame]) -> None:
        images = torch.stack([torch.as_tensor(f.image) for f in frames])
        self._call(Batch(images, tuple(f.pts for f in frames), frames[0].time_base, tuple(f.index for f in frames)))

    def __call__(self, batch: Batch) -> MattedBatch:
        return MattedBatch(batch, torch.from_numpy(self._call(batch).copy()))

    def release(self) -> None:
        self._actor.release.remote(self._key)


def encode_chunk(
    path: str,
    chunk: Chunk,
    settings: ProcessConfig,
    segment: str,
    actor: Any,
    hook: Callable[[str, int, Any], None] | None = None,
) -> str:
    """Decode ``chunk`` of ``path``, matte it on ``actor``, encode it into ``segment``."""
    from ..compose import build_sinks
    from ..matting.threads import plan_threads
    from ..pipeline import Pipeline
    from .chunk_source import ChunkSource

    if hook is not None:
        hook(path, chunk.index, actor)
    plan = plan_threads()
    matter = ActorMatter(actor, f"{Path(segment).name}:{uuid.uuid4().hex}")
    source = ChunkSource(path, chunk, warm=matter.warm, batch_size=settings.batch_size)
    sink_settings = settings.model_copy(update={"output": segment, "overwrite": True, "source": path})
    sinks = build_sinks(sink_settings, plan=plan)
    try:
        source.open()
        result = Pipeline(source, matter, sinks, batch_size=settings.batch_size, queue_depth=settings.queue_depth).run()
    finally:
        source.close()
        matter.release()
    if not result.complete or result.frames_out != chunk.frames:
        raise OutputError(f"{path}: chunk {chunk.index} wrote {result.frames_out} of {chunk.frames} frames")
    return segment

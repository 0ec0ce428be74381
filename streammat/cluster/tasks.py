"""The Ray side: model actors, and the chunk work they or plain Ray tasks run.

Plain Ray actors rather than Ray Data's ``map_batches``: a video's chunks must come back
in order with their exact pts, and a stateful matter (temporal smoothing) must see one
chunk's batches in order; both are direct with actors and tasks, with Ray's own retry
rules (``max_retries`` for tasks, ``max_restarts`` and ``max_task_retries`` for actors)
and without Ray Data's larger dependency surface.

A ``MatterActor`` loads the model once, through the composition root (``build_model``),
and gives every chunk its own matting stage on that session (``build_matter``), so chunks
that share an actor never share temporal state. It also plans files and joins their segments,
in a thread of its own. A chunk runs one of two ways:

- fused (``MatterActor.run_chunk``, the default where the cluster has no GPU): the actor
  decodes, mattes and encodes the chunk itself. Frames never leave the process, and no
  task worker has to start and import the stack: on a 2-core machine the split way spent
  most of its fixed cost starting those workers and moving every batch through Ray's
  object store, while the model, being on the CPU, gained nothing from sitting apart;
- split (``encode_chunk`` as a CPU task, where the actors hold GPUs): the task decodes
  and encodes, and sends each batch to the GPU actor (``ActorMatter``), so the GPU is
  never idle waiting for a decoder.

Both run the same decode → matte → encode ``Pipeline``: a ``ChunkSource``, the matter,
and the segment sink from ``build_sinks``.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ProcessConfig
from ..errors import OutputError
from .plan import Chunk, VideoPlan, plan_video

__all__ = ["MatterActor", "ActorMatter", "encode_chunk", "run_chunk", "SEGMENT_SUFFIX", "ChunkHook", "FILES_GROUP"]

log = logging.getLogger(__name__)

#: segment container per output format: intra-coded (ProRes) or keyframe-started (FFV1)
SEGMENT_SUFFIX = {"ffv1": ".mkv", "prores": ".mov"}

#: the actor's thread for whole-file work, planning and joining: a file's join starts as
#: soon as its last chunk is written, beside the chunk the actor is running rather than
#: behind every chunk queued on it, and no task worker has to start for either (on 2 cores
#: the plan tasks' new worker processes competed with the actors' start-up, and joins
#: waited 4-10 s for a worker once the idle ones had been ended)
FILES_GROUP = "files"

#: ``hook(path, chunk_index, actor)``, run as a chunk starts, where it runs (fault injection in tests)
ChunkHook = Callable[[str, int, Any], None]


class StateLost(RuntimeError):
    """A restarted actor no longer holds a chunk's temporal state: the chunk starts over."""


def _batches(frames: list[Any]) -> list[Any]:
    """Warm-up frames as batches, stacked by the pipeline's own ``Batcher`` (so a CPU
    actor stacks them as the pipeline does, without torch where the pipeline needs none)."""
    from ..batching import Batcher

    batcher = Batcher(len(frames))
    batches = [b for frame in frames for b in batcher.add(frame)]
    rest = batcher.flush()
    return batches if rest is None else [*batches, rest]


class MatterActor:
    """Holds one model; runs whole chunks (fused) or mattes the batches of many chunks (split)."""

    def __init__(self, settings: ProcessConfig, cores: int | None = None) -> None:
        from ..compose import build_model
        from ..matting.threads import plan_threads

        self._settings = settings
        self._plan = plan_threads(cores)
        self._plan.apply()
        self._session, _ = build_model(settings, plan=self._plan)
        self._matters: dict[str, Any] = {}

    def _new_matter(self) -> Any:
        """The chunk's own matting stage on the actor's session, as every command builds it."""
        from ..compose import build_matter

        return build_matter(self._settings, plan=self._plan, session=self._session)

    def run_chunk(self, path: str, chunk: Chunk, segment: str, hook: ChunkHook | None = None) -> str:
        """Decode, matte and encode ``chunk`` of ``path`` into ``segment``, all in this process."""
        if hook is not None:
            import ray

            hook(path, chunk.index, ray.get_runtime_context().current_actor)
        matter = self._new_matter()

        def warm(frames: list[Any]) -> None:  # the warm-up's mattes are not written
            for batch in _batches(frames):
                matter(batch)

        return run_chunk(path, chunk, self._settings, segment, matter, warm=warm, plan=self._plan)

    def matte(self, key: str, first: bool, images: np.ndarray, pts: tuple, time_base: Fraction, indices: tuple) -> Any:
        """The alpha of one batch of the chunk ``key`` (split: the frames came from a task)."""
        from ..frames import Batch

        matter = self._matters.get(key)
        if matter is None:
            if not first:
                raise StateLost(f"chunk {key}: the model actor was restarted mid-chunk")
            matter = self._matters[key] = self._new_matter()
        batch = Batch(images.copy(), pts, time_base, indices)  # Ray's arrays are read-only
        return matter(batch).alpha_array

    def release(self, key: str) -> None:
        self._matters.pop(key, None)

    def plan(self, path: str, chunk_frames: int, warmup: int, every: int) -> VideoPlan:
        """Where the video at ``path`` is cut (see ``plan.plan_video``)."""
        return plan_video(path, chunk_frames=chunk_frames, warmup=warmup, every=every)

    def join(self, output: str, source: str, folder: str, *segments: str) -> int:
        """Join ``segments`` into ``output`` with the audio of ``source``; frames written."""
        from .join import join_segments

        frames = join_segments(list(segments), output, audio_from=source)
        shutil.rmtree(folder, ignore_errors=True)
        return frames

    def pid(self) -> int:
        """The actor's process id (fault-injection tests end it to see it replaced)."""
        return os.getpid()


class ActorMatter:
    """A matter whose model runs on a ``MatterActor``; ``warm`` feeds frames that are not written."""

    def __init__(self, actor: Any, key: str) -> None:
        self._actor = actor
        self._key = key
        self._first = True

    def _call(self, batch: Any) -> np.ndarray:
        import ray

        images = np.ascontiguousarray(batch.images_array)
        ref = self._actor.matte.remote(self._key, self._first, images, batch.pts, batch.time_base, batch.indices)
        self._first = False
        return ray.get(ref)

    def warm(self, frames: list[Any]) -> None:
        for batch in _batches(frames):
            self._call(batch)

    def __call__(self, batch: Any) -> Any:
        import torch

        from ..frames import MattedBatch

        return MattedBatch(batch, torch.from_numpy(self._call(batch).copy()))

    def release(self) -> None:
        self._actor.release.remote(self._key)


def run_chunk(
    path: str,
    chunk: Chunk,
    settings: ProcessConfig,
    segment: str,
    matter: Callable[[Any], Any],
    *,
    warm: Callable[[list[Any]], None],
    plan: Any,
) -> str:
    """Decode ``chunk`` of ``path``, matte it with ``matter`` (``warm`` gets the warm-up
    frames, which are not written), encode it into ``segment``."""
    from ..compose import build_sinks
    from ..pipeline import Pipeline
    from .chunk_source import ChunkSource

    source = ChunkSource(path, chunk, warm=warm, batch_size=settings.batch_size)
    sink_settings = settings.model_copy(update={"output": segment, "overwrite": True, "source": path})
    sinks = build_sinks(sink_settings, plan=plan)
    try:
        source.open()
        result = Pipeline(source, matter, sinks, batch_size=settings.batch_size, queue_depth=settings.queue_depth).run()
    finally:
        source.close()
    if not result.complete or result.frames_out != chunk.frames:
        raise OutputError(f"{path}: chunk {chunk.index} wrote {result.frames_out} of {chunk.frames} frames")
    return segment


def encode_chunk(
    path: str,
    chunk: Chunk,
    settings: ProcessConfig,
    segment: str,
    actor: Any,
    hook: ChunkHook | None = None,
) -> str:
    """The split way, as a CPU task: decode and encode ``chunk`` here, matte it on ``actor``."""
    from ..matting.threads import plan_threads

    if hook is not None:
        hook(path, chunk.index, actor)
    matter = ActorMatter(actor, f"{Path(segment).name}:{uuid.uuid4().hex}")
    try:
        return run_chunk(path, chunk, settings, segment, matter, warm=matter.warm, plan=plan_threads())
    finally:
        matter.release()

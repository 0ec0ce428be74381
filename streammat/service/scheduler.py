"""One model, many streams: a shared session and a batching scheduler in front of it.

Pipelines that use the same model on the same device share one ``SharedModel``: one
session (one copy of the weights, one thread pool) and one ``ModelScheduler`` thread that
gathers the prepared inputs of several streams into one model call, as NVIDIA
DeepStream's stream muxer and Triton's dynamic batcher do:

- a call takes up to ``max_batch`` frames; it starts as soon as every attached stream
  has a request waiting, or ``max_wait`` seconds after the oldest waiting request
  arrived, whichever comes first — so a stalled stream (which simply sends nothing)
  delays the others by ``max_wait`` at most, never by its own stall;
- the inputs are concatenated along the batch dimension, run once, and the output is
  split back: each stream gets exactly the rows of its own frames;
- each stream submits from its own pipeline thread and waits for its answer, so its
  frames keep their order; pre- and post-processing stay on the stream's own threads;
- ``workers`` threads make the calls, so a second call can run while the first does (the
  session runs concurrent calls safely). One thread capped the model at one core: 6
  streams of a 6 ms model need more, and on a busy machine the scheduler gets one
  thread's share of the cores where separate processes got one each (4 streams: 11 frames/s
  per stream against 24 for separate processes, at load 12). A call waits only for the
  streams that are not in another call already.

``StreamMatter`` is the per-stream face of it: a staged matter whose ``prepare`` and
``finish`` are the shared batched matter's (stateless), and whose ``infer`` goes through
the scheduler. The service wraps it in the stream's own ``TemporalMatter``, so smoothing,
threshold and feather stay per stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ModelScheduler", "StreamMatter", "SharedModel", "BatchStats"]

log = logging.getLogger(__name__)

_IDLE_POLL = 0.5  # seconds the scheduler sleeps between checks when nobody submits


@dataclass
class BatchStats:
    """What the scheduler did: model calls, frames, and how many calls held 1, 2, … frames."""

    calls: int = 0
    frames: int = 0
    streams_per_call: dict[int, int] = field(default_factory=dict)
    fill: dict[int, int] = field(default_factory=dict)  # frames per call -> calls

    @property
    def mean_fill(self) -> float:
        return self.frames / self.calls if self.calls else 0.0


@dataclass
class _Request:
    stream: int
    x: Any  # a prepared model input: a host array, or a CUDA tensor
    future: Future
    at: float


class ModelScheduler:
    """Runs ``run(x)`` (one model call on an ``(N, …)`` input) for requests of many streams.

    ``submit(stream, x)`` blocks until the rows of ``x`` are computed and returns them."""

    def __init__(
        self, run: Any, *, max_batch: int = 8, max_wait: float = 0.004, name: str = "model", workers: int = 1
    ) -> None:
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.name = name
        self.stats = BatchStats()
        self._pending: deque[_Request] = deque()
        self._streams: set[int] = set()
        self._running: set[int] = set()  # streams whose request is in a call now
        self._next_id = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"sm-scheduler-{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    # -- streams ------------------------------------------------------------------
    def attach(self) -> int:
        """A new stream's id; the scheduler waits for attached streams (up to max_wait)."""
        with self._cond:
            self._next_id += 1
            self._streams.add(self._next_id)
            return self._next_id

    def detach(self, stream: int) -> None:
        with self._cond:
            self._streams.discard(stream)
            self._cond.notify_all()

    @property
    def streams(self) -> int:
        with self._cond:
            return len(self._streams)

    @property
    def waiting(self) -> int:
        """Requests queued for the next model call."""
        with self._cond:
            return len(self._pending)

    def submit(self, stream: int, x: Any) -> Any:
        """The model output for the rows of ``x`` (blocks; raises what the model raised)."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise ModelError(f"{self.name}: the shared model was shut down")
            self._pending.append(_Request(stream, x, future, time.monotonic()))
            self._cond.notify_all()
        return future.result()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=5.0)

    # -- the scheduler thread -----------------------------------------------------
    def _ready(self) -> bool:
        """A call is due: enough frames, every attached stream that is not in a call
        waiting, or the oldest request waited ``max_wait``."""
        frames = sum(r.x.shape[0] for r in self._pending)
        if frames >= self.max_batch:
            return True
        waiting = {r.stream for r in self._pending}
        if self._streams - self._running <= waiting:
            return True
        return time.monotonic() - self._pending[0].at >= self.max_wait

    def _take(self) -> list[_Request]:
        """Requests for one call: whole requests, at most ``max_batch`` frames (a single
        larger request goes alone), at most one request per stream, and none of a stream
        that is in another call now, so a stream's frames stay in order across calls."""
        taken: list[_Request] = []
        frames = 0
        seen: set[int] = set(self._running)
        rest: deque[_Request] = deque()
        while self._pending:
            r = self._pending.popleft()
            n = r.x.shape[0]
            if r.stream in seen or (taken and frames + n > self.max_batch):
                rest.append(r)
                continue
            taken.append(r)
            seen.add(r.stream)
            frames += n
        self._pending = rest
        return taken

    def _next(self) -> list[_Request] | None:
        """Wait for the requests of the next call (under the lock); None once closed."""
        while not self._closed:
            if self._pending and self._ready():
                batch = self._take()
                if batch:
                    self._running.update(r.stream for r in batch)
                    return batch
                self._cond.wait(_IDLE_POLL)  # only streams in other calls wait: until one ends
            elif self._pending:
                left = self.max_wait - (time.monotonic() - self._pending[0].at)
                self._cond.wait(max(left, 0.0005))
            else:
                self._cond.wait(_IDLE_POLL)
        for r in self._pending:
            r.future.set_exception(ModelError(f"{self.name}: the shared model was shut down"))
        self._pending.clear()
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._next()
            if batch is None:
                return
            try:
                self._call(batch)
            finally:
                with self._cond:
                    self._running.difference_update(r.stream for r in batch)
                    self._cond.notify_all()

    def _call(self, batch: list[_Request]) -> None:
        try:
            x = batch[0].x if len(batch) == 1 else _concat([r.x for r in batch])
            out = self._run(x)
        except BaseException as exc:  # noqa: BLE001 - every requester gets the error
            for r in batch:
                r.future.set_exception(exc)
            return
        n = x.shape[0]
        with self._cond:
            s = self.stats
            s.calls += 1
            s.frames += n
            s.fill[n] = s.fill.get(n, 0) + 1
            s.streams_per_call[len(batch)] = s.streams_per_call.get(len(batch), 0) + 1
        start = 0
        for r in batch:
            k = r.x.shape[0]
            r.future.set_result(out[start : start + k])
            start += k


def _concat(parts: list[Any]) -> Any:
    """Prepared inputs along the batch dimension: host arrays on the CPU path, device tensors
    on CUDA."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch  # device tensors: torch is loaded already

    return torch.cat(parts)


class StreamMatter:
    """One stream's staged matter on a shared model: its own ``infer`` goes through the
    scheduler; ``prepare`` and ``finish`` are the shared (stateless) batched matter's."""

    def __init__(self, shared: SharedModel) -> None:
        self.shared = shared
        self._base = shared.matter
        self._stream = shared.scheduler.attach()

    def prepare(self, batch: Any) -> Any:
        return self._base.prepare(batch)

    def infer(self, prepared: Any) -> Any:
        return self.shared.scheduler.submit(self._stream, prepared)

    def finish(self, batch: Any, raw: Any) -> Any:
        return self._base.finish(batch, raw)

    def __call__(self, batch: Any) -> Any:
        return self.finish(batch, self.infer(self.prepare(batch)))

    def detach(self) -> None:
        """The stream ended: the scheduler stops waiting for it."""
        self.shared.scheduler.detach(self._stream)


@dataclass
class SharedModel:
    """One loaded model shared by pipelines: session, batched matter and scheduler."""

    key: tuple[Any, ...]
    session: Any
    matter: Any  # BatchedMatter: prepare/infer/finish
    scheduler: ModelScheduler
    provider: str  # the execution provider onnxruntime granted

    @property
    def label(self) -> str:
        model, device = self.key[0], self.key[1]
        return f"{model}@{device}"

    def close(self) -> None:
        self.scheduler.close()

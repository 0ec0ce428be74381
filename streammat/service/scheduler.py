"""One model, many streams: a shared session and a batching scheduler in front of it.

Pipelines that use the same model on the same device share one ``SharedModel``: one
session (one copy of the weights, one thread pool) and one ``ModelScheduler`` thread that
gathers the prepared inputs of several streams into one model call, as NVIDIA
DeepStream's stream muxer and Triton's dynamic batcher do:

- a call takes up to ``max_batch`` frames; it starts as soon as every attached stream
  that has no request in a call already has one waiting, or ``max_wait`` seconds after the
  oldest waiting request arrived, whichever comes first — so a stalled stream (which
  simply sends nothing) delays the others by ``max_wait`` at most, never by its own stall;
- the inputs are concatenated along the batch dimension, run once, and the output is
  split back: each stream gets exactly the rows of its own frames;
- ``request`` answers with a future, which the stream's finishing step takes in the
  order it asked, so the stream's frames keep their order and its temporal state sees
  them in time order however the calls end. A call may hold several requests of one
  stream (in order) and two calls may run one stream's requests at once;
  ``StreamMatter`` bounds how many a stream has out (``IN_FLIGHT``);
- pre- and post-processing stay on the stream's own threads;
- ``workers`` threads make the calls, so a second call can run while the first does (the
  session runs concurrent calls safely). One thread capped the model at one core: 6
  streams of a 6 ms model need more, and on a busy machine the scheduler gets one
  thread's share of the cores where separate processes got one each (4 streams: 11 frames/s
  per stream against 24 for separate processes, at load 12). ``nice`` lowers those
  threads' OS priority (Linux), so a call never preempts a stream's thread that holds the
  interpreter lock; ``pool`` sets it, and ``max_batch``, per device. With ``nice``, one
  more thread at the service's own priority takes the requests that waited
  ``relief_after`` seconds: next to CPU-bound programs the niced threads get a tenth of
  their share, and the streams would crawl.

``StreamMatter`` is the per-stream face of it: a staged matter whose ``prepare`` and
``finish`` are the shared batched matter's (stateless), whose ``infer`` queues the request
and whose ``finish`` waits for its answer. The service wraps it in the stream's own
``TemporalMatter``, so smoothing, threshold and feather stay per stream.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ModelError

__all__ = ["ModelScheduler", "StreamMatter", "SharedModel", "BatchStats", "IN_FLIGHT"]

log = logging.getLogger(__name__)

_IDLE_POLL = 0.5  # seconds the scheduler sleeps between checks when nobody submits
#: requests of one stream waiting for the model or running in it (the service's
#: ``in_flight``). One already overlaps a stream's model call with the post-processing of
#: its previous frame (on the stream's finishing thread); two also overlap its next call
#: with the answer still on its way. With 4 cameras on 2 cores, nothing else running, two
#: gave 29.3-29.4 frames/s per stream against 27.7-28.5 with one, and a p95 latency of
#: 127-136 ms against 88-94: they buy the last frames per second with latency
IN_FLIGHT = 1
#: seconds a request may wait for the niced call threads before the one thread at normal
#: priority takes it (about a frame at 30 frames/s: the stream is about to drop one)
RELIEF_AFTER = 0.030


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

    ``request(stream, x)`` queues the rows of ``x`` and returns a future of their output;
    ``submit(stream, x)`` waits for it."""

    def __init__(
        self,
        run: Any,
        *,
        max_batch: int = 8,
        max_wait: float = 0.004,
        name: str = "model",
        workers: int = 1,
        nice: int = 0,
        relief_after: float = RELIEF_AFTER,
    ) -> None:
        self._run = run
        self.nice = nice
        self.relief_after = relief_after
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.name = name
        self.stats = BatchStats()
        self._pending: deque[_Request] = deque()
        self._streams: set[int] = set()
        self._running: dict[int, int] = {}  # stream -> its requests in a call now
        self._next_id = 0
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._loop, args=(False,), name=f"sm-scheduler-{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        if nice:  # one thread at the service's own priority, for requests the niced ones left waiting
            self._threads.append(
                threading.Thread(target=self._loop, args=(True,), name=f"sm-scheduler-{name}-relief", daemon=True)
            )
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

    def request(self, stream: int, x: Any) -> Future:
        """Queue the rows of ``x`` for a model call: a future of their output (or of the
        error the model raised). A stream's requests are answered in any order; whoever
        asked takes the answers in its own order."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise ModelError(f"{self.name}: the shared model was shut down")
            self._pending.append(_Request(stream, x, future, time.monotonic()))
            self._cond.notify_all()
        return future

    def submit(self, stream: int, x: Any) -> Any:
        """The model output for the rows of ``x`` (blocks; raises what the model raised)."""
        return self.request(stream, x).result()

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
        if self._streams - self._running.keys() <= waiting:
            return True
        return time.monotonic() - self._pending[0].at >= self.max_wait

    def _take(self) -> list[_Request]:
        """Requests for one call, oldest first: whole requests, at most ``max_batch`` frames
        (a single larger request goes alone); every request that waited joins the call
        while it fits, several of one stream included."""
        taken: list[_Request] = []
        frames = 0
        rest: deque[_Request] = deque()
        while self._pending:
            r = self._pending.popleft()
            n = r.x.shape[0]
            if taken and frames + n > self.max_batch:
                rest.append(r)
                continue
            taken.append(r)
            frames += n
        self._pending = rest
        return taken

    def _next(self, relief: bool = False) -> list[_Request] | None:
        """Wait for the requests of the next call (under the lock); None once closed. The
        relief thread takes only requests that waited ``relief_after`` seconds."""
        while not self._closed:
            if relief and self._pending:
                until_relief = self.relief_after - (time.monotonic() - self._pending[0].at)
                if until_relief > 0:
                    self._cond.wait(until_relief)
                    continue
            if self._pending and self._ready():
                batch = self._take()
                for r in batch:
                    self._running[r.stream] = self._running.get(r.stream, 0) + 1
                return batch
            elif self._pending:
                left = self.max_wait - (time.monotonic() - self._pending[0].at)
                self._cond.wait(max(left, 0.0005))
            else:
                self._cond.wait(_IDLE_POLL)
        for r in self._pending:
            r.future.set_exception(ModelError(f"{self.name}: the shared model was shut down"))
        self._pending.clear()
        return None

    def _loop(self, relief: bool) -> None:
        if self.nice and not relief:
            _lower_priority(self.nice, self.name)
        while True:
            with self._cond:
                batch = self._next(relief)
            if batch is None:
                return
            try:
                self._call(batch)
            finally:
                with self._cond:
                    for r in batch:
                        left = self._running.pop(r.stream) - 1
                        if left:
                            self._running[r.stream] = left
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


def _lower_priority(nice: int, name: str) -> None:
    """Add ``nice`` to the calling thread's OS niceness (Linux schedules threads one by one;
    elsewhere this would name a process, so it is skipped). Raising it needs no privilege."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # a sandbox without setpriority: the calls keep their priority
        log.debug("%s: cannot lower the model threads' priority: %s", name, exc)


def _concat(parts: list[Any]) -> Any:
    """Prepared inputs along the batch dimension: host arrays on the CPU path, device tensors
    on CUDA."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch  # device tensors: torch is loaded already

    return torch.cat(parts)


class StreamMatter:
    """One stream's staged matter on a shared model: ``prepare`` and ``finish`` are the
    shared (stateless) batched matter's; ``infer`` queues the request with the scheduler
    and returns its future, and ``finish`` waits for the answer. The pipeline calls
    ``finish`` in the order it called ``infer``, so the stream's frames keep their order.

    At most ``in_flight`` requests of the stream wait for the model or run in it;
    ``reserve`` waits for room for one more, which the pipeline does before it takes its
    next batch, so a live stream sends the newest frame its camera has once the model can
    take it, rather than one that aged while the previous request ran."""

    def __init__(self, shared: SharedModel, *, in_flight: int = IN_FLIGHT) -> None:
        self.shared = shared
        self._base = shared.matter
        self._slots = threading.BoundedSemaphore(in_flight)
        self._reserved = False  # a slot taken by ``reserve`` for the next ``infer``
        self._stream = shared.scheduler.attach()

    def reserve(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for room for one more request; True once there
        is (it is kept for the next ``infer``). Called from the thread that calls ``infer``."""
        if not self._reserved:
            self._reserved = self._slots.acquire(timeout=timeout)
        return self._reserved

    def prepare(self, batch: Any) -> Any:
        return self._base.prepare(batch)

    def infer(self, prepared: Any) -> Future:
        if not self._reserved:
            self._slots.acquire()
        self._reserved = False
        try:
            future = self.shared.scheduler.request(self._stream, prepared)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._answered)
        return future

    def finish(self, batch: Any, raw: Future) -> Any:
        return self._base.finish(batch, raw.result())

    def _answered(self, _future: Future) -> None:
        self._slots.release()

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
    cpu_calls: bool = False  # onnxruntime on the CPU, several calls at once (``pool``)

    @property
    def label(self) -> str:
        model, device = self.key[0], self.key[1]
        return f"{model}@{device}"

    def close(self) -> None:
        self.scheduler.close()

"""Source → batcher → matter → sinks, each stage on its own thread (the matter's prepare,
model and finish steps on three, when it offers them).

One shutdown path (CONVENTIONS §4): a stop event, an end-of-stream sentinel, bounded
queues used with timeouts, the first worker exception re-raised in the caller, joins
that cannot hang. Ctrl-C in the caller stops every stage and finalizes the sinks as
partial outputs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .batching import Batcher
from .errors import Interrupted, StreammatError
from .frames import Batch, Frame, MattedBatch, StreamInfo
from .matting.base import Matter, StagedMatter
from .sinks.base import Sink
from .sources.base import Source

__all__ = ["Pipeline", "RunResult", "Progress"]

log = logging.getLogger(__name__)

_EOS = object()  # end-of-stream sentinel
_POLL = 0.05  # seconds between stop-event checks in blocking calls
_JOIN_TIMEOUT = 10.0


@dataclass
class Progress:
    """A snapshot for progress displays, sent after every written batch."""

    frames: int
    total: int | None
    elapsed: float
    dropped: int = 0
    skipped: int = 0
    latency: float | None = None  # capture → written, seconds, for live sources


@dataclass
class RunResult:
    info: StreamInfo
    frames_in: int = 0  # frames the source delivered to the batcher
    frames_out: int = 0  # frames every sink received
    complete: bool = False
    elapsed: float = 0.0
    source_stats: dict[str, int] = field(default_factory=dict)
    #: seconds each stage spent working (not waiting), for benchmarks
    busy: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_out / self.elapsed if self.elapsed > 0 else 0.0


def _same(batch: Batch) -> Batch:
    return batch


def _second(batch: Batch, matted: MattedBatch) -> MattedBatch:
    return matted


class _LatestQueue(queue.Queue):
    """A queue of size 1 whose ``put`` replaces the waiting item (newest-frame policy)."""

    def __init__(self) -> None:
        super().__init__(maxsize=1)
        self.dropped = 0

    def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            if self._qsize() and item is not _EOS:  # the end of stream keeps the waiting item
                self.queue.clear()
                self.dropped += 1
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()


class Pipeline:
    """Run ``source`` through ``matter`` into ``sinks`` with overlapped stages.

    ``flush_after`` (seconds) sends a partial batch when no new frame completed it in
    time (live sources); files leave it None and only the last batch is partial.
    """

    def __init__(
        self,
        source: Source,
        matter: Matter | Callable[[Batch], MattedBatch],
        sinks: Sequence[Sink],
        *,
        batch_size: int = 8,
        queue_depth: int = 2,
        flush_after: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.source = source
        self.matter = matter
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.queue_depth = queue_depth
        self.flush_after = flush_after
        self.on_progress = on_progress
        # a StagedMatter's three steps run on three threads; any other matter is one step
        if isinstance(matter, StagedMatter):
            self._steps: tuple[Callable[..., Any], ...] = (matter.prepare, matter.infer, matter.finish)
        else:
            self._steps = (_same, matter, _second)
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every stage to stop (thread-safe); ``run`` then returns a partial result."""
        self._stop.set()

    def run(self) -> RunResult:
        t0 = time.monotonic()
        # A caller may open the source first to fail fast on bad input; reuse its info then.
        info = getattr(self.source, "info", None) or self.source.open()
        result = RunResult(info=info)
        opened: list[Sink] = []
        try:
            for sink in self.sinks:
                sink.open(info)
                opened.append(sink)
        except BaseException:
            for sink in opened:
                self._close_sink(sink, complete=False)
            self.source.close()
            raise

        frames_q: queue.Queue = _LatestQueue() if self.source.backpressure == "latest" else queue.Queue(self.batch_size)
        # live: the matter always takes the newest batch, so latency stays one inference
        batches_q: queue.Queue = (
            _LatestQueue() if self.source.backpressure == "latest" else queue.Queue(self.queue_depth)
        )
        inferred_q: queue.Queue = queue.Queue(self.queue_depth)
        matted_q: queue.Queue = queue.Queue(self.queue_depth)
        busy = {"decode": 0.0, "prepare": 0.0, "model": 0.0, "finish": 0.0, "encode": 0.0}
        threads = [
            threading.Thread(target=self._guard, args=(self._decode, frames_q, result, busy), name="sm-decode"),
            threading.Thread(target=self._guard, args=(self._batch, frames_q, batches_q, busy), name="sm-batch"),
            threading.Thread(target=self._guard, args=(self._infer, batches_q, inferred_q, busy), name="sm-model"),
            threading.Thread(target=self._guard, args=(self._finish, inferred_q, matted_q, busy), name="sm-finish"),
            threading.Thread(target=self._guard, args=(self._encode, matted_q, result, busy, t0), name="sm-encode"),
        ]
        for t in threads:
            t.start()
        interrupted = False
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=_POLL)
                if self._errors:
                    self._stop.set()
                if self._stop.is_set():
                    self.source.close()  # a live source may be waiting for a lost camera
        except KeyboardInterrupt:
            interrupted = True
            self._stop.set()
        finally:
            self.source.close()  # unblocks a source waiting on a device or socket
            for t in threads:
                t.join(timeout=_JOIN_TIMEOUT)
                if t.is_alive():  # pragma: no cover - a stage ignored the stop event
                    log.error("stage %s did not stop within %.0f s", t.name, _JOIN_TIMEOUT)
            result.complete = not interrupted and not self._errors and not self._stopped_early(result)
            close_errors = [e for s in self.sinks if (e := self._close_sink(s, complete=result.complete))]
            result.elapsed = time.monotonic() - t0
            result.busy = busy
            result.source_stats = dict(self.source.stats)
            if isinstance(frames_q, _LatestQueue):
                dropped = frames_q.dropped + getattr(batches_q, "dropped", 0)
                result.source_stats["dropped"] = result.source_stats.get("dropped", 0) + dropped
        if interrupted:
            raise Interrupted(f"stopped by the user after {result.frames_out} frames")
        if self._errors:
            raise self._errors[0]
        if close_errors:
            raise close_errors[0]
        return result

    # -- stages -------------------------------------------------------------------
    def _stopped_early(self, result: RunResult) -> bool:
        return self._stop.is_set() and result.frames_out < result.frames_in

    def _guard(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            with self._lock:
                self._errors.append(exc)
            self._stop.set()

    def _put(self, q: queue.Queue, item: object) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue, timeout: float | None = None) -> object:
        """Next item, ``_EOS`` on stop, or None when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL if deadline is None else min(_POLL, max(0.0, deadline - time.monotonic()))
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        return _EOS

    def _decode(self, out: queue.Queue, result: RunResult, busy: dict[str, float]) -> None:
        it = iter(self.source)
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            busy["decode"] += time.perf_counter() - t
            result.frames_in += 1
            if not self._put(out, frame):
                return
        self._put(out, _EOS)

    def _batch(self, src: queue.Queue, out: queue.Queue, busy: dict[str, float]) -> None:
        """Frames → batches → the matter's ``prepare`` step."""
        prepare = self._steps[0]
        batcher = Batcher(self.batch_size)

        def emit(batch: Batch) -> bool:
            t = time.perf_counter()
            prepared = prepare(batch)
            busy["prepare"] += time.perf_counter() - t
            return self._put(out, (batch, prepared))

        while True:
            timeout = None
            if self.flush_after is not None and batcher.pending_since is not None:
                timeout = max(0.0, batcher.pending_since + self.flush_after - time.monotonic())
            item = self._get(src, timeout)
            if item is None:  # deadline passed: send what we have
                ready = [b for b in [batcher.flush()] if b is not None]
            elif item is _EOS:
                last = batcher.flush()
                if last is not None and not self._stop.is_set():
                    emit(last)
                self._put(out, _EOS)
                return
            else:
                assert isinstance(item, Frame)
                ready = batcher.add(item)
            for b in ready:
                if not emit(b):
                    return

    def _infer(self, src: queue.Queue, out: queue.Queue, busy: dict[str, float]) -> None:
        infer = self._steps[1]
        while (item := self._get(src)) is not _EOS:
            batch, prepared = item  # type: ignore[misc]
            t = time.perf_counter()
            raw = infer(prepared)
            busy["model"] += time.perf_counter() - t
            if not self._put(out, (batch, raw)):
                return
        self._put(out, _EOS)

    def _finish(self, src: queue.Queue, out: queue.Queue, busy: dict[str, float]) -> None:
        finish = self._steps[2]
        while (item := self._get(src)) is not _EOS:
            batch, raw = item  # type: ignore[misc]
            t = time.perf_counter()
            matted = finish(batch, raw)
            busy["finish"] += time.perf_counter() - t
            if not self._put(out, matted):
                return
        self._put(out, _EOS)

    def _encode(self, src: queue.Queue, result: RunResult, busy: dict[str, float], t0: float) -> None:
        while (item := self._get(src)) is not _EOS:
            assert isinstance(item, MattedBatch)
            t = time.perf_counter()
            for sink in self.sinks:
                sink.write(item)
            busy["encode"] += time.perf_counter() - t
            result.frames_out += len(item)
            if self.on_progress is not None:
                caps = [c for c in item.batch.capture_times if c is not None]
                stats = self.source.stats
                self.on_progress(
                    Progress(
                        frames=result.frames_out,
                        total=result.info.frames,
                        elapsed=time.monotonic() - t0,
                        dropped=stats.get("dropped", 0),
                        skipped=stats.get("skipped", 0),
                        latency=(time.time() - caps[-1]) if caps else None,
                    )
                )

    @staticmethod
    def _close_sink(sink: Sink, *, complete: bool) -> StreammatError | None:
        try:
            sink.close(complete=complete)
        except StreammatError as exc:
            log.error("%s", exc)
            return exc
        return None

"""Source → batcher → matter → sinks, each stage on its own thread (the matter's prepare,
model and finish steps on three, when it offers them).

One shutdown path: a stop event, an end-of-stream sentinel, bounded queues used with
timeouts, the first worker exception re-raised in the caller, joins that cannot hang.

Stopping is an event, not an exception. ``stop(drain=True)`` ends the source and lets the
frames already read flow into the outputs (a first Ctrl-C); ``stop()`` ends every stage at
its next item (a second Ctrl-C). A source error drains too: every frame decoded before a
broken packet reaches the outputs. A sink is closed only after the thread that writes to
it has finished, and every close has a deadline, so stopping can never hang in an encoder.
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
from .errors import ConfigError, Interrupted, OutputError, StreammatError
from .frames import Batch, Frame, MattedBatch, StreamInfo
from .matting.base import Matter, StagedMatter
from .sinks.base import CLOSE_DEADLINE, Sink, run_with_deadline
from .sources.base import Source

__all__ = ["Pipeline", "RunResult", "Progress"]

log = logging.getLogger(__name__)

_EOS = object()  # end-of-stream sentinel
_POLL = 0.05  # seconds between stop-event checks in blocking calls
_JOIN_TIMEOUT = 10.0
#: frames in flight (queues, batches, stage hands) must fit this many bytes; larger frames
#: get smaller batches (an 8K frame is 100 MB)
MEMORY_BUDGET = 2 << 30


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
    #: ended by ``Pipeline.stop`` (a signal, a preview window closed) rather than by the source
    stopped: bool = False
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
    time (live sources); files leave it None and only the last batch is short.
    ``stop_is_end``: a drained ``stop`` is the normal end of the run (live cameras), so the
    outputs are complete rather than partial. ``max_frames`` ends the run, complete, after
    that many frames. A pipeline runs once.
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
        stop_is_end: bool = False,
        max_frames: int | None = None,
    ) -> None:
        _check_stages(source, matter, sinks)
        for name, value in (("batch_size", batch_size), ("queue_depth", queue_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Pipeline: {name} must be an integer >= 1, got {value!r}")
        self.source = source
        self.matter = matter
        self.sinks = list(sinks)
        self.batch_size = batch_size
        self.queue_depth = queue_depth
        self.flush_after = flush_after
        self.on_progress = on_progress
        self.stop_is_end = stop_is_end
        self.max_frames = max_frames
        # a StagedMatter's three steps run on three threads; any other matter is one step
        if isinstance(matter, StagedMatter):
            self._steps: tuple[Callable[..., Any], ...] = (matter.prepare, matter.infer, matter.finish)
        else:
            self._steps = (_same, matter, _second)
        self._stop = threading.Event()  # every stage ends at its next item
        self._drain = threading.Event()  # the source ends; what was read flows out
        self._errors: list[BaseException] = []
        self._source_error: BaseException | None = None
        self._lock = threading.Lock()
        self._ran = False
        self._queues: dict[str, queue.Queue] = {}

    # -- public -------------------------------------------------------------------
    def stop(self, *, drain: bool = False) -> None:
        """Ask the pipeline to stop (thread-safe, also from a signal handler).

        ``drain=True`` ends the source and lets the frames already read reach the outputs;
        otherwise every stage stops at its next item. ``run`` then returns with
        ``result.stopped``; the outputs are partial unless ``stop_is_end``."""
        self._drain.set()
        if not drain:
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._drain.is_set()

    def queue_depths(self) -> dict[str, int]:
        """Items waiting between the stages now (empty before ``run``), for monitoring."""
        return {name: q.qsize() for name, q in self._queues.items()}

    def run(self) -> RunResult:
        if self._ran:
            raise ConfigError("a Pipeline runs once; build a new one (its sinks are closed)")
        self._ran = True
        t0 = time.monotonic()
        # A caller may open the source first to fail fast on bad input: a second open()
        # returns the same StreamInfo in every source
        info = self.source.open()
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
        batch_size = self._fit_batch(info)
        live = self.source.backpressure == "latest"
        frames_q: queue.Queue = _LatestQueue() if live else queue.Queue(batch_size)
        # live: the matter always takes the newest batch, so latency stays one inference;
        # the model's thread prepares it too, so no batch is prepared only to be replaced
        # (a served camera that fell behind spent 3-4x the prepare work of its output)
        batches_q: queue.Queue = _LatestQueue() if live else queue.Queue(self.queue_depth)
        inferred_q: queue.Queue = queue.Queue(self.queue_depth)
        matted_q: queue.Queue = queue.Queue(self.queue_depth)
        self._queues = {"frames": frames_q, "batches": batches_q, "inferred": inferred_q, "matted": matted_q}
        busy = {"decode": 0.0, "prepare": 0.0, "model": 0.0, "finish": 0.0, "encode": 0.0}
        stages = [
            ("decode", self._decode, (frames_q, result, busy)),
            ("batch", self._batch, (frames_q, batches_q, busy, batch_size, not live)),
            ("model", self._infer, (batches_q, inferred_q, busy, live)),
            ("finish", self._finish, (inferred_q, matted_q, busy)),
            ("encode", self._encode, (matted_q, result, busy, t0)),
        ]
        threads = [
            threading.Thread(target=self._guard, args=(name, fn, *args), name=f"sm-{name}", daemon=True)
            for name, fn, args in stages
        ]
        for t in threads:
            t.start()
        interrupted = False
        try:
            self._wait(threads)
        except KeyboardInterrupt:  # a library caller without signal handlers pressed Ctrl-C
            interrupted = True
            self.stop()
        finally:
            self.source.close()  # unblocks a source waiting on a device or socket
            writer_done = self._join(threads)
            result.stopped = self._drain.is_set() and self._source_error is None
            clean = not self._errors and self._source_error is None and not interrupted
            result.complete = clean and (not result.stopped or (self.stop_is_end and not self._stop.is_set()))
            if writer_done:
                close_errors = [e for s in self.sinks if (e := self._close_sink(s, complete=result.complete))]
            else:  # closing while the writer is still inside an encoder can hang or crash it
                log.error("the writer did not stop within %.0f s; outputs are left unfinished", _JOIN_TIMEOUT)
                close_errors = []
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
        if self._source_error is not None:
            raise self._source_error
        if close_errors:
            raise close_errors[0]
        return result

    # -- waiting and closing ------------------------------------------------------
    def _wait(self, threads: list[threading.Thread]) -> None:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=_POLL)
            if self._errors:
                self._stop.set()
            if self._drain.is_set():
                self.source.close()  # a live source may be waiting for a lost camera

    def _join(self, threads: list[threading.Thread]) -> bool:
        """Join every stage (bounded); True when the writer (the last stage) has finished."""
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for t in threads:
            while t.is_alive() and time.monotonic() < deadline:
                try:
                    t.join(timeout=_POLL)
                except KeyboardInterrupt:  # another Ctrl-C while stopping: stop harder
                    self.stop()
            if t.is_alive():
                log.error("stage %s did not stop within %.0f s", t.name, _JOIN_TIMEOUT)
        return not threads[-1].is_alive()

    def _fit_batch(self, info: StreamInfo) -> int:
        """``batch_size``, smaller when frames are so large that the batches in flight would
        not fit ``MEMORY_BUDGET``."""
        frame_bytes = max(1, info.width * info.height * 4)  # RGB + alpha
        in_flight = 3 * self.queue_depth + 2  # queued and in-hand batches
        fits = max(1, MEMORY_BUDGET // (frame_bytes * in_flight))
        if fits < self.batch_size:
            log.info(
                "%dx%d frames: batches of %d instead of %d to stay within memory",
                info.width,
                info.height,
                fits,
                self.batch_size,
            )
            return fits
        return self.batch_size

    @staticmethod
    def _close_sink(sink: Sink, *, complete: bool) -> StreammatError | None:
        """Close ``sink`` within the sinks' close deadline; every error becomes an ``OutputError``."""
        name = getattr(sink, "description", type(sink).__name__)
        try:
            run_with_deadline(lambda: sink.close(complete=complete), CLOSE_DEADLINE, name)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as one line
            err = exc if isinstance(exc, StreammatError) else OutputError(f"{name}: cannot finish: {exc}")
            log.error("%s", err)
            return err
        return None

    # -- stages -------------------------------------------------------------------
    def _guard(self, name: str, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            with self._lock:
                if name == "decode" and isinstance(exc, StreammatError) and not self._stop.is_set():
                    # a broken input: what was decoded before it still reaches the outputs
                    self._source_error = exc
                    self._drain.set()
                    self._put(args[0], _EOS)  # type: ignore[arg-type]
                    return
                self._errors.append(exc)
            self._stop.set()
            self._drain.set()

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
        while not self._drain.is_set():
            t = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            busy["decode"] += time.perf_counter() - t
            if self._drain.is_set():  # stopped while the source was waiting: not read
                break
            result.frames_in += 1
            if not self._put(out, frame):
                return
            if self.max_frames is not None and result.frames_in >= self.max_frames:
                break
        self._put(out, _EOS)

    def _prepare(self, batch: Batch, busy: dict[str, float]) -> Any:
        t = time.perf_counter()
        prepared = self._steps[0](batch)
        busy["prepare"] += time.perf_counter() - t
        return prepared

    def _batch(
        self, src: queue.Queue, out: queue.Queue, busy: dict[str, float], batch_size: int, prepare: bool
    ) -> None:
        """Frames → batches → the matter's ``prepare`` step (unless the model's thread does it)."""
        batcher = Batcher(batch_size)

        def emit(batch: Batch) -> bool:
            return self._put(out, (batch, self._prepare(batch, busy) if prepare else batch))

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

    def _infer(self, src: queue.Queue, out: queue.Queue, busy: dict[str, float], prepare: bool) -> None:
        infer = self._steps[1]
        reserve = _reserver(self.matter)
        while self._room(reserve) and (item := self._get(src)) is not _EOS:
            batch, prepared = item  # type: ignore[misc]
            if prepare:
                prepared = self._prepare(batch, busy)
            t = time.perf_counter()
            raw = infer(prepared)
            busy["model"] += time.perf_counter() - t
            if not self._put(out, (batch, raw)):
                return
        self._put(out, _EOS)

    def _room(self, reserve: Callable[[float], bool] | None) -> bool:
        """Wait until the matter has room for another batch (a shared model's stream keeps
        a bounded number in flight); False when stopped. Waiting before taking the batch
        lets a live source's newest frame replace the ones that arrived meanwhile."""
        if reserve is None:
            return True
        while not self._stop.is_set():
            if reserve(_POLL):
                return True
        return False

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
        origin: int | None = None
        while (item := self._get(src)) is not _EOS:
            assert isinstance(item, MattedBatch)
            if self.source.backpressure == "latest":
                # a live stream's timeline starts at its first written frame, not when the
                # camera opened (the model loads in between) nor at frames dropped since
                origin = item.batch.pts[0] if origin is None else origin
                if origin:
                    moved = tuple(p - origin for p in item.batch.pts)
                    item = item.retimed(moved)
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


def _reserver(matter: object) -> Callable[[float], bool] | None:
    """The ``reserve(timeout)`` of the innermost matter that offers one (wrappers name
    theirs ``inner``), else None: a matter whose ``infer`` hands back a future of its
    answer and bounds how many batches it holds."""
    while matter is not None:
        reserve = getattr(matter, "reserve", None)
        if callable(reserve):
            return reserve
        matter = getattr(matter, "inner", None)
    return None


def _check_stages(source: object, matter: object, sinks: object) -> None:
    """Wrong stage objects are one clear error here, not an AttributeError in a thread."""
    if isinstance(source, str | bytes) or not all(hasattr(source, a) for a in ("open", "close", "__iter__")):
        raise ConfigError(
            f"Pipeline: source must be a Source (FileSource, CameraSource, ZmqSource, open_source(...)), "
            f"got {type(source).__name__}"
        )
    if not callable(matter):
        raise ConfigError(
            f"Pipeline: matter must be a Matter (create_matter(session)), got {type(matter).__name__}; "
            "a session is made into one with create_matter"
        )
    if isinstance(sinks, str | bytes) or not isinstance(sinks, Sequence):
        raise ConfigError(f"Pipeline: sinks must be a list of sinks (create_sink(...)), got {type(sinks).__name__}")
    for sink in sinks:
        if not all(hasattr(sink, a) for a in ("open", "write", "close")):
            raise ConfigError(f"Pipeline: {type(sink).__name__} is not a sink (open/write/close)")

"""One named pipeline of the service, kept running: build, run, and restart with backoff.

A ``PipelineRunner`` owns a thread that builds its pipeline through the composition root
(with the stream's view of the shared model), runs it, and when the source or a sink fails
— a camera not plugged in yet, a file not there yet, an upstream publisher that went
away, a disk that filled up — logs the error, counts it and tries again after a delay
that doubles from ``backoff_min`` to ``backoff_max`` (and starts over after a run that
lasted longer than ``backoff_max``). Only a configuration error (an unknown codec) stops
retrying: the state is then ``failed``.

A recording never replaces the segment of an earlier attempt: the first run writes
``NAME.EXT`` and each restart the next free ``NAME.N.EXT``.

Counters (frames in and out, drops, restarts, errors by kind) add up over restarts; a
``_Tap`` sink, last in the pipeline's sinks, counts the frames written, measures capture →
output latency once every other sink has the frame, and keeps a reference to the last
written batch for live previews.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StreammatError
from .config import ServePipeline

__all__ = ["PipelineRunner", "PipelineStatus", "STATES", "READY_STATES", "is_ready"]

log = logging.getLogger(__name__)

#: the life of a pipeline: starting (building, opening its source) → running → backoff
#: (waiting to restart after a failure) → starting …; completed (a local file that is not
#: looped reached its end: its work is done); stopped (by the service or the control API);
#: failed (a configuration error that retrying cannot fix)
STATES = ("starting", "running", "backoff", "completed", "stopped", "failed")
#: the service is ready while every pipeline is in one of these: a finished file is not a
#: fault an orchestrator should act on, whereas a pipeline that is starting, waiting to
#: restart, stopped or failed does not deliver what its config asks for
READY_STATES = frozenset({"running", "completed"})
_FPS_WINDOW = 2.0  # seconds of written frames the fps gauge averages
_LATENCY_SAMPLES = 512  # recent latencies kept for the p50/p95 of the status


@dataclass(frozen=True)
class PipelineStatus:
    """What the service reports about one pipeline."""

    name: str
    state: str
    fps: float
    frames_in: int
    frames_out: int
    dropped: int
    latency_p50: float | None  # seconds, capture → output
    latency_p95: float | None
    restarts: int
    last_error: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Frames written (the count a dashboard shows)."""
        return self.frames_out

    @property
    def drops(self) -> int:
        return self.dropped

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the control API."""
        return {**dataclasses.asdict(self), "frames": self.frames, "drops": self.drops}


class _Tap:
    """The last sink: frame counts, latency and the latest frame of a pipeline."""

    description = "service monitor"

    def __init__(self, runner: PipelineRunner) -> None:
        self._runner = runner

    def open(self, info: Any) -> None:
        pass

    def write(self, batch: Any) -> None:
        self._runner._written(batch)

    def close(self, *, complete: bool = True) -> None:
        pass


def is_ready(states: Iterable[str]) -> bool:
    """Every pipeline runs or has completed its finite input (no pipelines: ready)."""
    return all(state in READY_STATES for state in states)


def segment_name(output: str, segment: int, *, overwrite: bool = False) -> str:
    """The recording of one attempt: ``out.mov`` for the first (unless it exists and may
    not be replaced), then the next ``out.N.mov`` whose final and partial names are free."""
    p = Path(output)
    if segment == 0 and (overwrite or not p.exists()):
        return output
    n = max(1, segment)
    while True:
        candidate = p.with_name(f"{p.stem}.{n}{p.suffix}")
        partial = p.with_name(f"{p.stem}.{n}.partial{p.suffix}")
        if not candidate.exists() and not partial.exists():
            return str(candidate)
        n += 1


def ends_by_itself(settings: ServePipeline) -> bool:
    """A local file that is not looped ends normally; cameras, URLs and streams don't."""
    from ..sources import zmq_url
    from ..sources.camera import parse_camera_spec

    if zmq_url(settings.source) is not None or settings.loop:
        return False
    return parse_camera_spec(settings.source)[0] == "file"


class PipelineRunner:
    def __init__(self, name: str, settings: ServePipeline, service: Any) -> None:
        self.name = name
        self.settings = settings
        self._service = service
        self.state = "starting"
        self.restarts = 0
        self.errors: dict[str, int] = {}
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pipeline: Any = None
        self._thread: threading.Thread | None = None
        self._segment = 0
        # counters over every attempt; the current attempt's source counts are added live
        self._in_done = 0
        self._dropped_done = 0
        self.frames_out = 0
        self._times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._latest: Any = None

    # -- control ------------------------------------------------------------------
    def inherit(self, previous: PipelineRunner) -> None:
        """Carry the counters of the pipeline this one replaces (a reload or a restart)."""
        frames_in, dropped = previous.source_counts()
        self._in_done, self._dropped_done = frames_in, dropped
        self.frames_out = previous.frames_out
        self.restarts = previous.restarts + 1
        self.errors = dict(previous.errors)
        self.last_error = previous.last_error
        self._segment = previous._segment

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"sm-pipeline-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the pipeline to end: the frames already read reach the outputs, which are
        finalized complete. Returns at once; ``join`` waits."""
        self._stop.set()
        with self._lock:
            pipeline = self._pipeline
        if pipeline is not None:
            pipeline.stop(drain=True)

    def join(self, timeout: float) -> bool:
        """Wait for the runner's thread; True when it has ended."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout)
        return not t.is_alive()

    # -- what the service reports --------------------------------------------------
    def status(self) -> PipelineStatus:
        frames_in, dropped = self.source_counts()
        lat = sorted(self._latencies)
        return PipelineStatus(
            name=self.name,
            state=self.state,
            fps=self.fps(),
            frames_in=frames_in,
            frames_out=self.frames_out,
            dropped=dropped,
            latency_p50=_pick(lat, 0.50),
            latency_p95=_pick(lat, 0.95),
            restarts=self.restarts,
            last_error=self.last_error,
            settings=self.settings.model_dump(mode="json"),
            errors=dict(self.errors),
            queues=self.queue_depths(),
        )

    def source_counts(self) -> tuple[int, int]:
        """(frames the source delivered, frames dropped) over every attempt."""
        with self._lock:
            pipeline = self._pipeline
            done_in, done_dropped = self._in_done, self._dropped_done
        if pipeline is None:
            return done_in, done_dropped
        got, lost = _counts(pipeline.source.stats)
        return done_in + got, done_dropped + lost

    def fps(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._times and self._times[0] < now - _FPS_WINDOW:
                self._times.popleft()
            return len(self._times) / _FPS_WINDOW

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            pipeline = self._pipeline
        return pipeline.queue_depths() if pipeline is not None else {}

    def latest_frame(self) -> tuple[Any, Any] | None:
        """``(rgb (H,W,3), alpha (H,W))`` uint8 numpy views of the last written frame."""
        batch = self._latest
        if batch is None:
            return None
        return batch.batch.images[-1].numpy(), batch.alpha[-1].numpy()

    def _written(self, batch: Any) -> None:
        now = time.monotonic()
        wall = time.time()
        with self._lock:
            n = len(batch)
            self.frames_out += n
            self._times.extend([now] * n)
            lat = [wall - c for c in batch.batch.capture_times if c is not None]
            self._latencies.extend(lat)
        self._latest = batch
        self._service.metrics.observe_latency(self.name, lat)

    # -- the runner thread -----------------------------------------------------------
    def _loop(self) -> None:
        cfg = self._service.config
        delay = cfg.backoff_min
        try:
            shared = self._service.pool.acquire(self.settings)
        except StreammatError as exc:
            self._fail(exc, retry=False)
            return
        completed = False
        try:
            while not self._stop.is_set():
                self.state = "starting"
                started = time.monotonic()
                try:
                    finished = self._attempt(shared)
                except ConfigError as exc:
                    self._fail(exc, retry=False)
                    return
                except Exception as exc:  # noqa: BLE001 - every failure is counted and retried
                    self._fail(exc, retry=True)
                else:
                    if finished or self._stop.is_set():
                        completed = not self._stop.is_set()
                        break
                    self._fail(None, retry=True)  # a live source ended: reconnect
                if time.monotonic() - started > cfg.backoff_max:
                    delay = cfg.backoff_min
                self.state = "backoff"
                log.warning("pipeline %s: restarting in %.1f s", self.name, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, cfg.backoff_max)
                if not self._stop.is_set():
                    self.restarts += 1
            self.state = "completed" if completed else "stopped"
            if completed:
                log.info("pipeline %s: completed (the end of %s)", self.name, self.settings.source)
        finally:
            self._service.pool.release(shared)

    def _attempt(self, shared: Any) -> bool:
        """One build-and-run; True when the pipeline ended normally (a file at its end or
        a stop), False when a live source ended."""
        from ..compose import build_pipeline

        settings = self.settings
        if settings.output:
            settings = settings.model_copy(
                update={"output": segment_name(settings.output, self._segment, overwrite=settings.overwrite)}
            )
        matter, detach = self._service.pool.stream_matter(shared, settings)
        try:
            pipeline = build_pipeline(settings, matter=matter)
            pipeline.stop_is_end = True  # a service's stop ends a recording complete
            pipeline.sinks.append(_Tap(self))
            if self._stop.is_set():  # stopped while the source was opening: write nothing
                pipeline.source.close()
                return True
            with self._lock:
                self._pipeline = pipeline
            self.state = "running"
            self._segment += 1
            try:
                result = pipeline.run()
            finally:
                with self._lock:
                    self._pipeline = None
                    got, lost = _counts(pipeline.source.stats)
                    self._in_done += got
                    self._dropped_done += lost
        finally:
            detach()
        return self._stop.is_set() or (ends_by_itself(self.settings) and result.complete)

    def _fail(self, exc: BaseException | None, *, retry: bool) -> None:
        kind = "source_ended" if exc is None else _kind(exc)
        line = "the source ended" if exc is None else (str(exc).splitlines() or [type(exc).__name__])[0]
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = line
        if retry:
            log.warning("pipeline %s: %s", self.name, line)
        else:
            self.state = "failed"
            log.error("pipeline %s: %s (not retried)", self.name, line)


def _counts(stats: dict[str, int]) -> tuple[int, int]:
    """Frames in and frames dropped from a source's stats (cameras and streams name them
    differently)."""
    got = stats.get("delivered", stats.get("decoded", stats.get("frames", 0)))
    return got, stats.get("dropped", 0) + stats.get("skipped", 0)


def _kind(exc: BaseException) -> str:
    """``InputError`` → ``input``: the error kinds of the metrics."""
    name = type(exc).__name__
    if isinstance(exc, StreammatError) and name.endswith("Error"):
        return name[: -len("Error")].lower() or "error"
    return "internal"


def _pick(data: list[float], q: float) -> float | None:
    if not data:
        return None
    return data[min(len(data) - 1, max(0, round(q * (len(data) - 1))))]

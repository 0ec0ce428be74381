"""Runs queued jobs: at most ``max_jobs`` at once, oldest first, each through the one
composition root that ``streammat process`` uses, so a job and the command behave alike.

Workers are plain threads that claim the oldest queued row; the database decides the order,
so a restart continues where the queue was. Cancelling stops the job's pipeline (its
outputs are finalized as ``NAME.partial.EXT``); closing the runner stops the running jobs
the same way but marks them ``interrupted``, so they can be retried after a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ClusterSettings
from ..errors import ConfigError, StreammatError
from .cluster_jobs import CLUSTER_OPTION, ClusterJob, check_cluster_option, job_cluster
from .jobs import Job, JobStore, leftover_output
from .paths import Roots

__all__ = ["JobRunner", "JOB_OPTIONS", "job_settings", "PROGRESS_INTERVAL"]

log = logging.getLogger(__name__)

#: seconds between progress writes to the database (progress arrives after every batch)
PROGRESS_INTERVAL = 0.25
#: seconds an idle worker waits before it looks at the queue again without being woken
_IDLE_POLL = 1.0
_JOIN_TIMEOUT = 30.0

#: the ``process`` settings a job may set. Sources, outputs, network endpoints, windows,
#: key folders and endless reading are left out: a job reads one file and writes one output.
JOB_OPTIONS = (
    "model",
    "device",
    "threads",
    "batch_size",
    "fast",
    "smoothing",
    "threshold",
    "feather",
    "every",
    "max_pixels",
    "frames",
    "duration",
    "queue_depth",
    "format",
    "codec",
    "background",
    "matte",
    "overwrite",
)


def job_settings(input: str, output: str, options: dict[str, Any]) -> Any:
    """The validated ``ProcessConfig`` of a job; a wrong option is one ``ConfigError`` line.
    The ``cluster`` option (where the job runs, see ``cluster_jobs``) is checked, not kept."""
    from ..config import ProcessConfig, settings_from

    check_cluster_option(options)
    options = {k: v for k, v in options.items() if k != CLUSTER_OPTION}
    for key in options:
        if key not in JOB_OPTIONS and key in ProcessConfig.model_fields:
            raise ConfigError(f"options: {key!r} cannot be set for a job (allowed: {', '.join(JOB_OPTIONS)})")
        if key in ("source", "input", "camera", "output"):
            raise ConfigError(f"options: {key!r} cannot be set for a job (allowed: {', '.join(JOB_OPTIONS)})")
    return settings_from(ProcessConfig, {**options, "source": input, "output": output}, where="options")


def _build(settings: Any, on_progress: Callable[[Any], None]) -> Any:
    from ..compose import build_pipeline

    return build_pipeline(settings, on_progress=on_progress)


class JobRunner:
    """``max_jobs`` worker threads over ``store``'s queue. ``build(settings, on_progress)``
    makes the pipeline (the composition root; tests may pass another); ``roots`` checks the
    paths once more when a job starts. Jobs run on Ray when they or ``cluster`` (the
    service's ``cluster:`` section) say so (see ``cluster_jobs``)."""

    def __init__(
        self,
        store: JobStore,
        *,
        max_jobs: int = 1,
        build: Callable[[Any, Callable[[Any], None]], Any] = _build,
        roots: Roots | None = None,
        cluster: ClusterSettings | None = None,
    ) -> None:
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or not 1 <= max_jobs <= 64:
            raise ConfigError(f"max_jobs: expected an integer from 1 to 64, got {max_jobs!r}")
        self.store = store
        self.max_jobs = max_jobs
        self._build = build
        self._roots = roots
        self._cluster = cluster
        self._wake = threading.Condition()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pipelines: dict[int, Any] = {}  # running job id → its pipeline (once built)
        self._cancelled: set[int] = set()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        """Recover what a dead process left running, then start the workers."""
        self.store.recover()
        for n in range(self.max_jobs):
            t = threading.Thread(target=self._work, name=f"sm-job-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop the workers; running jobs are stopped and marked ``interrupted``."""
        self._closing.set()
        with self._lock:
            running = list(self._pipelines.values())
        for pipeline in running:
            pipeline.stop()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        """A job was queued: let an idle worker take it now."""
        with self._wake:
            self._wake.notify()

    def cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once, or stop a running one (it ends as ``cancelled`` with
        its partial output a moment later). Finished jobs are returned unchanged."""
        job = self.store.cancel_queued(job_id)
        if job.state == "running":
            with self._lock:
                self._cancelled.add(job_id)
                pipeline = self._pipelines.get(job_id)
            if pipeline is not None:
                pipeline.stop()
        return job

    # -- workers --------------------------------------------------------------------
    def _work(self) -> None:
        while not self._closing.is_set():
            job = self.store.claim_next()
            if job is None:
                with self._wake:
                    self._wake.wait(_IDLE_POLL)
                continue
            try:
                self._run(job)
            except Exception:  # noqa: BLE001 - a bug must not kill the worker
                log.exception("job %d: internal error", job.id)
                self.store.finish(job.id, "failed", error="internal error (see the service log)")
            finally:
                with self._lock:
                    self._pipelines.pop(job.id, None)
                    self._cancelled.discard(job.id)

    def _run(self, job: Job) -> None:
        log.info("job %d started: %s -> %s", job.id, job.input, job.output)
        try:
            if self._roots is not None:  # again at run time: a path may have become a symlink since
                self._roots.input(job.input)
                self._roots.output(job.output)
            settings = job_settings(job.input, job.output, job.options)
            cluster = job_cluster(job.options, self._cluster)
            if cluster is not None:
                pipeline = ClusterJob(settings, cluster, self._progress_writer(job.id))
            else:
                pipeline = self._build(settings, self._progress_writer(job.id))
        except StreammatError as exc:
            self.store.finish(job.id, "failed", error=str(exc))
            return
        with self._lock:
            self._pipelines[job.id] = pipeline
            stop_now = job.id in self._cancelled or self._closing.is_set()
        if stop_now:
            pipeline.stop()
        try:
            result = pipeline.run()
        except StreammatError as exc:
            self._end(job, "failed", str(exc))
            return
        if result.complete:
            self.store.finish(job.id, "done", result=str(Path(job.output)), frames=result.frames_out)
            return
        with self._lock:
            cancelled = job.id in self._cancelled
        if cancelled:
            self._end(job, "cancelled", f"cancelled after {result.frames_out} frames")
        elif self._closing.is_set():
            self._end(job, "interrupted", f"the service stopped during this job after {result.frames_out} frames")
        else:
            self._end(job, "failed", f"ended early after {result.frames_out} frames")

    def _end(self, job: Job, state: str, error: str) -> None:
        """Finish ``job`` as not complete, naming the partial output if one was kept."""
        left = leftover_output(job.output, None)
        note = f"; partial output: {left}" if left else ""
        self.store.finish(job.id, state, error=error + note, result=str(left) if left else None, partial=bool(left))

    def _progress_writer(self, job_id: int) -> Callable[[Any], None]:
        last = [0.0]

        def write(progress: Any) -> None:
            now = time.monotonic()
            final = progress.total is not None and progress.frames >= progress.total
            if now - last[0] < PROGRESS_INTERVAL and not final:
                return
            last[0] = now
            fps = progress.frames / progress.elapsed if progress.elapsed > 0 else None
            eta = None
            if fps and progress.total is not None:
                eta = max(0.0, (progress.total - progress.frames) / fps)
            self.store.progress(job_id, frames=progress.frames, total=progress.total, fps=fps, eta=eta)

        return write

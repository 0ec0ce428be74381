"""Durable file jobs: one SQLite table that outlives the service process.

Every state change is one committed transaction in a WAL-mode database with
``synchronous=FULL``, so a job that was accepted is on disk before its id is answered and
nothing a crash does to the process can lose it. When the service starts again, a job still
marked ``running`` belonged to the process that died: it becomes ``interrupted``, and the
temporary output that process was writing (named after its pid) is renamed to the partial
name the sinks use, so the caller finds what was done and can retry the job.

States: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled`` | ``interrupted``;
``retry`` puts a finished job that did not complete at the back of the queue again.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Job", "JobStore", "JobNotFound", "JobStateError", "STATES", "FINISHED", "RETRYABLE", "SCHEMA_VERSION"]

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = ("done", "failed", "cancelled", "interrupted")
RETRYABLE = ("failed", "cancelled", "interrupted")
#: bumped whenever the table changes; a newer database than this code is refused
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    options TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled','interrupted')),
    frames_done INTEGER NOT NULL DEFAULT 0,
    frames_total INTEGER,
    fps REAL,
    eta REAL,
    error TEXT,
    result TEXT,
    partial INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    created REAL NOT NULL,
    queued REAL NOT NULL,
    started REAL,
    ended REAL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, queued, id);
"""


class JobNotFound(ConfigError):
    """No job has this id."""


class JobStateError(ConfigError):
    """The job is in a state that does not allow the request (retry a running job …)."""


@dataclass(frozen=True)
class Job:
    id: int
    input: str
    output: str
    options: dict[str, Any]
    state: str
    frames_done: int
    frames_total: int | None
    fps: float | None
    eta: float | None
    error: str | None
    #: the path the output has now: the final one when done, the partial one otherwise
    result: str | None
    partial: bool
    pid: int | None
    created: float
    queued: float
    started: float | None
    ended: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["options"] = json.loads(values["options"])
    values["partial"] = bool(values["partial"])
    return Job(**values)


def leftover_output(output: str, pid: int | None) -> Path | None:
    """The output a run of ``output`` left behind: its partial file, recovered here by the
    sinks' own rule when process ``pid`` died while writing it (what plays is kept)."""
    from ..sinks._safe_path import partial_name  # the sinks' naming; imports torch
    from ..sinks._target import recover_stale

    final = Path(output)
    if pid is not None:
        recover_stale(final)
    partial = partial_name(final)
    return partial if partial.exists() else None


class JobStore:
    """The job table in ``path`` (created on first use). Thread-safe: one connection,
    one lock, every method one transaction."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise ConfigError(f"state: cannot open the job database {self.path} ({exc})") from None
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"state: {self.path} was written by a newer streammat "
                f"(schema {version}, this one knows {SCHEMA_VERSION})"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        return self._db.execute(sql, args).fetchone()

    # -- queries --------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        with self._lock:
            row = self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise JobNotFound(f"no job with id {job_id}")
        return _job(row)

    def list(self, *, limit: int = 100) -> list[Job]:
        """The newest ``limit`` jobs, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def count(self, state: str) -> int:
        with self._lock:
            return self._one("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))[0]

    # -- changes --------------------------------------------------------------------
    def submit(self, input: str, output: str, options: dict[str, Any]) -> Job:
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO jobs (input, output, options, state, created, queued) VALUES (?, ?, ?, 'queued', ?, ?)",
                (input, output, json.dumps(options, sort_keys=True), now, now),
            )
            job_id = cur.lastrowid
        log.info("job %d queued: %s -> %s", job_id, input, output)
        return self.get(job_id)

    def claim_next(self) -> Job | None:
        """The oldest queued job, now ``running`` in this process; None when none waits."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._one("SELECT id FROM jobs WHERE state = 'queued' ORDER BY queued, id LIMIT 1")
                if row is not None:
                    self._db.execute(
                        "UPDATE jobs SET state = 'running', pid = ?, started = ? WHERE id = ?",
                        (os.getpid(), time.time(), row["id"]),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return None if row is None else self.get(row["id"])

    def progress(self, job_id: int, *, frames: int, total: int | None, fps: float | None, eta: float | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET frames_done = ?, frames_total = ?, fps = ?, eta = ? "
                "WHERE id = ? AND state = 'running'",
                (frames, total, fps, eta, job_id),
            )

    def finish(
        self,
        job_id: int,
        state: str,
        *,
        error: str | None = None,
        result: str | None = None,
        partial: bool = False,
        frames: int | None = None,
    ) -> Job:
        """End a job; ``frames`` (when known) is the final count of frames written."""
        if state not in FINISHED:
            raise ValueError(f"finish: state must be one of {FINISHED}, got {state!r}")
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, result = ?, partial = ?, eta = NULL, ended = ?, "
                "frames_done = COALESCE(?, frames_done) WHERE id = ?",
                (state, error, result, int(partial), time.time(), frames, job_id),
            )
        log.info("job %d %s%s", job_id, state, f": {error}" if error else "")
        return self.get(job_id)

    def cancel_queued(self, job_id: int) -> Job:
        """Cancel a job that has not started; returns the job as it is now (any state)."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = 'cancelled', error = 'cancelled before it started', ended = ? "
                "WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            )
        return self.get(job_id)

    def retry(self, job_id: int) -> Job:
        """Queue a failed, cancelled or interrupted job again, behind the jobs waiting now."""
        job = self.get(job_id)
        if job.state not in RETRYABLE:
            raise JobStateError(f"job {job_id} is {job.state}; only {', '.join(RETRYABLE)} jobs can be retried")
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = 'queued', frames_done = 0, fps = NULL, eta = NULL, error = NULL, "
                "result = NULL, partial = 0, pid = NULL, started = NULL, ended = NULL, queued = ? "
                "WHERE id = ? AND state = ?",
                (time.time(), job_id, job.state),
            )
        return self.get(job_id)

    def recover(self) -> list[Job]:
        """Mark the jobs a dead process left ``running`` as ``interrupted``, with the output
        they had written by then as their partial result. Call once, before the runner starts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = 'running' AND (pid IS NULL OR pid != ?)", (os.getpid(),)
            ).fetchall()
        recovered = []
        for row in rows:
            job = _job(row)
            left = leftover_output(job.output, job.pid)
            note = f"; partial output: {left}" if left else "; nothing was written"
            recovered.append(
                self.finish(
                    job.id,
                    "interrupted",
                    error=f"the service stopped during this job after {job.frames_done} frames{note}",
                    result=str(left) if left else None,
                    partial=left is not None,
                )
            )
        if recovered:
            log.warning("%d job(s) were interrupted when the service last stopped", len(recovered))
        return recovered

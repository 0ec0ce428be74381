"""The job database, path confinement and tokens, without a server."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from streammat.errors import ConfigError
from streammat.service.auth import is_loopback, service_token, token_matches
from streammat.service.job_runner import job_settings
from streammat.service.jobs import SCHEMA_VERSION, JobNotFound, JobStateError, JobStore
from streammat.service.paths import PathNotAllowed, Roots
from streammat.testing import make_clip


def test_jobs_are_claimed_oldest_first_and_retried_at_the_back(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    a, b, c = (store.submit(f"in{i}.mp4", f"out{i}.mov", {"matte": True}) for i in range(3))
    assert store.claim_next().id == a.id
    store.progress(a.id, frames=5, total=10, fps=2.5, eta=2.0)
    got = store.get(a.id)
    assert (got.state, got.frames_done, got.frames_total, got.pid) == ("running", 5, 10, os.getpid())
    failed = store.finish(a.id, "failed", error="broken input")
    assert failed.error == "broken input" and failed.ended is not None
    retried = store.retry(a.id)
    assert (retried.state, retried.frames_done, retried.error) == ("queued", 0, None)
    assert [store.claim_next().id for _ in range(3)] == [b.id, c.id, a.id]
    assert store.claim_next() is None
    with pytest.raises(JobStateError, match="is running"):
        store.retry(b.id)
    with pytest.raises(JobNotFound, match="no job with id 99"):
        store.get(99)
    assert store.get(a.id).options == {"matte": True}
    store.close()


def test_a_queued_job_survives_a_killed_process(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    code = (
        "import os, sys; from streammat.service.jobs import JobStore; "
        f"s = JobStore({str(db)!r}); s.submit('a.mp4', 'a.mov', {{}}); s.submit('b.mp4', 'b.mov', {{}}); "
        "s.claim_next(); os.kill(os.getpid(), 9)"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -9
    store = JobStore(db)
    assert [j.state for j in store.list()] == ["queued", "running"]
    (interrupted,) = store.recover()
    assert interrupted.state == "interrupted" and interrupted.result is None
    assert "nothing was written" in interrupted.error
    assert store.claim_next().input == "b.mp4"


def test_recover_renames_the_dead_process_output_to_partial(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = store.submit("in.mp4", str(tmp_path / "out.mkv"), {})
    store.claim_next()
    store._db.execute("UPDATE jobs SET pid = 123456789, frames_done = 7 WHERE id = ?", (job.id,))
    left = make_clip(tmp_path / ".out.tmp-123456789.mkv", frames=7, codec="ffv1")  # what the dead run wrote
    data = left.read_bytes()
    (got,) = store.recover()
    assert got.state == "interrupted" and got.partial and got.result == str(tmp_path / "out.partial.mkv")
    assert (tmp_path / "out.partial.mkv").read_bytes() == data
    assert "after 7 frames; partial output" in got.error
    assert store.recover() == []
    retried = store.retry(job.id)  # an interrupted job can run again
    assert (retried.state, retried.frames_done, retried.partial, retried.result) == ("queued", 0, False, None)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer streammat"):
        JobStore(tmp_path / "jobs.db")


def test_roots_resolve_inside_and_refuse_the_rest(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    roots = Roots([tmp_path])
    assert roots.input("a.mp4") == tmp_path / "a.mp4"
    assert roots.input(str(tmp_path / "a.mp4")) == tmp_path / "a.mp4"
    assert roots.output("sub/o.mov") == tmp_path / "sub" / "o.mov"
    with pytest.raises(PathNotAllowed, match="is a folder"):
        roots.input("sub")
    with pytest.raises(PathNotAllowed, match="outside"):
        roots.output("/etc/o.mov")
    with pytest.raises(ConfigError, match="too long"):
        roots.input("a" * 5000)
    with pytest.raises(ConfigError, match="not a folder"):
        Roots([tmp_path / "a.mp4"])


def test_options_are_the_process_settings_minus_endpoints() -> None:
    settings = job_settings("in.mp4", "out.mov", {"batch_size": 2, "matte": True})
    assert (settings.source, settings.output, settings.batch_size, settings.matte) == ("in.mp4", "out.mov", 2, True)
    for key in ("publish", "preview", "virtual_camera", "loop", "output", "input"):
        with pytest.raises(ConfigError, match="cannot be set for a job"):
            job_settings("in.mp4", "out.mov", {key: "x"})


def test_tokens(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
    state = tmp_path / "jobs.db"
    assert service_token(None, host="127.0.0.1", state_path=state) == (None, False)
    token, generated = service_token(None, host="0.0.0.0", state_path=state)
    assert generated and len(token) >= 32
    assert stat.S_IMODE((tmp_path / "jobs.db.token").stat().st_mode) == 0o600
    assert service_token(None, host="0.0.0.0", state_path=state) == (token, False)  # kept across restarts
    assert service_token("configured-token-1234", host="0.0.0.0", state_path=state) == ("configured-token-1234", False)
    with pytest.raises(ConfigError, match="token"):
        service_token("short", host="0.0.0.0", state_path=state)
    assert token_matches(token, token) and not token_matches(token, token[:-1]) and not token_matches(token, None)


def test_recover_removes_a_dead_process_output_that_does_not_play(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = store.submit("in.mp4", str(tmp_path / "out.mkv"), {})
    store.claim_next()
    store._db.execute("UPDATE jobs SET pid = 123456789 WHERE id = ?", (job.id,))
    (tmp_path / ".out.tmp-123456789.mkv").write_bytes(b"not a video")
    (got,) = store.recover()
    assert got.state == "interrupted" and not got.partial and "nothing was written" in got.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.db", "jobs.db-shm", "jobs.db-wal"]

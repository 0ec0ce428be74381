"""Jobs outlive the service: SIGKILL it during a job and start it again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_helpers import finished

from streammat.readback import read_rgba
from streammat.sinks._playable import playable_frames
from streammat.testing import make_clip

pytestmark = pytest.mark.slow


def _start(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammat.testing.jobserver", "--state", str(root / "jobs.db"), "--root", str(root)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # bounded: the server prints it once started, or exits
    assert line.startswith("listening on "), line
    return proc, line.split()[-1]


def _wait(client: httpx.Client, job_id: int, until, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_sigkill_keeps_queued_jobs_and_marks_the_running_one_interrupted(tmp_path: Path, cli_env: dict) -> None:
    make_clip(tmp_path / "long.mp4", width=320, height=240, frames=200)
    make_clip(tmp_path / "short.mp4", frames=5)
    proc, url = _start(tmp_path, cli_env)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            opts = {"model": "u2netp", "batch_size": 2}
            ids = [
                client.post("/jobs", json={"input": i, "output": o, "options": opts}).json()["id"]
                for i, o in (("long.mp4", "long.mkv"), ("short.mp4", "s1.mkv"), ("short.mp4", "s2.mkv"))
            ]
            # wait until the running job has put playable frames on disk (whole clusters)
            tmp = tmp_path / f".long.tmp-{proc.pid}.mkv"
            deadline = time.monotonic() + 90
            while not (tmp.exists() and playable_frames(tmp) > 0) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert tmp.exists() and playable_frames(tmp) > 0
            assert client.get(f"/jobs/{ids[0]}").json()["state"] == "running"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # what the dead process left: one running row, two queued rows, all on disk
    with sqlite3.connect(tmp_path / "jobs.db") as db:
        states = [s for (s,) in db.execute("SELECT state FROM jobs ORDER BY id")]
    assert states == ["running", "queued", "queued"]

    proc, url = _start(tmp_path, cli_env)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            first = client.get(f"/jobs/{ids[0]}").json()
            assert first["state"] == "interrupted", first
            assert first["partial"] and first["output_path"] == str(tmp_path / "long.partial.mkv")
            assert "partial output" in first["error"]
            assert sum(1 for _ in read_rgba(first["output_path"])) > 0  # playable
            assert not tmp.exists()
            for job_id, name in ((ids[1], "s1.mkv"), (ids[2], "s2.mkv")):
                job = _wait(client, job_id, finished)
                assert job["state"] == "done", job
                assert sum(1 for _ in read_rgba(tmp_path / name)) == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

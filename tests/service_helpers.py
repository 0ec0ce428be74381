"""Helpers for the control-API tests: a stand-in for the live-pipeline supervisor and a
server with the real job database, runner and routes on loopback."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from streammat.errors import ConfigError
from streammat.service.api import Control
from streammat.service.runner import PipelineStatus
from streammat.testing.jobserver import create_app, serve_in_thread


def _status(name: str, settings: dict[str, Any]) -> PipelineStatus:
    return PipelineStatus(
        name=name,
        state="running",
        fps=0.0,
        frames_in=0,
        frames_out=0,
        dropped=0,
        latency_p50=0.012,
        latency_p95=0.020,
        restarts=0,
        last_error=None,
        settings=settings,
    )


class FakeService:
    """The supervisor's interface, with pipelines whose frames and fps change over time (a
    moving disc whose matte is the disc), as a live camera's would."""

    def __init__(self, names: tuple[str, ...] = ("cam1",)) -> None:
        self._start = time.monotonic()
        self._pipelines = {n: _status(n, {"source": "0"}) for n in names}
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[int, Any]] = {}

    def _tick(self, status: PipelineStatus) -> PipelineStatus:
        frames = int((time.monotonic() - self._start) * 30)
        return dataclasses.replace(status, frames_out=frames, fps=round(29.0 + (frames % 20) / 10, 1))

    def pipelines(self) -> list[PipelineStatus]:
        with self._lock:
            self._pipelines = {n: self._tick(s) for n, s in self._pipelines.items()}
            return list(self._pipelines.values())

    def add_pipeline(self, name: str, settings: dict[str, Any]) -> None:
        if not isinstance(settings.get("source", "0"), str):
            raise ConfigError("settings: source: expected a camera or file")
        with self._lock:
            self._pipelines[name] = _status(name, settings)

    def remove_pipeline(self, name: str) -> None:
        with self._lock:
            del self._pipelines[name]

    def restart_pipeline(self, name: str) -> None:
        with self._lock:
            status = self._pipelines[name]
            self._pipelines[name] = dataclasses.replace(status, restarts=status.restarts + 1)

    def latest_frame(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        n = int((time.monotonic() - self._start) * 10)  # a new frame every 100 ms
        with self._lock:
            if name not in self._pipelines:
                return None
            cached = self._frames.get(name)
            if cached is not None and cached[0] == n:
                return cached[1]
            ys, xs = np.indices((120, 160))
            cx = 20 + (n * 7) % 120
            disc = ((xs - cx) ** 2 + (ys - 60) ** 2) < 30**2
            rgb = np.zeros((120, 160, 3), np.uint8)
            rgb[..., 0] = 200
            rgb[..., 2] = (xs * 255 // 160).astype(np.uint8)
            alpha = (disc * 255).astype(np.uint8)
            frame = (rgb, alpha)
            self._frames[name] = (n, frame)
            return frame


@dataclass
class Server:
    url: str
    control: Control
    client: httpx.Client

    def wait_job(self, job_id: int, until: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        """Poll a job until ``until(job)`` holds (bounded); returns the job."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get(f"/jobs/{job_id}").json()
            if until(job) or time.monotonic() > deadline:
                return job
            time.sleep(0.1)


@contextmanager
def running_server(
    root: Path,
    *,
    service: Any = None,
    token: str | None = None,
    host: str = "127.0.0.1",
    max_jobs: int = 1,
    headers: dict | None = None,
    cluster: Any = None,
) -> Iterator[Server]:
    """The control API on loopback; ``host`` is the address the service believes it binds
    (anything but loopback makes it require a token, as a real exposed service would);
    its jobs run on Ray when ``cluster`` (``ClusterSettings``) is given."""
    control = Control.start(
        state=root / "jobs.db",
        roots=[root],
        max_jobs=max_jobs,
        token=token,
        host=host,
        service=service,
        cluster=cluster,
    )
    url, stop = serve_in_thread(create_app(control))
    client = httpx.Client(base_url=url, timeout=30, headers=headers or {})
    try:
        yield Server(url, control, client)
    finally:
        client.close()
        stop()
        control.close()


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in ("done", "failed", "cancelled", "interrupted")

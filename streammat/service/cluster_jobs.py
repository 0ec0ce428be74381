"""File jobs that run on Ray: one job is one file through ``run_cluster``.

A job runs on Ray when its options name a cluster (``"cluster": "local"``, ``"auto"`` or
``"ray://HOST:10001"``), or, for every job, when the service's config has a ``cluster:``
section; that section's other settings (chunk size, actors, retries …) apply to every
job that runs on Ray. ``ClusterJob`` has the face of the ``Pipeline`` the job runner
drives: ``run()`` returns a result with ``complete`` and ``frames_out``, ``stop()`` works
from any thread, and progress arrives after every chunk.

The service connects to Ray on its first cluster job and stays connected, because
starting or joining Ray costs seconds; every later cluster job uses that connection.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import CLUSTER_ADDRESS, ClusterSettings, ProcessConfig
from ..errors import ConfigError, StreammatError

__all__ = ["CLUSTER_OPTION", "ClusterJob", "check_cluster_option", "job_cluster"]

#: the job option that runs a job on Ray, and what it may name
CLUSTER_OPTION = "cluster"
_ADDRESSES = "local, auto or ray://HOST:10001"

_connect_lock = threading.Lock()
_connected: list[str] = []  # the address this process connected to, once it has
#: one cluster run at a time per service: every run starts actors that reserve the CPUs
#: they need, and two runs could each hold some of theirs and wait for the other's
_run_lock = threading.Lock()
#: seconds between looks at the stop event while a job waits for its turn
_TURN_POLL = 0.5


def check_cluster_option(options: dict[str, Any]) -> None:
    """A job's ``cluster`` option, when given, names a Ray address (one ``ConfigError`` line)."""
    address = options.get(CLUSTER_OPTION)
    if address is not None and not (isinstance(address, str) and re.match(CLUSTER_ADDRESS, address)):
        raise ConfigError(f"options: {CLUSTER_OPTION!r} expected {_ADDRESSES}, got {address!r}")


def job_cluster(options: dict[str, Any], service: ClusterSettings | None) -> ClusterSettings | None:
    """Where a job runs: the service's ``cluster:`` settings at the job's address, or None
    (in the service's own process) when neither the job nor the service names a cluster."""
    from ..cluster import RAY_MISSING, ray_missing

    check_cluster_option(options)
    address = options.get(CLUSTER_OPTION)
    if address is None and service is None:
        return None
    if ray_missing():
        raise ConfigError(f"options: {CLUSTER_OPTION!r} {RAY_MISSING}")
    if address is None:
        return service
    return (service or ClusterSettings()).model_copy(update={"address": address})


@dataclass
class ClusterJobResult:
    frames_out: int = 0
    complete: bool = False
    stopped: bool = False


class ClusterJob:
    """One file job on Ray: ``settings`` (a job's ``ProcessConfig``) on ``cluster``."""

    def __init__(
        self, settings: ProcessConfig, cluster: ClusterSettings, on_progress: Callable[[Any], None] | None = None
    ) -> None:
        from ..cluster.runner import check_cluster_format
        from ..cluster.tasks import SEGMENT_SUFFIX
        from ..sinks._codecs import EXTENSIONS

        output = Path(settings.output)
        fmt = settings.format or EXTENSIONS.get(output.suffix.lower())
        self.settings = settings.model_copy(update={"format": fmt})
        check_cluster_format(self.settings)
        if output.suffix.lower() != SEGMENT_SUFFIX[fmt]:
            raise ConfigError(
                f"output: {output.name!r}: a job on Ray writes "
                + " or ".join(f"{f} ({s})" for f, s in SEGMENT_SUFFIX.items())
                + f"; name it {output.stem}{SEGMENT_SUFFIX[fmt]}"
            )
        self.cluster = cluster
        self._on_progress = on_progress
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> ClusterJobResult:
        while not _run_lock.acquire(timeout=_TURN_POLL):
            if self._stop.is_set():
                return ClusterJobResult(stopped=True)
        try:
            return self._run()
        finally:
            _run_lock.release()

    def _run(self) -> ClusterJobResult:
        from ..cluster import run_cluster
        from ..pipeline import Progress

        _connect(self.cluster.address)
        t0 = time.monotonic()
        done = [0]

        def progress(frames: int, total: int | None) -> None:
            done[0] = frames
            if self._on_progress is not None:
                self._on_progress(Progress(frames=frames, total=total, elapsed=time.monotonic() - t0))

        s = self.settings
        result = run_cluster(
            [s.source],
            Path(s.output).parent,
            s,
            self.cluster,
            outputs=[s.output],
            on_progress=progress,
            stop=self._stop,
        )
        outcome = result.files[0]
        if outcome.ok:
            return ClusterJobResult(frames_out=outcome.frames, complete=True)
        if result.stopped:
            return ClusterJobResult(frames_out=done[0], stopped=True)
        raise StreammatError(outcome.error or "the cluster run failed")


def _connect(address: str) -> None:
    """Connect this process to Ray at ``address`` once; later jobs reuse the connection."""
    import ray

    from ..cluster.runner import connect

    with _connect_lock:
        if not ray.is_initialized():
            connect(address)
            _connected[:] = [address]
        elif _connected and _connected[0] != address:
            raise ConfigError(
                f"options: {CLUSTER_OPTION!r}: this service is connected to Ray at {_connected[0]!r}, "
                f"not {address!r}; one service uses one cluster"
            )

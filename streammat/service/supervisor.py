"""The service: named pipelines in one process, sharing their models, each kept running.

``Service(config)`` owns the model pool, the metrics and one ``PipelineRunner`` per
pipeline. Pipelines are isolated: one that fails is restarted with backoff while the
others carry on (``runner.py``). ``reload(config)`` (SIGHUP) restarts only the pipelines
whose settings changed, adds the new ones and stops the removed ones. ``stop()``
(SIGTERM) ends every pipeline, finalizing every recording, within a deadline.

The control API drives the same object: ``pipelines()``, ``add_pipeline``,
``remove_pipeline``, ``restart_pipeline``, ``latest_frame`` and ``config``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..errors import ConfigError
from .config import ServeConfig, ServePipeline, check_unique, pipeline_settings
from .metrics import Metrics
from .pool import ModelLimits, ModelPool, model_key
from .runner import PipelineRunner, PipelineStatus, is_ready

__all__ = ["Service", "PipelineNotFound", "STOP_DEADLINE"]

log = logging.getLogger(__name__)

#: seconds ``stop`` gives the pipelines to finish their recordings (SIGTERM must end the
#: process within 10 s, and exiting takes a moment after this)
STOP_DEADLINE = 8.0
#: seconds a reload waits for a changed pipeline to end before starting its new version
#: (its outputs, e.g. a bound port, must be free again)
RESTART_DEADLINE = 10.0


class PipelineNotFound(ConfigError):
    """No pipeline of that name (the control API answers 404)."""


class Service:
    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.pool = ModelPool(ModelLimits.from_config(config))
        self.metrics = Metrics(self)
        self.started_at = time.time()
        self._runners: dict[str, PipelineRunner] = {}
        self._lock = threading.RLock()  # one change of the pipeline set at a time

    # -- life -----------------------------------------------------------------------
    def start(self) -> None:
        """Start every configured pipeline (each loads or shares its model on its own thread)."""
        with self._lock:
            for name, settings in self.config.pipelines.items():
                self._start(name, settings)

    def stop(self, deadline: float = STOP_DEADLINE) -> bool:
        """Stop every pipeline and finalize its outputs; True when all ended in time."""
        with self._lock:
            runners = list(self._runners.values())
        for r in runners:
            r.stop()
        end = time.monotonic() + deadline
        ok = all(r.join(max(0.0, end - time.monotonic())) for r in runners)
        if not ok:
            late = [r.name for r in runners if not r.join(0)]
            log.error("pipelines still stopping after %.0f s: %s", deadline, ", ".join(late))
        self.pool.close()
        return ok

    @property
    def ready(self) -> bool:
        """Every pipeline runs or has completed its file (a service without pipelines is ready)."""
        return is_ready(s.state for s in self.pipelines())

    # -- what the service reports -----------------------------------------------------
    def pipelines(self) -> list[PipelineStatus]:
        with self._lock:
            runners = list(self._runners.values())
        return [r.status() for r in runners]

    def pipeline(self, name: str) -> PipelineStatus:
        return self._runner(name).status()

    def latest_frame(self, name: str) -> tuple[Any, Any] | None:
        """``(rgb, alpha)`` of the pipeline's last written frame (views, not copies), or None."""
        return self._runner(name).latest_frame()

    # -- changes --------------------------------------------------------------------------
    def add_pipeline(self, name: str, settings: dict[str, Any] | ServePipeline) -> PipelineStatus:
        """Validate and start a new pipeline. Raises ``ConfigError`` (one line)."""
        if not isinstance(settings, ServePipeline):
            settings = pipeline_settings(name, settings)
        with self._lock:
            if name in self._runners:
                raise ConfigError(f"pipeline {name!r} already exists; remove it first or restart it")
            pipelines = {**self.config.pipelines, name: settings}
            self._check(pipelines)
            self.config = self.config.model_copy(update={"pipelines": pipelines})
            return self._start(name, settings).status()

    def remove_pipeline(self, name: str) -> None:
        """Stop a pipeline (its recording is finalized) and forget it."""
        with self._lock:
            runner = self._runner(name)
            self._halt([runner])
            del self._runners[name]
            self.config = self.config.model_copy(
                update={"pipelines": {k: v for k, v in self.config.pipelines.items() if k != name}}
            )
        self.metrics.forget(name)
        self.pool.prune(keep={model_key(s) for s in self.config.pipelines.values()})

    def restart_pipeline(self, name: str) -> PipelineStatus:
        """Stop a pipeline and start it again with the same settings."""
        with self._lock:
            runner = self._runner(name)
            self._halt([runner])
            return self._start(name, runner.settings, previous=runner).status()

    def reload(self, config: ServeConfig) -> list[str]:
        """Apply a new config: restart only the pipelines whose settings changed, start the
        new ones, stop the removed ones. Returns the names that were (re)started or stopped."""
        with self._lock:
            old, new = self.config.pipelines, config.pipelines
            removed = [n for n in old if n not in new]
            changed = [n for n in old if n in new and new[n] != old[n]]
            added = [n for n in new if n not in old]
            if config.http != self.config.http:
                log.warning("http: a new address takes effect when the service restarts (still %s)", self.config.http)
                config = config.model_copy(update={"http": self.config.http})
            self._halt([self._runners[n] for n in removed + changed if n in self._runners])
            previous = {n: self._runners.pop(n) for n in removed + changed if n in self._runners}
            for n in removed:
                self.metrics.forget(n)
            self.config = config
            self.pool.configure(ModelLimits.from_config(config))
            self.pool.prune(keep={model_key(s) for s in new.values()})
            for n in changed + added:
                self._start(n, new[n], previous=previous.get(n))
        if removed or changed or added:
            log.info(
                "reloaded: %d restarted, %d added, %d removed, %d unchanged",
                len(changed),
                len(added),
                len(removed),
                len(new) - len(changed) - len(added),
            )
        return sorted(removed + changed + added)

    # -- internals --------------------------------------------------------------------------
    def _runner(self, name: str) -> PipelineRunner:
        with self._lock:
            runner = self._runners.get(name)
        if runner is None:
            known = ", ".join(sorted(self._runners)) or "none"
            raise PipelineNotFound(f"no pipeline {name!r} (pipelines: {known})")
        return runner

    def _start(self, name: str, settings: ServePipeline, previous: PipelineRunner | None = None) -> PipelineRunner:
        runner = PipelineRunner(name, settings, self)
        if previous is not None:  # counters add up over restarts of the same name
            runner.inherit(previous)
        self._runners[name] = runner
        runner.start()
        return runner

    def _halt(self, runners: list[PipelineRunner]) -> None:
        for r in runners:
            r.stop()
        end = time.monotonic() + RESTART_DEADLINE
        for r in runners:
            if not r.join(max(0.0, end - time.monotonic())):
                log.error("pipeline %s did not stop within %.0f s", r.name, RESTART_DEADLINE)

    def _check(self, pipelines: dict[str, ServePipeline]) -> None:
        """The rules across pipelines (no shared endpoint or output), as for a config file."""
        check_unique(self.config.model_copy(update={"pipelines": pipelines}), "pipeline")

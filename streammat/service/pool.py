"""The service's loaded models: one ``SharedModel`` per (model, device, threads, fast path).

A pipeline asks the pool for its stream's matter; the first pipeline of a key loads the
session, the others reuse it. A model stays loaded while a pipeline uses it, so restarting
a pipeline never reloads its model; ``prune`` unloads the models nobody uses any more
(after a reload removed their last pipeline).

How a shared model's calls are made depends on where it runs (``ModelLimits``):

- on a GPU (and for any runner that takes one call at a time: a fixed-batch graph, the
  torch backend), a call gathers the frames of several streams (up to ``max_batch``,
  default 8), which a GPU needs to be kept busy;
- onnxruntime on the CPU runs one stream's request per call by default, as many calls at
  once as fill the cores, and its calling threads run at a lower OS priority (``nice``).
  A batch costs the CPU as much per frame as single frames or more (the selfie model: 5.4
  ms a frame in batches of 4 against 4.6 alone, its activations outgrow the cache), while a
  stream waits for the whole call; and a call that preempts a thread holding the
  interpreter lock stalls every stream's Python work until that thread runs again. With 4
  cameras on 2 cores (``scripts/bench_serve.py``, alternating runs): one request a call
  at nice 10, 29.3-29.7 frames/s per stream at p95 63-66 ms; batches of up to 8 at nice 10,
  26.0-27.1 at 91-94 ms; batches at normal priority, 24.1-26.3 at 96-112 ms. Other
  programs at normal priority in the same session get the same precedence; the
  scheduler's relief thread keeps the streams moving then (beside two CPU-bound
  processes: 9.0-11.5 frames/s per stream, 4.7 without it, 16.3-17.2 at nice 0), and
  ``model_nice: 0`` turns the whole thing off.

``max_batch`` set in the config applies on every device.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from .config import ServeConfig, ServePipeline
from .scheduler import IN_FLIGHT, ModelScheduler, SharedModel, StreamMatter

__all__ = ["ModelLimits", "ModelPool"]

log = logging.getLogger(__name__)

#: frames of several streams in one call, where calls batch (the GPU runners)
DEVICE_MAX_BATCH = 8


def model_key(settings: ServePipeline) -> tuple[Any, ...]:
    """Pipelines with the same key share one session."""
    return (settings.model, settings.device, settings.backend, settings.threads, settings.fast)


@dataclass(frozen=True)
class ModelLimits:
    """The service-wide settings of its shared models' schedulers."""

    max_batch: int | None = None  # None: DEVICE_MAX_BATCH on a GPU, one request a call on the CPU
    max_wait: float = 0.004  # seconds
    in_flight: int = IN_FLIGHT
    nice: int = 10  # added OS niceness of the CPU calling threads (0: none)

    @classmethod
    def from_config(cls, config: ServeConfig) -> ModelLimits:
        return cls(config.max_batch, config.max_wait_ms / 1000.0, config.in_flight, config.model_nice)

    def batch_for(self, cpu_calls: bool) -> int:
        """Frames a call takes, for a model whose calls run on the CPU or not."""
        if self.max_batch is not None:
            return self.max_batch
        return 1 if cpu_calls else DEVICE_MAX_BATCH


class ModelPool:
    def __init__(self, limits: ModelLimits | None = None) -> None:
        self.limits = limits or ModelLimits()
        self._models: dict[tuple[Any, ...], SharedModel] = {}
        self._users: dict[tuple[Any, ...], int] = {}
        self._lock = threading.Lock()  # held while a model loads: a second user waits for it

    def acquire(self, settings: ServePipeline) -> SharedModel:
        """The shared model for ``settings`` (loaded on first use). Raises ``ModelError``."""
        key = model_key(settings)
        with self._lock:
            shared = self._models.get(key)
            if shared is None:
                shared = self._load(key, settings)
                self._models[key] = shared
            self._users[key] = self._users.get(key, 0) + 1
            return shared

    def release(self, shared: SharedModel) -> None:
        with self._lock:
            self._users[shared.key] = max(0, self._users.get(shared.key, 0) - 1)

    def prune(self, keep: set[tuple[Any, ...]] = frozenset()) -> None:  # type: ignore[assignment]
        """Unload the models no pipeline uses, except those in ``keep`` (the keys of the
        pipelines about to start, so a reload does not load their model twice)."""
        with self._lock:
            idle = [k for k, n in self._users.items() if n == 0 and k in self._models and k not in keep]
            for key in idle:
                log.info("unloading model %s (no pipeline uses it)", self._models[key].label)
                self._models.pop(key).close()
                self._users.pop(key)

    def configure(self, limits: ModelLimits) -> None:
        """New limits for every loaded model (a reloaded config; ``in_flight`` applies to
        the streams that start from now on, ``nice`` to models loaded from now on)."""
        with self._lock:
            self.limits = limits
            for shared in self._models.values():
                shared.scheduler.max_batch = limits.batch_for(shared.cpu_calls)
                shared.scheduler.max_wait = limits.max_wait

    def models(self) -> list[SharedModel]:
        with self._lock:
            return list(self._models.values())

    def close(self) -> None:
        with self._lock:
            for shared in self._models.values():
                shared.close()
            self._models.clear()
            self._users.clear()

    def stream_matter(self, shared: SharedModel, settings: ServePipeline) -> tuple[Any, Any]:
        """``(matter, detach)`` for one stream: the scheduler's view of the shared model
        inside the stream's own matte controls, and the call that ends the stream."""
        from ..compose import with_matte_controls

        if shared.matter is None:  # the exact per-frame path: no batching, the session is shared
            from ..matting import create_matter

            return with_matte_controls(create_matter(shared.session, fast=False), settings), lambda: None
        stream = StreamMatter(shared, in_flight=self.limits.in_flight)
        return with_matte_controls(stream, settings), stream.detach

    def _load(self, key: tuple[Any, ...], settings: ServePipeline) -> SharedModel:
        from ..compose import build_model
        from ..matting.threads import plan_threads

        plan = plan_threads()
        session, matter = build_model(settings, plan=plan)
        provider = (list(session.inner_session.get_providers()) or ["?"])[0]
        staged = all(hasattr(matter, step) for step in ("prepare", "infer", "finish"))
        label = f"{settings.model}@{settings.device}"
        workers = _cpu_calls(session, matter, plan.cores // (settings.threads or plan.onnx_intra_op))
        scheduler = ModelScheduler(
            matter.infer if staged else _unbatched,
            max_batch=self.limits.batch_for(bool(workers)),
            max_wait=self.limits.max_wait,
            name=label,
            workers=workers or 1,
            nice=self.limits.nice if workers else 0,
        )
        log.info("model %s loaded on %s; shared by every pipeline that uses it", label, provider)
        return SharedModel(key, session, matter if staged else None, scheduler, provider, cpu_calls=bool(workers))


def _cpu_calls(session: Any, matter: Any, fill: int) -> int:
    """For onnxruntime on the CPU with a dynamic batch dimension, whose calls share nothing:
    how many calls may run at once, ``fill`` (their onnxruntime threads together fill the
    cores). 0 for the others, which take one call at a time (the GPU runners reuse bound
    buffers and captured graphs, and a fixed-batch graph's chunks go through one padding
    buffer)."""
    choice = getattr(matter, "choice", None)
    if choice is None or choice.runner != "ort-cpu":
        return 0
    if isinstance(session.inner_session.get_inputs()[0].shape[0], int):
        return 0
    return max(1, fill)


def _unbatched(x: Any) -> Any:  # pragma: no cover - the exact path never submits
    raise RuntimeError("the exact per-frame path does not batch across streams")

"""The service's loaded models: one ``SharedModel`` per (model, device, threads, fast path).

A pipeline asks the pool for its stream's matter; the first pipeline of a key loads the
session, the others reuse it. A model stays loaded while a pipeline uses it, so restarting
a pipeline never reloads its model; ``prune`` unloads the models nobody uses any more
(after a reload removed their last pipeline).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .config import ServePipeline
from .scheduler import IN_FLIGHT, ModelScheduler, SharedModel, StreamMatter

__all__ = ["ModelPool"]

log = logging.getLogger(__name__)


def model_key(settings: ServePipeline) -> tuple[Any, ...]:
    """Pipelines with the same key share one session."""
    return (settings.model, settings.device, settings.backend, settings.threads, settings.fast)


class ModelPool:
    def __init__(self, *, max_batch: int, max_wait: float, in_flight: int = IN_FLIGHT) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.in_flight = in_flight
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

    def configure(self, *, max_batch: int, max_wait: float, in_flight: int = IN_FLIGHT) -> None:
        """New batching limits for every loaded model (a reloaded config; ``in_flight``
        applies to the streams that start from now on)."""
        with self._lock:
            self.max_batch, self.max_wait, self.in_flight = max_batch, max_wait, in_flight
            for shared in self._models.values():
                shared.scheduler.max_batch, shared.scheduler.max_wait = max_batch, max_wait

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
        stream = StreamMatter(shared, in_flight=self.in_flight)
        return with_matte_controls(stream, settings), stream.detach

    def _load(self, key: tuple[Any, ...], settings: ServePipeline) -> SharedModel:
        from ..compose import build_model
        from ..matting.threads import plan_threads

        plan = plan_threads()
        session, matter = build_model(settings, plan=plan)
        provider = (list(session.inner_session.get_providers()) or ["?"])[0]
        staged = all(hasattr(matter, step) for step in ("prepare", "infer", "finish"))
        label = f"{settings.model}@{settings.device}"
        scheduler = ModelScheduler(
            matter.infer if staged else _unbatched,
            max_batch=self.max_batch,
            max_wait=self.max_wait,
            name=label,
            workers=_call_threads(session, matter, plan.cores // (settings.threads or plan.onnx_intra_op)),
        )
        log.info("model %s loaded on %s; shared by every pipeline that uses it", label, provider)
        return SharedModel(key, session, matter if staged else None, scheduler, provider)


def _call_threads(session: Any, matter: Any, fill: int) -> int:
    """How many model calls may run at once: ``fill`` (their onnxruntime threads together
    fill the cores) for onnxruntime on the CPU with a dynamic batch dimension, whose calls
    share nothing; one for the others (the GPU runners reuse bound buffers and captured
    graphs, and a fixed-batch graph's chunks go through one padding buffer)."""
    choice = getattr(matter, "choice", None)
    if choice is None or choice.runner != "ort-cpu":
        return 1
    if isinstance(session.inner_session.get_inputs()[0].shape[0], int):
        return 1
    return max(1, fill)


def _unbatched(x: Any) -> Any:  # pragma: no cover - the exact path never submits
    raise RuntimeError("the exact per-frame path does not batch across streams")

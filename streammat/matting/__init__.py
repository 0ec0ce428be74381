"""Matting: a rembg session and a ``Matter`` that turns a ``Batch`` into a ``MattedBatch``.

- ``create_session(model, device=...)`` (``sessions.py``): one rembg session per run.
- ``create_matter(session, fast=True, device="auto", backend="auto")``: the batched fast
  path (``batched.BatchedMatter``) for the model families it knows (``families.py``),
  else the exact per-frame rembg path (``reference.RembgMatter``). ``device`` and
  ``backend`` pick the runner of the batched path (``providers.select_runner``).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigError
from .base import Matter

__all__ = ["Matter", "create_matter"]

log = logging.getLogger(__name__)


def create_matter(session: Any, *, fast: bool = True, device: str = "auto", backend: str = "auto") -> Matter:
    """The matter for ``session``: batched when ``fast`` and the family is known.

    Unknown and custom models (``u2net_custom`` …) take the exact rembg path, with a log
    line that says so; so does ``fast=False``."""
    from .families import family_for, session_name
    from .providers import check_backend, check_device
    from .reference import RembgMatter

    if getattr(session, "inner_session", None) is None or not callable(getattr(session, "predict", None)):
        raise ConfigError(f"create_matter: session must be a session from create_session(...), got {session!r:.60}")
    check_device(device)
    check_backend(backend)
    name = session_name(session)
    if not fast:
        log.info("model %s: exact per-frame rembg path (fast path disabled)", name)
        return RembgMatter(session)
    family = family_for(session)
    if family is None:
        log.info(
            "model %s: no batched implementation for this model; using the exact per-frame rembg path (slower)",
            name,
        )
        return RembgMatter(session)
    from .batched import BatchedMatter

    return BatchedMatter(session, device=device, backend=backend, family=family)

"""Running a pipeline from the command line: signals stop it, they never interrupt a write.

SIGINT (Ctrl-C) and SIGTERM become stop events of the running pipeline: the first one ends
the source and lets the frames already read reach the outputs, the second one stops every
stage at its next item. Either way the outputs are finalized (playable). Before a pipeline
runs (while the model loads) a signal ends the command at once: nothing is written yet.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

_current: list[Any] = []  # the running pipeline, if any
_signals = {"count": 0}


def _handler(signum: int, frame: FrameType | None) -> None:
    _signals["count"] += 1
    if not _current:
        if _signals["count"] == 1:  # the command ends; a second signal must not interrupt that
            raise KeyboardInterrupt
        return
    pipeline = _current[-1]
    if _signals["count"] == 1:
        log.warning("stopping: finishing the frames already read (press Ctrl-C again to stop now)")
        pipeline.stop(drain=True)
    else:
        pipeline.stop()


def install_signal_handlers() -> None:
    """Route SIGINT and SIGTERM to the running pipeline (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)


def run_pipeline(pipeline: Any) -> Any:
    """``pipeline.run()`` with signals routed to it; returns its ``RunResult``."""
    _signals["count"] = 0  # a signal before the run was handled by ending the command
    _current.append(pipeline)
    try:
        return pipeline.run()
    finally:
        _current.remove(pipeline)


def options(args: Any, names: dict[str, str]) -> dict[str, Any]:
    """Settings from parsed arguments: ``names`` maps argument → setting; None is 'not given'."""
    return {field: getattr(args, arg, None) for arg, field in names.items()}

"""What every sink is: open(info) → write(matted batch)* → close(complete=...).

The contract, the same for every sink:

- The constructor checks its arguments and, for files, that the output may be written
  (never an input, an existing output only with ``overwrite``); it acquires nothing.
- ``open(info)`` acquires (files, encoders, windows, sockets) and may be called once.
- ``write(batch)`` consumes every frame of the batch.
- ``close(complete=...)`` flushes and finalizes; it is idempotent, has a deadline and is
  called by the thread that wrote, after its last ``write`` returned. A file sink closed
  with ``complete=False`` (error or Ctrl-C) keeps what plays as ``NAME.partial.EXT``.
- A sink writes one stream: ``open()`` a second time, or ``write()`` after ``close()``,
  raises ``OutputError("<sink>: the sink is closed; a sink writes one stream, create a
  new one")``. ``write()`` before ``open()`` raises ``OutputError`` too.
- A sink is a context manager that closes itself::

      with create_sink("out.mov") as sink:
          sink.open(info)
          for batch in batches:
              sink.write(batch)

  ``__exit__`` closes with ``complete=True`` after a normal exit and ``complete=False``
  when the block raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from ..errors import OutputError
from ..frames import MattedBatch, StreamInfo

__all__ = ["Sink", "SinkLifecycle", "CLOSE_DEADLINE", "run_with_deadline", "closed_error"]

#: seconds ``close()`` may take to flush encoders and write trailers before it gives up
#: (and keeps what plays as partial): a flush is a few frames, far below this even at 4K
CLOSE_DEADLINE = 60.0

_T = TypeVar("_T")


@runtime_checkable
class Sink(Protocol):
    def open(self, info: StreamInfo) -> None:
        """Acquire encoders/sockets. Raises ``OutputError`` (or ``TransportError``)."""
        ...

    def write(self, batch: MattedBatch) -> None:
        """Consume every frame of the batch."""
        ...

    def close(self, *, complete: bool = True) -> None:
        """Flush and finalize. Idempotent. ``complete=False`` marks the output as partial."""
        ...

    @property
    def description(self) -> str:
        """One line for the summary, e.g. ``"out.mov (ProRes 4444, 240 frames)"``."""
        ...


def closed_error(name: str) -> OutputError:
    return OutputError(f"{name}: the sink is closed; a sink writes one stream, create a new one")


class SinkLifecycle:
    """The state rules of the contract above, shared by the sinks.

    A sink calls ``_start_open()`` first in ``open()``, ``_check_open()`` first in
    ``write()`` and returns from ``close()`` unless ``_start_close()`` is true; ``_name``
    is how its errors name it."""

    _state = "new"  # "new" → "open" → "closed"
    _name = "sink"

    def _start_open(self) -> None:
        if self._state != "new":
            raise closed_error(self._name)
        self._state = "open"

    def _check_open(self) -> None:
        if self._state == "closed":
            raise closed_error(self._name)
        if self._state != "open":
            raise OutputError(f"{self._name}: the sink is not open; call open(info) first")

    def _start_close(self) -> bool:
        """True the first time (the caller finalizes), False after that."""
        if self._state == "closed":
            return False
        self._state = "closed"
        return True

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    def close(self, *, complete: bool = True) -> None:  # pragma: no cover - each sink has its own
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(complete=exc_type is None)


def run_with_deadline(work: Callable[[], _T], seconds: float, what: str) -> _T:
    """Run ``work`` in a helper thread and wait at most ``seconds``; raise ``OutputError``
    naming ``what`` when it has not finished (the thread is left to end on its own)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="sm-close", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise OutputError(f"{what} did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]

"""What every source is: open → iterate frames → close.

Each source states its backpressure policy:
- ``"block"``: a slow consumer slows the source, nothing is lost (files).
- ``"latest"``: the source keeps only the newest frame and counts the ones it drops (live).

The lifecycle rule, the same for every source:
- the constructor only checks and stores its arguments (bad ones raise ``ConfigError``);
- ``info`` is None until ``open()`` succeeds, then the ``StreamInfo`` it returned;
- ``open()`` on an open source returns the same ``StreamInfo`` and acquires nothing more;
- an ``open()`` that fails releases what it acquired and leaves the source closed;
- ``close()`` is idempotent and may be called from any thread; ``open()`` after
  ``close()`` raises ``InputError`` (a source is used once: create a new one);
- ``with source:`` opens on entry and closes on exit.

``SourceLifecycle`` implements that rule once; a source supplies ``_open()`` and
``_release()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

from ..errors import ConfigError, InputError
from ..frames import MAX_PIXELS, Frame, StreamInfo

__all__ = [
    "Backpressure",
    "Source",
    "SourceLifecycle",
    "check_frame_size",
    "check_max_pixels",
    "check_positive",
    "check_spec",
    "check_threads",
]

Backpressure = Literal["block", "latest"]


@runtime_checkable
class Source(Protocol):
    #: how the source behaves when the consumer is slower than it
    backpressure: Backpressure
    #: None before ``open()``, the stream description after
    info: StreamInfo | None

    def open(self) -> StreamInfo:
        """Acquire the device/file/socket and describe the stream. Raises ``InputError``."""
        ...

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames in presentation order until the end of the stream."""
        ...

    def close(self) -> None:
        """Release everything. Idempotent; also safe from another thread to stop iteration."""
        ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...

    @property
    def stats(self) -> dict[str, int]:
        """Counters for the summary: e.g. ``{"decoded": n, "skipped": k, "dropped": d}``."""
        ...


class SourceLifecycle:
    """The shared ``open``/``close``/``with`` rule (module docstring). Subclasses set
    ``name`` and implement ``_open() -> StreamInfo`` and ``_release()``."""

    name: str = ""
    info: StreamInfo | None = None
    _shut = False  # close() was called: the source cannot be opened again

    def open(self) -> StreamInfo:
        if self._shut:
            raise InputError(f"{self.name}: the source is closed; create a new one")
        if self.info is None:
            try:
                self.info = self._open()
            except BaseException:
                self.close()
                raise
        return self.info

    def close(self) -> None:
        self._shut = True
        self._release()

    def __enter__(self):  # noqa: ANN204 - the subclass's own type
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> StreamInfo:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# -- argument checks shared by the sources -------------------------------------------------
def check_spec(value: object, *, argument: str = "path") -> str:
    """A path or URL given as ``str`` or ``os.PathLike``, not empty."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        kind = type(value).__name__
        raise ConfigError(f"{argument}: expected a file path or URL (str or Path), got {kind} {value!r}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{argument}: expected a file path or URL, got {value!r}")
    return text


def check_max_pixels(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"max_pixels: expected a positive int (default {MAX_PIXELS}, 7680x4320), got {value!r}")
    return value


def check_threads(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"threads: expected an int >= 0 (0 = automatic), got {value!r}")
    return value


def check_positive(value: object, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{argument}: expected a positive number of seconds, got {value!r}")
    return float(value)


def check_frame_size(name: str, width: int, height: int, max_pixels: int) -> None:
    """``InputError`` for a frame above the pixel limit, before anything that size exists."""
    if width * height > max_pixels:
        raise InputError(
            f"{name}: frame size {width}x{height} ({width * height} pixels) is above the limit of "
            f"{max_pixels} pixels (7680x4320 = {MAX_PIXELS} by default); allow more with --max-pixels"
        )

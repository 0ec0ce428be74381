"""A one-line progress display for terminals (frames, fps, ETA); silent otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..pipeline import Progress


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressBar:
    """Redraws at most ``hz`` times a second on a TTY; prints nothing when not a TTY."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None, hz: float = 4.0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._interval = 1.0 / hz
        self._last = 0.0
        self._drawn = False

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self._interval and not (p.total and p.frames >= p.total):
            return
        self._last = now
        self.stream.write("\r" + self.render(p) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    @staticmethod
    def render(p: Progress, width: int = 24) -> str:
        fps = p.frames / p.elapsed if p.elapsed > 0 else 0.0
        parts = []
        if p.total:
            frac = min(1.0, p.frames / p.total)
            filled = int(frac * width)
            parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {p.frames}/{p.total} {frac:4.0%}")
            eta = (p.total - p.frames) / fps if fps > 0 else 0.0
            parts.append(f"{fps:5.1f} fps  ETA {_clock(eta)}")
        else:
            parts.append(f"{p.frames} frames  {fps:5.1f} fps  {_clock(p.elapsed)}")
        if p.latency is not None:
            parts.append(f"latency {p.latency * 1000:.0f} ms")
        if p.dropped:
            parts.append(f"dropped {p.dropped}")
        if p.skipped:
            parts.append(f"skipped {p.skipped}")
        return "  ".join(parts)

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

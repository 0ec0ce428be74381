"""A live preview window (OpenCV ``imshow``) with fps and capture→display latency.

Needs OpenCV with GUI support (``opencv-python``, not ``-headless``) and a display;
``preview_unavailable()`` says why not, and ``open()`` raises ``OutputError`` with that
reason. Only the newest frame of each batch is shown: a preview never adds latency.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from ..errors import OutputError
from ..frames import MattedBatch, StreamInfo
from .base import SinkLifecycle
from .compositing import Compositor, parse_background

__all__ = ["PreviewSink", "preview_unavailable", "checkerboard"]

log = logging.getLogger(__name__)


def preview_unavailable() -> str | None:
    """Why a preview window cannot open in this process, or None when it can."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - a dependency
        return "OpenCV is not installed"
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip().upper()
            break
    if gui in ("", "NONE") or "headless" in (getattr(cv2, "__file__", "") or "").lower():
        return (
            "this OpenCV has no GUI support (opencv-python-headless); install opencv-python "
            "for a preview window, or use --publish / -o / --virtual-camera"
        )
    has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux") and not has_display:
        return "no display (DISPLAY is not set); run it on a desktop session or forward X11"
    return None


def checkerboard(width: int, height: int, cell: int = 16) -> np.ndarray:
    """The usual grey checkerboard behind transparent pixels, ``(H,W,3)`` uint8."""
    y, x = np.indices((height, width))
    light = ((y // cell + x // cell) % 2).astype(bool)
    out = np.empty((height, width, 3), np.uint8)
    out[...] = 102
    out[light] = 153
    return out


class PreviewSink(SinkLifecycle):
    """Shows the composite (over ``background``, default a checkerboard) in a window.

    ``on_quit`` is called when the user presses q/Esc or closes the window (the CLI stops
    the pipeline). ``show`` replaces ``cv2.imshow`` + ``waitKey`` (``show(bgr) -> key``),
    for tests and embedding."""

    def __init__(
        self,
        title: str = "streammat",
        *,
        background: str | None = None,
        on_quit: Callable[[], None] | None = None,
        show: Callable[[np.ndarray], int] | None = None,
    ) -> None:
        self.title = title
        self.background = background
        self.on_quit = on_quit
        self.show = show
        self.frames = 0
        self._compositor = Compositor(parse_background(background)) if background else None
        self._size: tuple[int, int] | None = None
        self._checker: np.ndarray | None = None
        self._fps = 0.0
        self._last: float | None = None
        self._window = False
        self._name = f"preview {title!r}"

    def open(self, info: StreamInfo) -> None:
        self._start_open()
        if self.show is None:
            reason = preview_unavailable()
            if reason:
                self._state = "closed"
                raise OutputError(f"preview: {reason}")
            import cv2

            try:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            except cv2.error as exc:
                self._state = "closed"
                raise OutputError(f"preview: cannot open a window: {exc}".splitlines()[0]) from exc
            self._window = True

    def render(self, batch: MattedBatch) -> np.ndarray:
        """The BGR image shown for ``batch``: its newest frame composited, with an overlay."""
        import cv2

        i = len(batch) - 1
        rgb = batch.batch.images_array[i]
        alpha = batch.alpha_array[i]
        h, w = rgb.shape[:2]
        if self._size != (w, h):
            self._size = (w, h)
            if self._compositor is not None:
                self._compositor.prepare(w, h)
            else:
                self._checker = checkerboard(w, h)
        if self._compositor is not None:
            out = self._compositor.apply(rgb, alpha)
        else:
            from .compositing import composite

            assert self._checker is not None
            out = composite(rgb, alpha, self._checker)
        now = time.monotonic()
        if self._last is not None and now > self._last:
            inst = len(batch) / (now - self._last)
            self._fps = inst if self._fps == 0.0 else 0.9 * self._fps + 0.1 * inst
        self._last = now
        text = f"{self._fps:5.1f} fps"
        caps = batch.batch.capture_times
        if caps and caps[i] is not None:
            text += f"  {1000 * (time.time() - caps[i]):4.0f} ms"
        bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
        cv2.putText(bgr, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(bgr, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        return bgr

    def write(self, batch: MattedBatch) -> None:
        self._check_open()
        bgr = self.render(batch)
        self.frames += len(batch)
        if self.show is not None:
            key = self.show(bgr)
        else:
            import cv2

            cv2.imshow(self.title, bgr)
            key = cv2.waitKey(1)
            if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                key = 27
        if key is not None and (key & 0xFF) in (ord("q"), 27) and self.on_quit is not None:
            log.info("preview closed by the user")
            self.on_quit()

    def close(self, *, complete: bool = True) -> None:
        if not self._start_close():
            return
        if self._window:
            import cv2

            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:  # pragma: no cover - window already gone
                pass

    @property
    def description(self) -> str:
        return f"preview window ({self.frames} frames)"

"""A virtual webcam (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS).

Webcams carry no alpha, so frames are composited over ``background`` (a colour, an image
or ``blur``; default ``blur``, what video calls expect). pyvirtualcam is the optional
extra ``streammat[virtualcam]``; without it ``open()`` raises ``OutputError`` saying so.
The camera keeps the size it was opened with: frames of another size (a reconnected
camera) are resized to it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import OutputError
from ..frames import MattedBatch, StreamInfo
from .base import SinkLifecycle
from .compositing import Compositor, parse_background

__all__ = ["VirtualCameraSink", "INSTALL_HINT"]

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "--virtual-camera needs pyvirtualcam: pip install 'streammat[virtualcam]' "
    "(on Linux also the v4l2loopback kernel module; on Windows/macOS OBS's virtual camera)"
)


class VirtualCameraSink(SinkLifecycle):
    """Sends composited RGB frames to a virtual camera ``device`` (None = the first)."""

    def __init__(
        self,
        *,
        background: str | None = "blur",
        device: str | None = None,
        backend: str | None = None,
        fps: float | None = None,
    ) -> None:
        self.background = background or "blur"
        self.device = device
        self.backend = backend
        self.fps = fps
        self.frames = 0
        self._compositor = Compositor(parse_background(self.background))
        self._cam: Any = None
        self._size: tuple[int, int] | None = None
        self._prepared: tuple[int, int] | None = None
        self._name = f"virtual camera {device or ''}".rstrip()

    def open(self, info: StreamInfo) -> None:
        self._start_open()
        try:
            self._open(info)
        except BaseException:
            self._state = "closed"
            raise

    def _open(self, info: StreamInfo) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise OutputError(INSTALL_HINT) from exc
        fps = self.fps or (float(info.rate) if info.rate else 30.0)
        kwargs: dict[str, Any] = {"fmt": pyvirtualcam.PixelFormat.RGB}
        if self.device:
            kwargs["device"] = self.device
        if self.backend:
            kwargs["backend"] = self.backend
        try:
            self._cam = pyvirtualcam.Camera(info.width, info.height, fps, **kwargs)
        except Exception as exc:  # RuntimeError: no loopback device, device busy, …
            raise OutputError(f"virtual camera: {exc}".splitlines()[0]) from exc
        self._size = (info.width, info.height)
        log.info("virtual camera %s: %dx%d at %g fps", getattr(self._cam, "device", "?"), *self._size, fps)

    def write(self, batch: MattedBatch) -> None:
        self._check_open()
        import cv2

        for i in range(len(batch)):
            rgb = batch.batch.images_array[i]
            alpha = batch.alpha_array[i]
            h, w = rgb.shape[:2]
            if self._prepared != (w, h):
                self._compositor.prepare(w, h)
                self._prepared = (w, h)
            out = self._compositor.apply(rgb, alpha)
            assert self._size is not None
            if (w, h) != self._size:
                out = cv2.resize(out, self._size, interpolation=cv2.INTER_LINEAR)
            self._cam.send(np.ascontiguousarray(out))
            self.frames += 1

    def close(self, *, complete: bool = True) -> None:
        if not self._start_close():
            return
        if self._cam is not None:
            try:
                self._cam.close()
            except Exception as exc:  # noqa: BLE001 - closing must not mask the run's result
                log.warning("virtual camera: close failed: %s", exc)

    @property
    def description(self) -> str:
        device = getattr(self._cam, "device", None) or self.device or ""
        return f"virtual camera {device} ({self.frames} frames)".replace("  ", " ")

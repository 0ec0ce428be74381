"""The OpenCV side of the camera source: the capture interface it needs, the default
opener, and small guarded calls (a capture backend may raise anywhere)."""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol

import numpy as np

__all__ = ["Capture", "default_opener", "bgr_to_rgb", "same_image", "set_prop", "get_prop", "release_capture"]

# OpenCV property ids (the values cv2 uses), so an injected capture needs no cv2 import
PROP_WIDTH, PROP_HEIGHT, PROP_FPS, PROP_BUFFERSIZE = 3, 4, 5, 38


class Capture(Protocol):
    """What ``CameraSource`` needs from a capture: the ``cv2.VideoCapture`` subset."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, Any]: ...

    def get(self, prop: int) -> float: ...

    def set(self, prop: int, value: float) -> bool: ...

    def release(self) -> None: ...


def quiet_opencv(cv2: Any) -> None:
    """OpenCV prints its own ``[ WARN:0@0.2] ... can't open camera by index`` lines; we
    report camera problems ourselves, in one line, so keep only its errors."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - builds without the logging module
        pass


def default_opener(target: int | str) -> Capture:
    import cv2

    quiet_opencv(cv2)
    if isinstance(target, int) or str(target).startswith("/dev/"):
        # a blocked V4L2 read() otherwise waits 10 s; OpenCV reads this when the camera opens
        os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "1")
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        return cv2.VideoCapture(target, api)
    return cv2.VideoCapture(str(target))


def bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """A capture's BGR, BGRA or grey frame as contiguous RGB. OpenCV's vectorized
    conversion: numpy's reversed-stride copy of a 640x480 frame cost ~2.9 ms of CPU here,
    ``cvtColor`` ~0.06 ms -- per frame, per camera."""
    import cv2

    if image.ndim == 2 or image.shape[2] == 1:  # grey camera
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def same_image(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b)


def set_prop(cap: Capture, prop: int, value: float) -> None:
    try:
        cap.set(prop, float(value))
    except Exception:  # noqa: BLE001 - a request, not a requirement
        pass


def get_prop(cap: Capture, prop: int) -> float:
    try:
        return float(cap.get(prop))
    except Exception:  # noqa: BLE001
        return 0.0


def release_capture(cap: Capture) -> None:
    try:
        cap.release()
    except Exception:  # noqa: BLE001
        pass

"""Synthetic cameras for ``CameraSource(opener=...)`` and small file cameras."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# -- live cameras --------------------------------------------------------------
# ``SyntheticCapture`` is a ``cv2.VideoCapture`` look-alike that delivers numbered frames in
# real time; ``SyntheticCamera`` is an opener for ``CameraSource(opener=...)`` that can
# stall, freeze or disappear once and come back after some failed reopens.

_CAP_PROP_WIDTH, _CAP_PROP_HEIGHT, _CAP_PROP_FPS = 3, 4, 5


def synthetic_frame(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """BGR ``(H,W,3)`` uint8: a gradient, a bright block that moves with ``index``, and
    ``index`` written in the first three pixels of row 0 (grey levels, see ``frame_number``)."""
    y = np.arange(height, dtype=np.uint16)[:, None]
    x = np.arange(width, dtype=np.uint16)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    img[..., 2] = 40
    bw, bh = max(width // 4, 1), max(height // 2, 1)
    x0 = (index * 2) % max(width - bw, 1)
    img[height // 4 : height // 4 + bh, x0 : x0 + bw] = 230
    for k in range(3):
        if k < width:
            img[0, k] = (index >> (8 * k)) & 255
    return img


def frame_number(image) -> int:
    """The index ``synthetic_frame`` wrote into ``image`` (RGB or BGR, numpy or torch)."""
    px = np.asarray(image[0, :3, 0]).astype(np.int64)
    return int(px[0] | (px[1] << 8) | (px[2] << 16))


class SyntheticCapture:
    """A ``cv2.VideoCapture`` look-alike: ``read()`` waits for the next frame of a
    ``fps`` clock, like a camera.

    ``fault`` happens after ``fault_after`` frames: ``"unplug"`` (``read()`` returns
    ``(False, None)``), ``"block"`` (``read()`` blocks until ``release()``/``unblock`` or
    ``block_for`` seconds, then fails), ``"repeat"`` (the identical last frame forever)."""

    def __init__(
        self,
        width: int = 64,
        height: int = 48,
        fps: float = 30.0,
        *,
        counter: list[int] | None = None,
        fault: str | None = None,
        fault_after: int = 0,
        block_for: float = 10.0,
        unblock=None,
        opened: bool = True,
    ) -> None:
        import threading
        import time

        if fault not in (None, "unplug", "block", "repeat"):
            raise ValueError(f"unknown fault {fault!r}")
        self.width, self.height, self.fps = width, height, float(fps)
        self.counter = counter if counter is not None else [0]
        self.fault, self.fault_after, self.block_for = fault, fault_after, block_for
        self._released = threading.Event()
        self._unblock = unblock
        self._opened = opened
        self._t0 = time.monotonic()
        self._reads = 0
        self._last: np.ndarray | None = None
        self.delivered = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._opened and not self._released.is_set()

    def get(self, prop: int) -> float:
        props = {_CAP_PROP_WIDTH: self.width, _CAP_PROP_HEIGHT: self.height, _CAP_PROP_FPS: self.fps}
        return float(props.get(prop, 0.0))

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self._released.set()

    def read(self) -> tuple[bool, np.ndarray | None]:
        import time

        if not self.isOpened():
            return False, None
        due = self._t0 + (self._reads + 1) / self.fps
        now = time.monotonic()
        if due > now:
            if self._released.wait(due - now):
                return False, None
        elif now - due > 1.0 / self.fps:  # the reader fell behind: a camera has moved on
            self._reads = int((now - self._t0) * self.fps) - 1
        self._reads += 1
        if self.fault is not None and self.delivered >= self.fault_after:
            if self.fault == "unplug":
                return False, None
            if self.fault == "repeat" and self._last is not None:
                return True, self._last.copy()
            if self.fault == "block":
                deadline = time.monotonic() + self.block_for
                while time.monotonic() < deadline and not self._released.is_set():
                    if self._unblock is not None and self._unblock.is_set():
                        break
                    time.sleep(0.02)
                return False, None
        index = self.counter[0]
        self.counter[0] += 1
        self.delivered += 1
        self._last = synthetic_frame(index, self.width, self.height)
        return True, self._last.copy()


class SyntheticCamera:
    """An opener for ``CameraSource(opener=...)`` simulating one camera.

    The first capture it opens has ``fault`` after ``fault_after`` frames; then the next
    ``failed_reopens`` opens fail (the camera is gone), and later opens succeed with a
    healthy capture whose frame numbers continue. ``missing=True``: no open ever succeeds."""

    def __init__(
        self,
        width: int = 64,
        height: int = 48,
        fps: float = 30.0,
        *,
        fault: str | None = None,
        fault_after: int = 30,
        failed_reopens: int = 0,
        missing: bool = False,
    ) -> None:
        import threading

        self.width, self.height, self.fps = width, height, fps
        self.fault, self.fault_after = fault, fault_after
        self.failed_reopens = failed_reopens
        self.missing = missing
        self.opens = 0  # every call
        self.failed = 0  # calls that returned a closed capture
        self.counter = [0]
        self.unblock = threading.Event()
        self.captures: list[SyntheticCapture] = []

    def __call__(self, target: int | str) -> SyntheticCapture:
        self.opens += 1
        ok = not self.missing and (self.opens == 1 or self.failed >= self.failed_reopens)
        if not ok:
            self.failed += 1
        cap = SyntheticCapture(
            self.width,
            self.height,
            self.fps,
            counter=self.counter,
            fault=self.fault if self.opens == 1 else None,
            fault_after=self.fault_after,
            unblock=self.unblock,
            opened=ok,
        )
        self.captures.append(cap)
        return cap

    def close(self) -> None:
        """Release every blocked read (call at the end of a test)."""
        self.unblock.set()
        for cap in self.captures:
            cap.release()


def camera_clip(path: str | Path, frames: int = 60, width: int = 64, height: int = 48, fps: float = 30.0) -> Path:
    """Write ``frames`` numbered ``synthetic_frame`` images as a small lossless FFV1 ``.avi``
    (frame numbers survive; or a lossy ``mp4v`` ``.mp4``) that ``CameraSource`` plays as a
    file camera."""
    import cv2

    path = Path(path)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "FFV1"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write this video")
    try:
        for i in range(frames):
            writer.write(synthetic_frame(i, width, height))
    finally:
        writer.release()
    return path

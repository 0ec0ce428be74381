"""What a pipeline's matte looks like now: the foreground over a checkerboard (where the
matte is transparent shows as squares), the matte itself beside it, as JPEG.

The MJPEG stream is a ``multipart/x-mixed-replace`` response every browser shows in an
``<img>``; it sends at most ``PREVIEW_FPS`` images, only when the pipeline has a new frame,
and ends when the client goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

__all__ = ["render", "placeholder", "mjpeg_stream", "BOUNDARY", "PREVIEW_FPS", "PREVIEW_WIDTH"]

BOUNDARY = "streammat-frame"
#: a preview is for looking, not for measuring: few images, small ones
PREVIEW_FPS = 10.0
PREVIEW_WIDTH = 480
_CHECKER = 16  # pixels per checkerboard square
_JPEG_QUALITY = 80


def _checkerboard(height: int, width: int) -> np.ndarray:
    ys, xs = np.indices((height, width))
    light = ((ys // _CHECKER + xs // _CHECKER) % 2).astype(bool)
    board = np.where(light, 204, 153).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.uint8))


def render(rgb: Any, alpha: Any) -> bytes:
    """JPEG of the foreground over a checkerboard with the matte beside it (RGB order in)."""
    import cv2

    image = _as_array(rgb)
    matte = _as_array(alpha)
    if matte.ndim == 3:
        matte = matte[..., 0]
    h, w = image.shape[:2]
    if w > PREVIEW_WIDTH:  # scale down first: compositing and encoding cost scale with pixels
        size = (PREVIEW_WIDTH, max(1, round(h * PREVIEW_WIDTH / w)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        matte = cv2.resize(matte, size, interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    a = matte.astype(np.float32)[..., None] / 255.0
    over = (image * a + _checkerboard(h, w) * (1.0 - a)).astype(np.uint8)
    side = np.concatenate([over, np.repeat(matte[..., None], 3, axis=2)], axis=1)
    ok, data = cv2.imencode(".jpg", side[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def placeholder() -> bytes:
    """Shown until the pipeline has matted its first frame: all checkerboard, empty matte."""
    return render(np.zeros((180, 320, 3), np.uint8), np.zeros((180, 320), np.uint8))


def _part(jpeg: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
    return head.encode("ascii") + jpeg + b"\r\n"


async def mjpeg_stream(
    latest: Callable[[], Any],
    disconnected: Callable[[], Awaitable[bool]],
    *,
    fps: float = PREVIEW_FPS,
) -> AsyncIterator[bytes]:
    """Parts of the MJPEG stream: a new image whenever ``latest()`` returns a new frame, at
    most ``fps`` a second, until the client disconnects."""
    last: Any = None
    first = True
    while not await disconnected():
        frame = latest()
        if frame is None and first:
            yield _part(placeholder())
        elif frame is not None and frame is not last:
            last = frame
            yield _part(await asyncio.to_thread(render, *frame))
        first = False
        await asyncio.sleep(1.0 / fps)

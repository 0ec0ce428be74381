"""The model's input and output around the graph, in two kinds of memory, side by side.

rembg's recipe (``families.py``): resize the frames to the model size, normalise, run the
graph, turn its first output into uint8 masks, resize them back to the frame size.

- **Host arrays** (numpy and OpenCV): the CPU path, whichever runner runs the graph there
  (onnxruntime, or the torch backend on the CPU). It needs no torch, whose import alone
  takes about 2 s here — longer than matting a short clip.
- **torch tensors**: batches that live on a CUDA device from upload to alpha (``gpu.py``);
  one copy back at the end.

One resize, two executions. rembg resizes with PIL's LANCZOS; here an image is first
halved (means of 2 pixels, the antialiasing) along each side that stays at least twice its
target, then taken to the target by bicubic interpolation (``_resize_plan``). The host runs the plan
with OpenCV; the device applies the same OpenCV filters as two matrices
(``resize_matrices``), so the CPU and CUDA paths agree within a level. The masks stay within
the bounds ``tests/test_batched.py`` states against rembg. PIL's antialiased bicubic (what
torch's ports) took 22 ms per 720p frame here, against about 2 ms for torch's and OpenCV's.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from .families import Family

if TYPE_CHECKING:
    import torch

__all__ = [
    "preprocess",
    "postprocess",
    "resize_masks",
    "preprocess_array",
    "postprocess_array",
    "resize_masks_array",
    "resize_plane",
    "resize_matrices",
]

#: OpenCV's bicubic coefficient
_CUBIC_A = -0.75


def _resize_plan(src: tuple[int, int], dst: tuple[int, int]) -> list[tuple[int, int]]:
    """The sizes the image is halved to before the bicubic step: each side is halved while
    it stays at least twice its target."""
    (h, w), (height, width) = src, dst
    halves = []
    while h >= 2 * height or w >= 2 * width:
        h, w = (h // 2 if h >= 2 * height else h), (w // 2 if w >= 2 * width else w)
        halves.append((h, w))
    return halves


# -- host arrays ------------------------------------------------------------------------


def resize_plane(src: np.ndarray, dst: np.ndarray) -> None:
    """One ``(H,W)`` or ``(H,W,3)`` uint8 image resized into ``dst`` (``_resize_plan``)."""
    import cv2

    if src.shape[:2] == dst.shape[:2]:
        dst[...] = src
        return
    for h, w in _resize_plan(src.shape[:2], dst.shape[:2]):
        src = cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)  # 5x faster than INTER_AREA
    cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_CUBIC)


def preprocess_array(images: np.ndarray, family: Family) -> np.ndarray:
    """``(N,H,W,3)`` uint8 frames → the model input, float32, contiguous."""
    n = images.shape[0]
    h, w = family.size
    x = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        resize_plane(images[i], x[i])
    std = np.asarray(family.std, np.float32)
    if family.scale == "max":  # rembg: im / max(im.max(), 1e-6), per image
        peak = np.maximum(x.reshape(n, -1).max(axis=1).astype(np.float32), 1e-6)
    else:
        peak = np.full(n, 255.0, np.float32)
    gain = (1.0 / (peak[:, None] * std)).astype(np.float32)  # (N,3)
    bias = np.asarray(family.mean, np.float32) / std
    # a float32 copy first, then one scalar where it can be: numpy's mixed uint8 x float32
    # loops and its broadcasts are 10x slower here than a scalar multiply
    if family.layout == "NCHW":
        out = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        bias = bias.reshape(1, 3, 1, 1)
    else:
        out = x.astype(np.float32)
    if np.all(gain == gain[0, 0]):
        out *= gain[0, 0]
    else:
        out *= gain[:, :, None, None] if family.layout == "NCHW" else gain[:, None, None, :]
    if family.mean != (0.0, 0.0, 0.0):
        out -= bias
    return out


def postprocess_array(raw: np.ndarray, family: Family) -> np.ndarray:
    """The model's first output → ``(N,h,w)`` uint8 masks at model resolution (rembg's math)."""
    pred = (raw[:, 0] if family.layout == "NCHW" else raw[..., 0]).astype(np.float32)
    if family.sigmoid:
        pred = 1.0 / (1.0 + np.exp(-pred))
    if family.minmax:
        flat = pred.reshape(pred.shape[0], -1)
        lo = flat.min(axis=1).reshape(-1, 1, 1)
        hi = flat.max(axis=1).reshape(-1, 1, 1)
        pred = (pred - lo) / np.maximum(hi - lo, 1e-12)
    # rembg: (pred * 255).astype("uint8") truncates; clip first so casts stay defined
    return (np.clip(pred, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize_masks_array(masks: np.ndarray, out: np.ndarray) -> None:
    """``(N,h,w)`` uint8 masks → ``out`` ``(N,H,W)`` uint8."""
    for i in range(masks.shape[0]):
        resize_plane(masks[i], out[i])


# -- the same resize as matrices --------------------------------------------------------


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """OpenCV's bilinear interpolation along one axis: at a 2x shrink, the mean of 2 pixels."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        pos = (d + 0.5) * scale - 0.5
        base = math.floor(pos)
        x = pos - base
        for k, c in ((0, 1.0 - x), (1, x)):
            m[d, min(max(base + k, 0), n_in - 1)] += c
    return m


def _cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """OpenCV's bicubic interpolation along one axis (pixel centres aligned, edges replicated)."""
    a, scale = _CUBIC_A, n_in / n_out
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        pos = (d + 0.5) * scale - 0.5
        base = math.floor(pos)
        x = pos - base
        c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        c1 = ((a + 2) * x - (a + 3)) * x * x + 1
        c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        for k, c in zip(range(-1, 3), (c0, c1, c2, 1.0 - c0 - c1 - c2), strict=True):
            m[d, min(max(base + k, 0), n_in - 1)] += c
    return m


@functools.lru_cache(maxsize=16)
def resize_matrices(src: tuple[int, int], dst: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``: float32 matrices with ``rows @ image @ cols.T`` = ``resize_plane``
    of an ``(H,W)`` image (to a level: OpenCV rounds between its steps)."""
    halves = _resize_plan(src, dst)
    sizes = [src, *halves, dst]
    steps = [_linear_matrix] * len(halves) + [_cubic_matrix]
    rows = cols = None
    for step, (h, w), (out_h, out_w) in zip(steps, sizes, sizes[1:], strict=False):
        r, c = step(h, out_h), step(w, out_w)
        rows = r if rows is None else r @ rows
        cols = c if cols is None else c @ cols
    assert rows is not None and cols is not None
    return rows.astype(np.float32), cols.astype(np.float32)


def _resize_tensor(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(...,H,W)`` float → ``(...,height,width)`` float, rounded to uint8 levels."""
    import torch

    rows, cols = resize_matrices(tuple(x.shape[-2:]), (height, width))
    r = torch.from_numpy(rows).to(x.device)
    c = torch.from_numpy(cols).to(x.device)
    return torch.matmul(torch.matmul(r, x), c.T).round_().clamp_(0, 255)


# -- torch tensors (CUDA) ---------------------------------------------------------------


def preprocess(images: torch.Tensor, family: Family) -> torch.Tensor:
    """``preprocess_array`` on torch tensors, on their device (float32 from the start)."""
    import torch

    n = images.shape[0]
    h, w = family.size
    x = images.permute(0, 3, 1, 2)  # (N,3,H,W) view, channels-last in memory
    if tuple(x.shape[2:]) != (h, w):
        x = _resize_tensor(x.float(), h, w)
    dev = x.device
    mean = torch.tensor(family.mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(family.std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    if family.scale == "max":
        peak = x.reshape(n, -1).amax(dim=1).to(torch.float32).clamp_min(1e-6).view(n, 1, 1, 1)
    else:
        peak = torch.full((n, 1, 1, 1), 255.0, device=dev)
    gain = 1.0 / (peak * std)  # (N,3,1,1)
    bias = mean / std
    if family.layout == "NCHW":
        out = torch.empty((n, 3, h, w), dtype=torch.float32, device=dev)
        torch.mul(x, gain, out=out)
    else:
        out = torch.empty((n, h, w, 3), dtype=torch.float32, device=dev)
        torch.mul(x.permute(0, 2, 3, 1), gain.view(n, 1, 1, 3), out=out)
        bias = bias.view(1, 1, 1, 3)
    if family.mean != (0.0, 0.0, 0.0):
        out.sub_(bias)
    return out


def postprocess(raw: torch.Tensor, family: Family) -> torch.Tensor:
    """``postprocess_array`` on torch tensors, on their device."""
    import torch

    pred = raw[:, 0] if family.layout == "NCHW" else raw[..., 0]
    pred = pred.to(torch.float32)
    if family.sigmoid:
        pred = torch.sigmoid(pred)
    if family.minmax:
        flat = pred.reshape(pred.shape[0], -1)
        lo = flat.amin(dim=1).view(-1, 1, 1)
        hi = flat.amax(dim=1).view(-1, 1, 1)
        pred = (pred - lo) / (hi - lo).clamp_min(1e-12)
    return (pred.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``resize_masks_array`` on torch tensors, on their device."""
    import torch

    if tuple(masks.shape[1:]) == (height, width):
        return masks
    return _resize_tensor(masks.float(), height, width).to(torch.uint8)

"""Feathering: a Gaussian blur of a matte's edges, on the host or on the device.

One kernel (``feather_kernel``: size ``2r+1``, sigma ``r/2``, edges replicated) and two
array backends. On the host, OpenCV's ``GaussianBlur`` (about 6 ms per 720p frame on
two cores, twenty times faster than a torch convolution there). On a device, torch
repeats OpenCV's arithmetic for uint8 images exactly, so a device-resident matte is
feathered where it lives and both give the same levels (``gaussian_blur_torch``, also
the device compositor's background blur): the taps are quantised to
1/256 (``fixed_point_taps``), the row pass keeps 8 fraction bits, the column pass 16,
and the result is rounded half up. Every partial sum is an integer below 2**24, so
float32 holds it exactly; the passes are shifted multiply-adds rather than a
convolution, because cuDNN may run convolutions in TF32, which would round them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["feather", "feather_kernel", "feather_host", "feather_torch", "fixed_point_taps", "gaussian_blur_torch"]

#: fraction bits of OpenCV's fixed-point Gaussian taps for uint8 images
_TAP_BITS = 8


def feather_kernel(radius: int) -> tuple[int, float]:
    """``(size, sigma)`` of the feather of ``radius`` pixels: ``2r+1`` taps, sigma ``r/2``
    (at least 0.5, so radius 1 still blurs)."""
    return 2 * radius + 1, max(radius / 2.0, 0.5)


def fixed_point_taps(size: int, sigma: float) -> list[int]:
    """The 1-D Gaussian of ``size`` taps and positive ``sigma`` in units of 1/256, as
    OpenCV quantises it for uint8 images: rounded from the outside in, each tap carrying
    the previous rounding error, and the centre tap making the sum exactly 256."""
    centre = (size - 1) / 2.0
    exact = [math.exp(-((i - centre) ** 2) / (2.0 * sigma * sigma)) for i in range(size)]
    total = sum(exact)
    one = 1 << _TAP_BITS
    taps = [0] * size
    err = 0.0
    for i in range(size // 2):
        wanted = exact[i] / total * one + err
        taps[i] = taps[size - 1 - i] = round(wanted)  # half to even, as OpenCV's cvRound
        err = wanted - taps[i]
    taps[size // 2] = one - 2 * sum(taps[: size // 2])
    return taps


def feather_host(alpha: np.ndarray, radius: int) -> None:
    """Feather each ``(H,W)`` uint8 mask of ``(N,H,W)`` ``alpha`` in place with OpenCV."""
    import cv2

    size, sigma = feather_kernel(radius)
    for i in range(alpha.shape[0]):
        cv2.GaussianBlur(alpha[i], (size, size), sigma, dst=alpha[i], borderType=cv2.BORDER_REPLICATE)


def gaussian_blur_torch(x: torch.Tensor, size: int, sigma: float, *, border: str = "replicate") -> torch.Tensor:
    """OpenCV's ``GaussianBlur`` of ``(B,H,W)`` uint8 ``x`` with a ``size``-tap kernel of
    positive ``sigma``, in torch on ``x``'s device, level for level. ``border``:
    ``"replicate"`` (``BORDER_REPLICATE``) or ``"reflect"`` (``BORDER_REFLECT_101``,
    OpenCV's default)."""
    import torch

    taps = fixed_point_taps(size, sigma)
    n, h, w = x.shape
    padded = x.to(torch.float32).index_select(2, _padding(w, size // 2, border, x.device))
    rows = torch.zeros((n, h, w), dtype=torch.float32, device=x.device)
    for i, tap in enumerate(taps):
        rows.add_(padded[:, :, i : i + w], alpha=tap)  # units of 1/256
    padded = rows.index_select(1, _padding(h, size // 2, border, x.device))
    cols = torch.full((n, h, w), float(1 << (2 * _TAP_BITS - 1)), device=x.device)  # a half, to round
    for i, tap in enumerate(taps):
        cols.add_(padded[:, i : i + h], alpha=tap)  # units of 1/65536
    return cols.mul_(1.0 / (1 << 2 * _TAP_BITS)).floor_().to(torch.uint8)


def _padding(length: int, r: int, border: str, device: torch.device) -> torch.Tensor:
    """The source index of each of ``length + 2r`` padded positions, as OpenCV's
    ``borderInterpolate`` places them (for any ``r``, also past the far edge)."""
    import cv2
    import torch

    kind = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}[border]
    if length == 1:
        return torch.zeros(length + 2 * r, dtype=torch.long, device=device)
    return torch.tensor([cv2.borderInterpolate(j, length, kind) for j in range(-r, length + r)], device=device)


def feather_torch(alpha: torch.Tensor, radius: int) -> None:
    """Feather ``(N,H,W)`` uint8 ``alpha`` in place with torch on its own device, level
    for level as ``feather_host``."""
    size, sigma = feather_kernel(radius)
    alpha.copy_(gaussian_blur_torch(alpha, size, sigma))


def feather(alpha: Any, radius: int) -> None:
    """Feather ``(N,H,W)`` uint8 ``alpha`` in place where it lives: OpenCV for numpy arrays
    and host tensors, torch on a device."""
    if radius <= 0:
        return
    if isinstance(alpha, np.ndarray):
        feather_host(alpha, radius)
    elif alpha.device.type == "cpu":
        feather_host(alpha.numpy(), radius)
    else:
        feather_torch(alpha, radius)

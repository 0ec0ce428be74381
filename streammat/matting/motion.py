"""Temporal smoothing of a matte that follows motion instead of trailing it.

A plain exponential moving average (``ema = k·ema + (1-k)·mask``) stops a still person's
edge from shimmering, but a moving edge drags a ghost of where it was. ``MotionSmoother``
blends each pixel with its history only as much as the frame stayed the same there:
the weight is ``strength · clamp(1 - d/motion, 0, 1)``, where ``d`` is the frame-to-frame
difference of a coarse grey copy of the frames (mean over a 3×3 neighbourhood of cells,
so sensor noise does not count as motion). Still regions get the full ``strength``;
where the frame changed by ``motion`` grey levels or more the new mask is taken as is.

It works on the coarse grid of ``cells.py``: the history is kept per cell, and the
correction (smoothed minus new coarse mask) is interpolated back to full resolution
only in cells where it is at least half a grey level.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .cells import Cells, box_mean, sample, sample_mean

__all__ = ["MotionSmoother", "DEFAULT_STRENGTH", "DEFAULT_MOTION"]

#: defaults chosen on ``scripts/bench_quality.py`` (720p person clips, selfie model)
DEFAULT_STRENGTH = 0.8
DEFAULT_MOTION = 12.0
DEFAULT_SUBSAMPLE = 8

#: the Rec. 601 luma weights for the grey copy
_LUMA = (0.299, 0.587, 0.114)


class MotionSmoother:
    """``smoother(images, alpha) -> alpha`` per batch, batches in time order.

    ``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8 on one device;
    returns a new ``(N,H,W)`` uint8 alpha. ``strength`` in ``[0,1)`` is the weight of
    the history where nothing moves (0: off); ``motion`` the grey-level change (0..255)
    at which a pixel counts as moving. ``reset()`` forgets the history (a cut, a new
    stream); a change of frame size or device resets it too."""

    def __init__(
        self,
        strength: float = DEFAULT_STRENGTH,
        *,
        motion: float = DEFAULT_MOTION,
        subsample: int = DEFAULT_SUBSAMPLE,
    ) -> None:
        if not 0.0 <= strength < 1.0:
            raise ConfigError(f"smoothing strength: expected 0 <= strength < 1, got {strength}")
        if not motion > 0:
            raise ConfigError(f"smoothing motion: expected grey levels > 0, got {motion}")
        if int(subsample) != subsample or subsample < 1:
            raise ConfigError(f"smoothing subsample: expected a whole number >= 1, got {subsample}")
        self.strength = float(strength)
        self.motion = float(motion)
        self.subsample = int(subsample)
        self._grey: torch.Tensor | None = None  # (h,w) coarse grey of the last frame, 0..255
        self._history: torch.Tensor | None = None  # (h,w) smoothed coarse mask, 0..255
        self._key: tuple[int, int, torch.device] | None = None

    def reset(self) -> None:
        """Forget the history: the next frame passes unchanged."""
        self._grey = None
        self._history = None

    def __call__(self, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"expected images (N,H,W,3) uint8, got {tuple(images.shape)} {images.dtype}")
        if alpha.dtype != torch.uint8 or tuple(alpha.shape) != tuple(images.shape[:3]):
            raise ValueError(f"expected alpha {tuple(images.shape[:3])} uint8, got {tuple(alpha.shape)} {alpha.dtype}")
        n = images.shape[0]
        key = (int(images.shape[1]), int(images.shape[2]), images.device)
        if key != self._key:
            self.reset()
            self._key = key
        if n == 0:
            return alpha.clone()
        s = self.subsample
        weights = torch.tensor(_LUMA, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
        grey = (sample_mean(images, s) * weights).sum(1, keepdim=True).mul_(255.0)  # (N,1,h,w)
        mask = sample(alpha, s).to(torch.float32)  # (N,h,w)
        previous = grey.new_empty(grey.shape)
        previous[1:] = grey[:-1]
        previous[0] = grey[0] if self._grey is None else self._grey
        change = box_mean((grey - previous).abs_(), 1)[:, 0]
        keep = (1.0 - change / self.motion).clamp_(0.0, 1.0).mul_(self.strength)
        if self._history is None:
            keep[0] = 0.0  # nothing to blend the first frame with
        smoothed = torch.empty_like(mask)
        history = mask[0] if self._history is None else self._history
        for i in range(n):  # the recursion runs in time order, on the coarse grid only
            history = torch.lerp(mask[i], history, keep[i])
            smoothed[i] = history
        self._history = history.clone()
        self._grey = grey[-1, 0].clone()
        correction = (smoothed - mask).unsqueeze(1)  # (N,1,h,w)
        # cells whose pixels the interpolated correction reaches: a 3×3 neighbourhood
        selected = box_mean((correction.abs() >= 0.5).to(torch.float32), 1)[:, 0] > 0
        out = alpha.clone()
        cells = Cells(selected, s)
        if cells.count == 0:
            return out
        values = cells.pixels(alpha).to(torch.float32).add_(cells.upsample(correction)[0])
        cells.put(out, values.round_().clamp_(0.0, 255.0))
        return out

"""Matte quality over time: the controls OBS users rely on, as a wrapper around any Matter.

``TemporalMatter(inner, smoothing=, threshold=, feather=, every=)`` post-processes the
inner matter's alpha frame by frame, in this order:

1. ``every=N``: run the inner matter on every N-th frame only and reuse its mask on the
   frames in between (a live stream cannot interpolate without waiting for the future);
2. ``smoothing`` in ``[0, 1)``: exponential moving average of the mask,
   ``ema = smoothing * ema + (1 - smoothing) * mask`` (0 = off, the default; it suits
   live cameras, not files);
3. ``threshold`` in ``(0, 1)``: binarize the smoothed mask (``alpha >= threshold``);
4. ``feather`` (pixels): soften the edges with a Gaussian blur of that radius.

The state (EMA, last mask) resets when the frame size changes or after a gap in the pts
longer than ``reset_after`` seconds (a camera that was reconnected), so a stale mask never
bleeds into a new scene. Math is vectorized torch on preallocated float32 buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..frames import Batch, MattedBatch
from .base import Matter

__all__ = ["TemporalMatter"]

log = logging.getLogger(__name__)


class TemporalMatter:
    """Temporal smoothing, threshold, feather and every-N reuse around ``inner``."""

    def __init__(
        self,
        inner: Matter | Callable[[Batch], MattedBatch],
        *,
        smoothing: float = 0.0,
        threshold: float | None = None,
        feather: int = 0,
        every: int = 1,
        reset_after: float = 1.0,
    ) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"expected 0 <= smoothing < 1, got {smoothing}")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"expected 0 < threshold < 1, got {threshold}")
        if feather < 0:
            raise ValueError(f"expected feather >= 0 pixels, got {feather}")
        if every < 1:
            raise ValueError(f"expected every >= 1, got {every}")
        self.inner = inner
        self.smoothing = float(smoothing)
        self.threshold = threshold
        self.feather = int(feather)
        self.every = int(every)
        self.reset_after = float(reset_after)
        self._kernel = _gaussian_kernel(self.feather) if self.feather else None
        self._size: tuple[int, int] | None = None
        self._ema: torch.Tensor | None = None  # (H,W) float32, 0..255
        self._raw: torch.Tensor | None = None  # last inner mask, (H,W) float32
        self._since_key = 0
        self._last_time: float | None = None
        self._out = torch.empty((0, 0, 0), dtype=torch.float32)  # (N,H,W) work buffer
        self._mask = torch.empty((0, 0, 0), dtype=torch.bool)
        #: how many frames the inner matter computed / how many reused a mask
        self.computed = 0
        self.reused = 0
        self.resets = 0

    def reset(self) -> None:
        """Forget the temporal state (the next frame is computed and not smoothed)."""
        self._ema = None
        self._raw = None
        self._since_key = 0

    def __call__(self, batch: Batch) -> MattedBatch:
        h, w, n = batch.height, batch.width, len(batch)
        if self._size != (h, w):
            if self._size is not None:
                log.debug("frame size changed to %dx%d: temporal state reset", w, h)
                self.resets += 1
            self.reset()
            self._size = (h, w)
            self._out = torch.empty((0, h, w), dtype=torch.float32)

        # which frames start fresh (gap) and which need the inner matter
        fresh: list[bool] = []
        keys: list[int] = []
        have_raw, since = self._raw is not None, self._since_key
        last = self._last_time
        for i in range(n):
            t = float(batch.pts[i] * batch.time_base)
            gap = last is not None and (t - last > self.reset_after or t < last)
            last = t
            fresh.append(gap)
            if gap:
                have_raw = False
            if not have_raw or since >= self.every - 1:
                keys.append(i)
                have_raw, since = True, 0
            else:
                since += 1
        self._last_time = last

        masks = self._infer(batch, keys)
        if self._out.shape[0] < n:
            self._out = torch.empty((n, h, w), dtype=torch.float32)
            self._mask = torch.empty((n, h, w), dtype=torch.bool)
        out = self._out[:n]
        s = self.smoothing
        k = 0
        for i in range(n):
            if fresh[i]:
                if self._ema is not None:
                    self.resets += 1
                self.reset()
            if k < len(keys) and keys[k] == i:
                if self._raw is None:
                    self._raw = torch.empty((h, w), dtype=torch.float32)
                self._raw.copy_(masks[k])
                k += 1
                self._since_key = 0
                self.computed += 1
            else:
                self._since_key += 1
                self.reused += 1
            assert self._raw is not None
            if self._ema is None:
                self._ema = self._raw.clone()
            elif s > 0.0:
                self._ema.mul_(s).add_(self._raw, alpha=1.0 - s)
            else:
                self._ema.copy_(self._raw)
            out[i].copy_(self._ema)

        if self.threshold is not None:
            torch.ge(out, self.threshold * 255.0, out=self._mask[:n])
            out.copy_(self._mask[:n]).mul_(255.0)
        if self._kernel is not None:
            out = _blur(out, self._kernel)
        return MattedBatch(batch, out.round_().clamp_(0.0, 255.0).to(torch.uint8))

    def _infer(self, batch: Batch, keys: list[int]) -> torch.Tensor:
        """Inner masks of the key frames, ``(len(keys),H,W)`` (uint8 or float)."""
        if not keys:
            return torch.empty((0, batch.height, batch.width))
        if len(keys) == len(batch):
            return self.inner(batch).alpha
        idx = torch.tensor(keys)
        caps = tuple(batch.capture_times[i] for i in keys) if batch.capture_times else ()
        sub = Batch(
            images=batch.images.index_select(0, idx),
            pts=tuple(batch.pts[i] for i in keys),
            time_base=batch.time_base,
            indices=tuple(batch.indices[i] for i in keys),
            capture_times=caps,
        )
        return self.inner(sub).alpha


def _gaussian_kernel(radius: int) -> torch.Tensor:
    sigma = max(radius / 2.0, 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``(N,H,W)`` float with replicated borders."""
    r = (kernel.numel() - 1) // 2
    y = x.unsqueeze(1)
    h, w = x.shape[-2:]
    if r >= min(h, w):  # replicate padding needs r < size: clamp on tiny frames
        r = min(h, w) - 1
        if r <= 0:
            return x
        kernel = _gaussian_kernel(r)
    y = F.pad(y, (r, r, 0, 0), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))
    y = F.pad(y, (0, 0, r, r), mode="replicate")
    y = F.conv2d(y, kernel.view(1, 1, -1, 1))
    return y.squeeze(1)

"""Matte quality over time: the controls OBS users rely on, as a wrapper around any Matter.

``TemporalMatter(inner, smoothing=, threshold=, feather=, every=, motion=, refine=)``
post-processes the inner matter's alpha frame by frame, in this order:

1. ``every=N``: run the inner matter on every N-th frame only and reuse its mask on the
   frames in between (a live stream cannot interpolate without waiting for the future);
2. ``refine="guided"``: the colour-guided filter at full resolution in a band around the
   mask's edges (``refine.py``), so edges follow the picture, not the model's 256-pixel grid;
3. ``smoothing`` in ``[0, 1)``: the weight of the previous matte where nothing moved
   (0 = off, the default for files). Motion-aware (``motion.py``): where the frame changed
   by ``motion`` grey levels the new mask is taken as is, so still edges stop flickering
   and moving ones do not trail; ``motion=None`` is a plain EMA over the whole frame,
   ``ema = smoothing * ema + (1 - smoothing) * mask``;
4. ``threshold`` in ``(0, 1)``: binarize the smoothed mask (``alpha >= threshold``);
5. ``feather`` (pixels): soften the edges with a Gaussian blur of that radius
   (``feather.py``: OpenCV on the host, the same levels in torch on a device).

Every step runs where the batch's frames are: a batch on a CUDA device (``gpu.py``'s
``DeviceResident`` uploads it) is matted, refined, smoothed, thresholded and feathered
there, and its alpha stays on the device for whoever copies it back once. A batch of
numpy arrays (what the CPU path's sources decode) is post-processed with numpy and
OpenCV, without importing torch: torch's many small operations took 1.3 to 5 times its
CPU time there (``scripts/bench_finish.py``); the two agree within a grey level. A batch
of torch tensors on the CPU (a caller's) keeps the torch code.

It is a staged matter like the ones it wraps: ``prepare`` picks the frames the model must
see (``every``, gaps), ``infer`` runs the inner model, ``finish`` applies the controls,
so the pipeline keeps its three-thread overlap. Each step keeps its own state and the
pipeline calls each step in frame order, so the steps never share mutable state.

The state (EMA, last mask) resets when the frame size changes or after a gap in the pts
longer than ``reset_after`` seconds (a camera that was reconnected), so a stale mask never
bleeds into a new scene.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import REFINE_MODES
from ..errors import ConfigError
from ..frames import Batch, MattedBatch
from .base import Matter, StagedMatter
from .cells import CELL
from .feather import feather
from .motion import DEFAULT_MOTION, MotionSmoother
from .refine import guided_refine

if TYPE_CHECKING:
    import torch
#: frames smaller than two of the motion smoother's cells are smoothed whole (a plain EMA)
_MOTION_MIN_SIZE = 2 * CELL

__all__ = ["TemporalMatter"]

log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What ``prepare`` decided for one batch, carried through ``infer`` to ``finish``."""

    keys: list[int]  # frames the inner matter computes
    fresh: list[bool]  # frames before which the state resets (a gap in time)
    sub: Batch | None  # the key frames as a batch
    work: Any = None  # the inner matter's prepared input, then its raw output


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
        motion: float | None = DEFAULT_MOTION,
        refine: str = "none",
        reset_after: float = 1.0,
    ) -> None:
        if not callable(inner):
            raise ConfigError(f"TemporalMatter: inner must be a matter, got {type(inner).__name__}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"smoothing must be in [0, 1), got {smoothing!r}")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
        if isinstance(feather, bool) or not isinstance(feather, int) or feather < 0:
            raise ConfigError(f"feather must be a whole number of pixels >= 0, got {feather!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be an integer >= 1, got {every!r}")
        if refine not in REFINE_MODES:
            raise ConfigError(f"refine must be one of {', '.join(REFINE_MODES)}, got {refine!r}")
        self.inner = inner
        self._staged = isinstance(inner, StagedMatter)
        self.smoothing = float(smoothing)
        self.threshold = threshold
        self.feather = int(feather)
        self.every = int(every)
        self.reset_after = float(reset_after)
        #: the colour-guided edge refinement at full resolution (``refine="guided"``)
        self.refine = refine == "guided"
        #: motion-aware smoothing (``motion`` grey levels count as movement); None: a plain EMA
        self._smoother = MotionSmoother(self.smoothing, motion=motion) if motion is not None else None
        # prepare's state: which frames need the model
        self._p_size: tuple[int, int] | None = None
        self._p_have_mask = False
        self._p_since = 0
        self._p_last_time: float | None = None
        # finish's state: the running matte, numpy arrays or torch tensors as the frames come
        self._size: tuple[int, int, bool] | None = None  # frame size, and numpy or not
        self._ema: Any = None  # (H,W) float32, 0..255
        self._raw: Any = None  # last inner mask, (H,W) uint8
        #: how many frames the inner matter computed / how many reused a mask
        self.computed = 0
        self.reused = 0
        self.resets = 0

    def reset(self) -> None:
        """Forget the temporal state (the next frame is computed and not smoothed)."""
        self._p_have_mask = False
        self._p_since = 0
        self._forget()

    # -- the three steps ----------------------------------------------------------
    def prepare(self, batch: Batch) -> _Plan:
        size = (batch.height, batch.width)
        if self._p_size != size:
            self._p_have_mask, self._p_since, self._p_size = False, 0, size
        fresh: list[bool] = []
        keys: list[int] = []
        last = self._p_last_time
        for i in range(len(batch)):
            t = float(batch.pts[i] * batch.time_base)
            gap = last is not None and (t - last > self.reset_after or t < last)
            last = t
            fresh.append(gap)
            if gap:
                self._p_have_mask = False
            if not self._p_have_mask or self._p_since >= self.every - 1:
                keys.append(i)
                self._p_have_mask, self._p_since = True, 0
            else:
                self._p_since += 1
        self._p_last_time = last
        sub = None if not keys else (batch if len(keys) == len(batch) else _select(batch, keys))
        plan = _Plan(keys, fresh, sub)
        if sub is not None:
            plan.work = self.inner.prepare(sub) if self._staged else sub  # type: ignore[union-attr]
        return plan

    def infer(self, plan: _Plan) -> _Plan:
        if plan.sub is not None:
            plan.work = self.inner.infer(plan.work) if self._staged else self.inner(plan.work)  # type: ignore[union-attr]
        return plan

    def finish(self, batch: Batch, plan: _Plan) -> MattedBatch:
        h, w = batch.height, batch.width
        host = batch.array_backed  # numpy and OpenCV, else torch where the tensors are
        masks: Any = None
        if plan.sub is not None:
            matted = self.inner.finish(plan.sub, plan.work) if self._staged else plan.work  # type: ignore[union-attr]
            masks = matted.alpha_array if host else matted.alpha
        if self._size != (h, w, host):
            if self._size is not None:
                log.debug("frame size changed to %dx%d: temporal state reset", w, h)
                self.resets += 1
            self._forget()
            self._size = (h, w, host)
        images = batch.images_array if host else batch.images
        out = self._empty(images)
        starts = [0]  # where the state starts afresh (a gap in time) within this batch
        k = 0
        for i in range(len(batch)):
            if plan.fresh[i]:
                if self._raw is not None:
                    self.resets += 1
                self._raw = None
                starts.append(i)
            if k < len(plan.keys) and plan.keys[k] == i:
                assert masks is not None
                self._raw = masks[k]
                k += 1
                self.computed += 1
            else:
                self.reused += 1
            assert self._raw is not None
            out[i] = self._raw
        if self.refine:
            guided_refine(images, out, out=out)
        if self.smoothing and self._smoother is not None and min(h, w) >= _MOTION_MIN_SIZE:
            bounds = [*dict.fromkeys(starts), len(batch)]
            for a, b in zip(bounds, bounds[1:], strict=False):
                if a in starts[1:]:
                    self._smoother.reset()
                self._smoother(images[a:b], out[a:b], out=out[a:b])
        elif self.smoothing:
            (self._ema_array if host else self._ema_into)(out, set(starts[1:]))
            return self._edges(batch, out, thresholded=self.threshold is not None)
        return self._edges(batch, out, thresholded=False)

    @staticmethod
    def _empty(images: Any) -> Any:
        """An uninitialised ``(N,H,W)`` uint8 matte of the same kind and device as ``images``."""
        if isinstance(images, np.ndarray):
            return np.empty(images.shape[:3], np.uint8)
        import torch

        return torch.empty(images.shape[:3], dtype=torch.uint8, device=images.device)

    def _ema_into(self, out: torch.Tensor, fresh: set[int]) -> None:
        """The plain EMA over whole frames, in place; a threshold is taken on the exact EMA."""
        import torch

        s = self.smoothing
        for i in range(out.shape[0]):
            if i in fresh:
                self._ema = None
            if self._ema is None:
                self._ema = out[i].to(torch.float32)
            else:
                self._ema.mul_(s).add_(out[i], alpha=1.0 - s)
            if self.threshold is not None:
                torch.mul(self._ema >= self.threshold * 255.0, 255, out=out[i])
            else:
                out[i].copy_(self._ema.round())

    def _ema_array(self, out: np.ndarray, fresh: set[int]) -> None:
        """``_ema_into`` of numpy mattes with OpenCV: one pass per frame and step."""
        import cv2

        for i in range(out.shape[0]):
            if i in fresh:
                self._ema = None
            if self._ema is None:
                self._ema = out[i].astype(np.float32)
            else:  # ema = smoothing * ema + (1 - smoothing) * mask
                cv2.accumulateWeighted(out[i], self._ema, 1.0 - self.smoothing)
            if self.threshold is not None:
                cv2.compare(self._ema, self.threshold * 255.0, cv2.CMP_GE, dst=out[i])  # 255 or 0
            else:
                cv2.convertScaleAbs(self._ema, dst=out[i])  # rounded half to even, as torch

    def _edges(self, batch: Batch, out: Any, *, thresholded: bool) -> MattedBatch:
        if self.threshold is not None and not thresholded:
            if isinstance(out, np.ndarray):
                out = _binarize_array(out, self.threshold)
            else:
                import torch

                out = torch.mul(out >= self.threshold * 255.0, 255).to(torch.uint8)
        feather(out, self.feather)
        return MattedBatch(batch, out)

    def _forget(self) -> None:
        self._raw = None
        self._ema = None
        if self._smoother is not None:
            self._smoother.reset()

    def __call__(self, batch: Batch) -> MattedBatch:
        return self.finish(batch, self.infer(self.prepare(batch)))


def _binarize_array(alpha: np.ndarray, threshold: float) -> np.ndarray:
    """255 where ``alpha >= threshold * 255``, else 0: one lookup table over the levels."""
    import cv2

    table = np.where(np.arange(256) >= threshold * 255.0, 255, 0).astype(np.uint8)
    return cv2.LUT(alpha, table)


def _select(batch: Batch, keys: list[int]) -> Batch:
    pts = tuple(batch.pts[i] for i in keys)
    indices = tuple(batch.indices[i] for i in keys)
    caps = tuple(batch.capture_times[i] for i in keys) if batch.capture_times else ()
    if batch.array_backed:
        alphas = batch.alphas_array
        alphas = None if alphas is None else alphas[keys]
        return Batch(batch.images_array[keys], pts, batch.time_base, indices, caps, alphas)
    import torch

    idx = torch.tensor(keys)
    return Batch(
        images=batch.images.index_select(0, idx.to(batch.images.device)),
        pts=pts,
        time_base=batch.time_base,
        indices=indices,
        capture_times=caps,
        alphas=None if batch.alphas is None else batch.alphas.index_select(0, idx.to(batch.alphas.device)),
    )

"""Temporal smoothing of a matte that follows motion instead of trailing it.

A plain exponential moving average (``ema = k·ema + (1-k)·mask``) stops a still person's
edge from shimmering, but a moving edge drags a ghost of where it was. ``MotionSmoother``
blends each pixel with its previous output only as much as the frame stayed the same
there: the weight is ``strength · clamp(1 - d/motion, 0, 1)``, where ``d`` is the
frame-to-frame change of a coarse grey copy of the frames (absolute differences averaged
over 3×3 cells of 4×4 pixels, so sensor noise alone does not read as motion, and the
largest of the four in each 8×8 cell). Still
regions get the full ``strength``; where the frame changed by ``motion`` grey levels or
more, the new mask is taken as is.

Only pixels near the matte's edges are blended (the cells of ``grid.edge_cells`` in this
frame or the previous one): elsewhere the mask is flat 0 or 255 and there is nothing to
smooth. Measured on the 720p clips of ``scripts/bench_quality.py``: blending a coarse
grid and interpolating the correction left two thirds of the flicker, because the model's
256-pixel-wide masks shimmer at a finer scale than an 8-pixel grid holds.

One smoother, two executions: torch tensors (a batch on a CUDA device) run the torch
code; numpy arrays (the CPU path, which never imports torch) run the same steps with
numpy and OpenCV, within a grey level of it (their sums run in another order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .cells import CELL, Cells, gather_cells, put_cells, upsample_array
from .grid import (
    box_mean,
    check_frames,
    edge_cells,
    edge_cells_array,
    grid_size,
    sample,
    sample_array,
)

if TYPE_CHECKING:
    import torch

__all__ = ["MotionSmoother", "DEFAULT_STRENGTH", "DEFAULT_MOTION"]

#: defaults chosen on ``scripts/bench_quality.py`` (720p person clips, selfie model)
DEFAULT_STRENGTH = 0.8
DEFAULT_MOTION = 12.0

#: the Rec. 601 luma weights for the grey copy
_LUMA = (0.299, 0.587, 0.114)


class MotionSmoother:
    """``smoother(images, alpha) -> alpha`` per batch, batches in time order.

    ``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8, torch tensors on one
    device or numpy arrays; returns the smoothed ``(N,H,W)`` uint8 alpha of the same kind
    (in ``out`` when given; ``alpha`` itself works). ``strength`` in ``[0,1)`` is the
    weight of the previous output where nothing moves (0: off); ``motion`` the grey-level
    change (0..255) from which a pixel counts as moving. ``reset()`` forgets the history
    (a cut, a new stream); a change of frame size, device or array kind resets it too."""

    def __init__(self, strength: float = DEFAULT_STRENGTH, *, motion: float = DEFAULT_MOTION) -> None:
        if not 0.0 <= strength < 1.0:
            raise ConfigError(f"smoothing strength: expected 0 <= strength < 1, got {strength}")
        if not motion > 0:
            raise ConfigError(f"smoothing motion: expected grey levels > 0, got {motion}")
        self.strength = float(strength)
        self.motion = float(motion)
        # torch tensors or numpy arrays, as the frames come
        self._grey: Any = None  # (1,h,w) coarse grey of the last frame, 0..255
        self._last: Any = None  # (1,H,W) the last output
        self._last_edges: Any = None  # (1,h,w) its edge cells
        self._key: tuple[int, int, Any] | None = None  # frame size and device (``_HOST`` for arrays)

    def reset(self) -> None:
        """Forget the history: the next frame passes unchanged."""
        self._grey = None
        self._last = None
        self._last_edges = None

    def __call__(self, images: Any, alpha: Any, *, out: Any = None) -> Any:
        check_frames(images, alpha)
        if isinstance(images, np.ndarray):
            return self._smooth_array(images, alpha, out)
        import torch

        if out is None:
            out = torch.empty_like(alpha).copy_(alpha)
        elif out is not alpha:
            out.copy_(alpha)
        n = images.shape[0]
        if self._starts(images, images.device):
            return out
        s = CELL
        keep = self._keep(images)  # (N,1,h,w)
        mask = sample(alpha, s).unsqueeze(1).to(torch.float32).mul_(1.0 / 255.0)
        edges = edge_cells(mask, band=0, s=s)  # (N,h,w)
        # each frame blends the cells along its edges and the previous frame's edges; the
        # first frame has nothing to blend with after a reset
        before = edges[:1] if self._last_edges is None else self._last_edges
        selected = edges | torch.cat([before, edges[:-1]])
        if self._last is None:
            selected[0] = False
        cells = Cells(selected, s)
        weights = cells.upsample(keep)[0]  # (K,s*s): every frame's weights in one GEMM
        for i in range(n):  # in time order: each frame blends with the previous output
            span = cells.span(i)
            if span.start == span.stop:
                continue
            previous, frame = (self._last, 0) if i == 0 else (out, i - 1)
            now = cells.pixels(out, span).to(torch.float32)
            then = cells.pixels(previous, span, frame=frame).to(torch.float32)
            cells.put(out, torch.lerp(now, then, weights[span]).round_(), span)
        self._last = out[n - 1 : n].clone()
        self._last_edges = edges[n - 1 : n].clone()
        return out

    def _starts(self, images: Any, where: Any) -> bool:
        """Reset when the frame size or where the frames live changed; True when there is
        nothing to blend (a batch of no frames, or no smoothing)."""
        key = (int(images.shape[1]), int(images.shape[2]), where)
        if key != self._key:
            self.reset()
            self._key = key
        return images.shape[0] == 0 or self.strength == 0.0

    def _keep(self, images: torch.Tensor) -> torch.Tensor:
        """The weight of the previous output per cell, ``(N,1,h,w)``, from how much a grey
        copy of the frames changed since the frame before (the last one of the previous
        batch for the first); remembers the last frame's grey copy."""
        import torch

        s = CELL
        # motion on a grid twice as fine (an edge moving a few pixels crosses a sample),
        # each cell then taking the largest change among its four sub-cells
        luma = torch.tensor(_LUMA, dtype=torch.float32, device=images.device)
        grey = (sample(images, s // 2).to(torch.float32) @ luma).unsqueeze(1)  # (N,1,2h,2w)
        previous = torch.cat([grey[:1] if self._grey is None else self._grey.unsqueeze(0), grey[:-1]])
        change = box_mean((grey - previous).abs_(), 1)
        h, w = grid_size(images.shape[1], images.shape[2], s)
        change = change[:, :, : 2 * h, : 2 * w]  # pairs of rows and columns: the four sub-cells
        change = torch.maximum(
            torch.maximum(change[..., 0::2, 0::2], change[..., 0::2, 1::2]),
            torch.maximum(change[..., 1::2, 0::2], change[..., 1::2, 1::2]),
        )
        self._grey = grey[-1].clone()
        return (1.0 - change / self.motion).clamp_(0.0, 1.0).mul_(self.strength)

    # -- host arrays (numpy and OpenCV) --------------------------------------------------
    def _smooth_array(self, images: np.ndarray, alpha: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        """``__call__`` on numpy arrays: the same steps, the cells gathered by numpy."""
        if out is None:
            out = alpha.copy()
        elif out is not alpha:
            out[...] = alpha
        n, height, width = alpha.shape
        if self._starts(images, _HOST) or min(height, width) < CELL:
            return out
        s = CELL
        keep = self._keep_array(images)  # (1,N,h,w)
        mask = sample_array(alpha, s).astype(np.float32) * np.float32(1.0 / 255.0)
        edges = edge_cells_array(mask, band=0, s=s)  # (N,h,w)
        before = edges[:1] if self._last_edges is None else self._last_edges
        selected = edges | np.concatenate([before, edges[:-1]])
        if self._last is None:
            selected[0] = False
        frame, i, j = np.nonzero(selected)  # frame by frame, in grid order
        weights = upsample_array(keep, frame, i, j, s)[0]  # (K,s*s)
        starts = np.searchsorted(frame, np.arange(n + 1))
        for f in range(n):  # in time order: each frame blends with the previous output
            a, b = int(starts[f]), int(starts[f + 1])
            if a == b:
                continue
            cells = frame[a:b], i[a:b], j[a:b]
            if f == 0:
                previous = gather_cells(self._last, np.zeros_like(cells[0]), *cells[1:], s)  # its only frame
            else:
                previous = gather_cells(out, cells[0] - 1, *cells[1:], s)
            now = gather_cells(out, *cells, s).reshape(b - a, s * s).astype(np.float32)
            blended = _lerp(now, previous.reshape(b - a, s * s).astype(np.float32), weights[a:b])
            put_cells(out, np.rint(blended).astype(np.uint8).reshape(b - a, s, s), *cells, s)
        self._last = out[n - 1 : n].copy()
        self._last_edges = edges[n - 1 : n].copy()
        return out

    def _keep_array(self, images: np.ndarray) -> np.ndarray:
        """``_keep`` of numpy frames: ``(1,N,h,w)``, frame by frame with OpenCV."""
        import cv2

        s = CELL
        h, w = grid_size(images.shape[1], images.shape[2], s)
        luma = np.asarray([_LUMA], np.float32)
        keep = np.empty((1, images.shape[0], h, w), np.float32)
        for f, colour in enumerate(sample_array(images, s // 2)):
            grey = cv2.transform(colour.astype(np.float32), luma)  # (2h,2w)
            previous = grey if self._grey is None else self._grey
            change = box_mean(cv2.absdiff(grey, previous), 1)[: 2 * h, : 2 * w]
            change = np.maximum(  # pairs of rows and columns: the four sub-cells
                np.maximum(change[0::2, 0::2], change[0::2, 1::2]),
                np.maximum(change[1::2, 0::2], change[1::2, 1::2]),
            )
            self._grey = grey
            keep[0, f] = change
        keep *= np.float32(-1.0 / self.motion)
        keep += np.float32(1.0)
        np.clip(keep, 0.0, 1.0, out=keep)
        keep *= np.float32(self.strength)
        return keep


#: the ``where`` of numpy frames in the smoother's state key (torch ones use their device)
_HOST = "host"


def _lerp(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``start + weight * (end - start)``, in place in a new array (``torch.lerp`` computes
    weights of 0.5 and more from the other end: the two may round a value an ulp apart)."""
    step = end - start
    step *= weight
    step += start
    return step

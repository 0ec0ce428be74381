"""The post-processing settings the quality benchmark compares, applied after any matter.

A ``Setting`` names a combination of edge refinement (``guided_refine``) followed by
temporal smoothing (none, the plain EMA that ``TemporalMatter(smoothing=k)`` applies, or
``MotionSmoother``); ``PostProcess(setting)`` applies it batch by batch, in time order.
Refinement comes first because it follows the frame's colours, sensor noise included:
smoothing after it also takes out the flicker that noise adds at the edges (on the static
clip, dtSSD 0.056 with smoothing first, against the 0.030 of smoothing alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ..matting.motion import DEFAULT_STRENGTH, MotionSmoother
from ..matting.refine import guided_refine

__all__ = ["Setting", "PostProcess", "SETTINGS"]

#: consecutive frames of the benchmark's clips (closer than TemporalMatter's reset gap)
_FRAME_TIME = Fraction(1, 30)


@dataclass(frozen=True)
class Setting:
    name: str
    #: "none", "ema" (plain exponential moving average) or "motion" (``MotionSmoother``)
    smoothing: str = "none"
    #: EMA weight of the history, or ``MotionSmoother``'s strength
    strength: float = 0.0
    #: keyword arguments of ``guided_refine``; None: no refinement
    refine: dict[str, Any] | None = None
    motion: dict[str, Any] = field(default_factory=dict)
    #: the ``streammat process`` options that post-process the same way (None: no such
    #: options, e.g. a refinement radius the command line does not offer)
    options: dict[str, Any] | None = None


#: what the benchmark compares by default (``refine={}``: ``guided_refine``'s defaults)
SETTINGS = (
    Setting("none", options={}),
    Setting("ema 0.5", smoothing="ema", strength=0.5, options={"smoothing": 0.5, "motion": None}),
    Setting("motion", smoothing="motion", strength=DEFAULT_STRENGTH, options={"smoothing": DEFAULT_STRENGTH}),
    Setting("refine", refine={}, options={"refine": "guided"}),
    Setting(
        "refine+motion",
        smoothing="motion",
        strength=DEFAULT_STRENGTH,
        refine={},
        options={"refine": "guided", "smoothing": DEFAULT_STRENGTH},
    ),
)


class _Ema:
    """The plain EMA of ``TemporalMatter(smoothing=k, motion=None)``, run by that matter
    itself on the benchmark's frames and masks."""

    def __init__(self, strength: float) -> None:
        from ..compose import PassThrough
        from ..matting.temporal import TemporalMatter

        self._matter = TemporalMatter(PassThrough(), smoothing=strength, motion=None)
        self._frames = 0

    def __call__(self, images: Any, alpha: Any) -> Any:
        """The smoothed alpha, of the kind of ``images`` (numpy arrays or torch tensors)."""
        from ..frames import Batch

        idx = tuple(range(self._frames, self._frames + images.shape[0]))
        self._frames += images.shape[0]
        matted = self._matter(Batch(images, idx, _FRAME_TIME, idx, alphas=alpha))
        return matted.alpha_array if isinstance(images, np.ndarray) else matted.alpha


class PostProcess:
    """``post(images, alpha) -> alpha`` for one ``Setting``, batches in time order."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self._smoother: Any = None
        if setting.smoothing == "ema":
            self._smoother = _Ema(setting.strength)
        elif setting.smoothing == "motion":
            self._smoother = MotionSmoother(setting.strength, **setting.motion)
        elif setting.smoothing != "none":
            raise ValueError(f"unknown smoothing {setting.smoothing!r}: expected none, ema or motion")

    def __call__(self, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The post-processed alpha, computed in place: ``alpha`` is overwritten (as a
        pipeline's finish step would do with the masks it just made). Tensors on the CPU
        run as the CPU pipeline runs them, as numpy arrays with OpenCV (views, no copies);
        tensors on a device with torch."""
        host = images.device.type == "cpu"
        frames, work = (images.numpy(), alpha.numpy()) if host else (images, alpha)
        if self.setting.refine is not None:
            guided_refine(frames, work, out=work, **self.setting.refine)
        if isinstance(self._smoother, MotionSmoother):
            self._smoother(frames, work, out=work)
        elif self._smoother is not None:
            work[...] = self._smoother(frames, work)
        return alpha

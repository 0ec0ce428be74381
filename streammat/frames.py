"""Frames, batches and matted batches: the values that flow between stages.

Time is integer ``pts`` plus a ``Fraction`` ``time_base`` (never float fps), so
variable-frame-rate input keeps its timing through the whole pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from .limits import MAX_PIXELS  # re-exported: the limit every source applies

__all__ = ["Frame", "Batch", "MattedBatch", "StreamInfo", "MAX_PIXELS"]


@dataclass(frozen=True)
class StreamInfo:
    """What a sink needs to know about the stream before the first frame."""

    width: int
    height: int
    time_base: Fraction
    #: nominal rate if the container states one (used for encoder rate hints only)
    rate: Fraction | None = None
    #: frame count if known up front (progress/ETA); None for live or unknown
    frames: int | None = None
    #: path of the input file whose audio a sink may copy; None when there is none
    audio_path: str | None = None
    #: human readable name of the source, for messages
    name: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"expected positive frame size, got {self.width}x{self.height}")
        if not isinstance(self.time_base, Fraction) or self.time_base <= 0:
            raise ValueError(f"expected a positive Fraction time_base, got {self.time_base!r}")


@dataclass(frozen=True)
class Frame:
    """One decoded RGB frame. ``image`` is ``(H,W,3)`` uint8 (numpy or torch, CPU).

    ``alpha`` is ``(H,W)`` uint8 when the frame already has a matte (a received matted
    stream that is only recorded), else None."""

    image: np.ndarray | torch.Tensor
    pts: int
    time_base: Fraction
    index: int
    #: wall-clock capture time (``time.time()``) for live sources, else None
    capture_time: float | None = None
    alpha: np.ndarray | torch.Tensor | None = None

    def __post_init__(self) -> None:
        x = self.image
        if x.ndim != 3 or x.shape[2] != 3 or x.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"expected (H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")
        a = self.alpha
        if a is not None and (tuple(a.shape) != tuple(x.shape[:2]) or a.dtype not in (np.uint8, torch.uint8)):
            raise ValueError(f"expected alpha (H,W)={tuple(x.shape[:2])} uint8, got {tuple(a.shape)} {a.dtype}")


@dataclass(frozen=True)
class Batch:
    """N frames of one size, in presentation order. N is always the number of real frames
    (``len(batch)``); a runner whose graph needs a fixed batch shape pads inside itself.

    ``alphas`` ``(N,H,W)`` uint8 is set when the frames arrived with a matte."""

    images: torch.Tensor  # (N,H,W,3) uint8
    pts: tuple[int, ...]
    time_base: Fraction
    indices: tuple[int, ...]
    capture_times: tuple[float | None, ...] = field(default=())
    alphas: torch.Tensor | None = None

    def __post_init__(self) -> None:
        x = self.images
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"expected (N,H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")
        n = x.shape[0]
        if n < 1:
            raise ValueError("expected at least one frame, got an empty batch")
        if len(self.pts) != n or len(self.indices) != n:
            raise ValueError(f"expected {n} pts and indices, got {len(self.pts)} and {len(self.indices)}")
        if self.capture_times and len(self.capture_times) != n:
            raise ValueError(f"expected {n} capture times, got {len(self.capture_times)}")
        a = self.alphas
        if a is not None and (tuple(a.shape) != tuple(x.shape[:3]) or a.dtype != torch.uint8):
            raise ValueError(f"expected alphas (N,H,W)={tuple(x.shape[:3])} uint8, got {tuple(a.shape)} {a.dtype}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: slice) -> Batch:
        """Frames ``index`` (a slice) as a batch of views."""
        if not isinstance(index, slice):
            raise TypeError(f"expected a slice, got {type(index).__name__}; use frames() for single frames")
        caps = self.capture_times[index] if self.capture_times else ()
        alphas = None if self.alphas is None else self.alphas[index]
        return Batch(self.images[index], self.pts[index], self.time_base, self.indices[index], caps, alphas)

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def frames(self) -> list[Frame]:
        """The frames as ``Frame`` objects (views, no copies)."""
        caps = self.capture_times or (None,) * len(self)
        alphas = self.alphas if self.alphas is not None else (None,) * len(self)
        return [
            Frame(self.images[i], self.pts[i], self.time_base, self.indices[i], caps[i], alphas[i])
            for i in range(len(self))
        ]


@dataclass(frozen=True)
class MattedBatch:
    """A batch plus its alpha matte. ``alpha`` is ``(N,H,W)`` uint8, 255 = foreground."""

    batch: Batch
    alpha: torch.Tensor

    def __post_init__(self) -> None:
        a, x = self.alpha, self.batch.images
        if a.ndim != 3 or a.dtype != torch.uint8 or tuple(a.shape) != tuple(x.shape[:3]):
            raise ValueError(f"expected alpha (N,H,W)={tuple(x.shape[:3])} uint8, got {tuple(a.shape)} {a.dtype}")

    def __len__(self) -> int:
        return len(self.batch)

    def rgba(self) -> torch.Tensor:
        """Straight (unpremultiplied) RGBA ``(N,H,W,4)`` uint8: what alpha video stores."""
        return torch.cat([self.batch.images, self.alpha.unsqueeze(-1)], dim=-1)

    def foreground(self) -> torch.Tensor:
        """The rembg ``naive_cutout`` colour: RGB premultiplied by alpha, ``(N,H,W,3)`` uint8.

        Same rounding as PIL's ``Image.composite`` (``(c*a + 127) // 255``)."""
        a = self.alpha.unsqueeze(-1).to(torch.int32)
        return ((self.batch.images.to(torch.int32) * a + 127) // 255).to(torch.uint8)

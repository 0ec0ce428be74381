"""Frames, batches and matted batches: the values that flow between stages.

Time is integer ``pts`` plus a ``Fraction`` ``time_base`` (never float fps), so
variable-frame-rate input keeps its timing through the whole pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

__all__ = ["Frame", "Batch", "MattedBatch", "StreamInfo"]


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
    """One decoded RGB frame. ``image`` is ``(H,W,3)`` uint8 (numpy or torch, CPU)."""

    image: np.ndarray | torch.Tensor
    pts: int
    time_base: Fraction
    index: int
    #: wall-clock capture time (``time.time()``) for live sources, else None
    capture_time: float | None = None

    def __post_init__(self) -> None:
        x = self.image
        if x.ndim != 3 or x.shape[2] != 3 or x.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"expected (H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")


@dataclass(frozen=True)
class Batch:
    """A fixed-size batch. Only the first ``valid`` entries are real frames; the tail is
    padding (copies of the last real frame) so that every batch has the same shape."""

    images: torch.Tensor  # (B,H,W,3) uint8
    pts: tuple[int, ...]
    time_base: Fraction
    indices: tuple[int, ...]
    valid: int
    capture_times: tuple[float | None, ...] = field(default=())

    def __post_init__(self) -> None:
        x = self.images
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"expected (B,H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")
        b = x.shape[0]
        if not 0 < self.valid <= b:
            raise ValueError(f"expected 0 < valid <= {b}, got valid={self.valid}")
        if len(self.pts) != b or len(self.indices) != b:
            raise ValueError(f"expected {b} pts and indices, got {len(self.pts)} and {len(self.indices)}")
        if self.capture_times and len(self.capture_times) != b:
            raise ValueError(f"expected {b} capture times, got {len(self.capture_times)}")

    def __len__(self) -> int:
        """The number of real frames (what every stage consumes)."""
        return self.valid

    @property
    def size(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    def frames(self) -> list[Frame]:
        """The valid frames as ``Frame`` objects (views, no copies)."""
        caps = self.capture_times or (None,) * self.size
        return [Frame(self.images[i], self.pts[i], self.time_base, self.indices[i], caps[i]) for i in range(self.valid)]


@dataclass(frozen=True)
class MattedBatch:
    """A batch plus its alpha matte. ``alpha`` is ``(B,H,W)`` uint8, 255 = foreground."""

    batch: Batch
    alpha: torch.Tensor

    def __post_init__(self) -> None:
        a, x = self.alpha, self.batch.images
        if a.ndim != 3 or a.dtype != torch.uint8 or tuple(a.shape) != tuple(x.shape[:3]):
            raise ValueError(f"expected alpha (B,H,W)={tuple(x.shape[:3])} uint8, got {tuple(a.shape)} {a.dtype}")

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def valid(self) -> int:
        return self.batch.valid

    def rgba(self) -> torch.Tensor:
        """Straight (unpremultiplied) RGBA ``(B,H,W,4)`` uint8: what alpha video stores."""
        return torch.cat([self.batch.images, self.alpha.unsqueeze(-1)], dim=-1)

    def foreground(self) -> torch.Tensor:
        """The rembg ``naive_cutout`` colour: RGB premultiplied by alpha, ``(B,H,W,3)`` uint8.

        Same rounding as PIL's ``Image.composite`` (``(c*a + 127) // 255``)."""
        a = self.alpha.unsqueeze(-1).to(torch.int32)
        return ((self.batch.images.to(torch.int32) * a + 127) // 255).to(torch.uint8)

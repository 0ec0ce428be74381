"""``ReceivedFrame``: one frame as a receiver gets it (header fields plus pictures)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from .protocol import DecodedFrame, FrameHeader

if TYPE_CHECKING:
    import torch

__all__ = ["ReceivedFrame"]


@dataclass(frozen=True, kw_only=True)
class ReceivedFrame(FrameHeader):
    """One received frame: its header's fields (``stream``, ``seq``, ``pts``, ``time_base``,
    ``width``, ``layout``…) plus the pictures. ``image`` is ``(H,W,3)`` and ``alpha``
    ``(H,W)`` uint8 numpy arrays (either may be None, by layout); they may be read-only
    views of the message."""

    topic: str
    image: np.ndarray | None
    alpha: np.ndarray | None
    #: ``time.time()`` when the message was received
    received_at: float

    @property
    def latency(self) -> float | None:
        """Capture → receipt, seconds (same-clock hosts only), or None."""
        return None if self.capture_time is None else self.received_at - self.capture_time

    @property
    def nbytes(self) -> int:
        """Bytes of picture data this frame holds."""
        return sum(x.nbytes for x in (self.image, self.alpha) if x is not None)

    @property
    def time(self) -> Fraction:
        return self.pts * self.time_base

    def rgba(self) -> np.ndarray:
        """Straight RGBA ``(H,W,4)`` uint8 (alpha 255 when absent, black when no colour)."""
        out = np.empty((self.height, self.width, 4), dtype=np.uint8)
        out[..., :3] = 0 if self.image is None else self.image
        out[..., 3] = 255 if self.alpha is None else self.alpha
        return out

    def as_tensor(self) -> torch.Tensor:
        """A writable ``(H,W,C)`` uint8 tensor: C=4 for RGBA layouts, 3 for ``rgb``, 1 for ``a``."""
        import torch  # lazily: plain subscribers need no torch

        if self.image is not None and self.alpha is not None:
            return torch.from_numpy(self.rgba())
        if self.image is not None:
            return torch.from_numpy(np.array(self.image, copy=True))
        assert self.alpha is not None
        return torch.from_numpy(np.array(self.alpha[..., None], copy=True))

    @classmethod
    def from_decoded(cls, msg: DecodedFrame, received_at: float) -> ReceivedFrame:
        h = msg.header
        image = alpha = None
        if h.layout == "rgba":
            image, alpha = msg.planes[0][..., :3], msg.planes[0][..., 3]
        elif h.layout == "rgb+a":
            image, alpha = msg.planes
        elif h.layout == "rgb":
            image = msg.planes[0]
        else:
            alpha = msg.planes[0]
        header = {f.name: getattr(h, f.name) for f in dataclasses.fields(FrameHeader)}
        return cls(
            **header,
            topic=msg.topic.decode("utf-8", "replace"),
            image=image,
            alpha=alpha,
            received_at=received_at,
        )

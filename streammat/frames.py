"""Frames, batches and matted batches: the values that flow between stages.

Time is integer ``pts`` plus a ``Fraction`` ``time_base`` (never float fps), so
variable-frame-rate input keeps its timing through the whole pipeline.

One buffer, two views. A batch keeps its pixels as it was given them — a numpy array
(what the sources decode) or a torch tensor (a caller's, or a CUDA stage's) — and shows
them two ways, neither of which copies:

- ``images`` / ``alphas`` / ``alpha`` are torch uint8 tensors, the public contract; a
  numpy buffer is wrapped by ``torch.from_numpy`` on first use;
- ``images_array`` / ``alphas_array`` / ``alpha_array`` are the numpy views the CPU
  stages work on (a CPU tensor's ``.numpy()``; a CUDA tensor has none).

So the CPU path (decode, onnxruntime, OpenCV, the encoders) never imports torch, whose
import alone takes about 2 s here: longer than matting a short clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .limits import MAX_PIXELS  # re-exported: the limit every source applies

if TYPE_CHECKING:
    import torch

__all__ = ["Frame", "Batch", "MattedBatch", "StreamInfo", "MAX_PIXELS", "join_rgba"]

#: a host array or a torch tensor (CPU or CUDA)
Pixels = Any


def _is_uint8(x: Pixels) -> bool:
    """uint8 in numpy (``uint8``) or torch (``torch.uint8``), without importing torch."""
    return str(x.dtype) in ("uint8", "torch.uint8")


def as_tensor(x: Pixels) -> torch.Tensor:
    """``x`` as a torch tensor: a numpy array is wrapped without a copy."""
    if isinstance(x, np.ndarray):
        import torch

        return torch.from_numpy(x)
    return x


def as_array(x: Pixels, what: str) -> np.ndarray:
    """``x`` as a numpy array without a copy; a CUDA tensor has no host view."""
    if isinstance(x, np.ndarray):
        return x
    if x.device.type != "cpu":
        raise ValueError(f"{what} on {x.device} have no host array; use the torch view")
    return x.numpy()


class _TorchView:
    """A dataclass field that stores the buffer it is given (numpy or torch, see the
    module docstring) and reads as a torch tensor, made once and kept."""

    def __init__(self, *, optional: bool = False) -> None:
        self.optional = optional

    def __set_name__(self, owner: type, name: str) -> None:
        self.raw, self.view = f"_{name}", f"_{name}_tensor"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if self.optional:
                return None  # the field's default
            raise AttributeError(self.raw[1:])  # a required field: no default
        state = obj.__dict__
        if self.view not in state:
            raw = state[self.raw]
            state[self.view] = None if raw is None else as_tensor(raw)
        return state[self.view]

    def __set__(self, obj: Any, value: Pixels) -> None:
        # reached from the frozen dataclass's __init__ only (assignment raises before)
        obj.__dict__[self.raw] = value
        obj.__dict__.pop(self.view, None)


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

    image: Pixels
    pts: int
    time_base: Fraction
    index: int
    #: wall-clock capture time (``time.time()``) for live sources, else None
    capture_time: float | None = None
    alpha: Pixels | None = None

    def __post_init__(self) -> None:
        x = self.image
        if x.ndim != 3 or x.shape[2] != 3 or not _is_uint8(x):
            raise ValueError(f"expected (H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")
        a = self.alpha
        if a is not None and (tuple(a.shape) != tuple(x.shape[:2]) or not _is_uint8(a)):
            raise ValueError(f"expected alpha (H,W)={tuple(x.shape[:2])} uint8, got {tuple(a.shape)} {a.dtype}")


@dataclass(frozen=True, repr=False)
class Batch:
    """N frames of one size, in presentation order. N is always the number of real frames
    (``len(batch)``); a runner whose graph needs a fixed batch shape pads inside itself.

    ``images`` ``(N,H,W,3)`` uint8 and ``alphas`` ``(N,H,W)`` uint8 (set when the frames
    arrived with a matte) may be given as numpy arrays or torch tensors; they read as
    torch tensors, and as numpy arrays through ``images_array`` / ``alphas_array``."""

    images: torch.Tensor = _TorchView()  # type: ignore[assignment]
    pts: tuple[int, ...]
    time_base: Fraction
    indices: tuple[int, ...]
    capture_times: tuple[float | None, ...] = field(default=())
    alphas: torch.Tensor | None = _TorchView(optional=True)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        x = self._images
        if x.ndim != 4 or x.shape[3] != 3 or not _is_uint8(x):
            raise ValueError(f"expected (N,H,W,3) uint8, got {tuple(x.shape)} {x.dtype}")
        n = x.shape[0]
        if n < 1:
            raise ValueError("expected at least one frame, got an empty batch")
        if len(self.pts) != n or len(self.indices) != n:
            raise ValueError(f"expected {n} pts and indices, got {len(self.pts)} and {len(self.indices)}")
        if self.capture_times and len(self.capture_times) != n:
            raise ValueError(f"expected {n} capture times, got {len(self.capture_times)}")
        a = self._alphas
        if a is not None and (tuple(a.shape) != tuple(x.shape[:3]) or not _is_uint8(a)):
            raise ValueError(f"expected alphas (N,H,W)={tuple(x.shape[:3])} uint8, got {tuple(a.shape)} {a.dtype}")

    def __len__(self) -> int:
        return int(self._images.shape[0])

    def __repr__(self) -> str:
        return f"Batch({len(self)} frames {self.width}x{self.height}, pts {self.pts[0]}..{self.pts[-1]})"

    def __getitem__(self, index: slice) -> Batch:
        """Frames ``index`` (a slice) as a batch of views."""
        if not isinstance(index, slice):
            raise TypeError(f"expected a slice, got {type(index).__name__}; use frames() for single frames")
        caps = self.capture_times[index] if self.capture_times else ()
        alphas = None if self._alphas is None else self._alphas[index]
        return Batch(self._images[index], self.pts[index], self.time_base, self.indices[index], caps, alphas)

    def retimed(self, pts: tuple[int, ...]) -> Batch:
        """The same frames (no copy) at ``pts``."""
        return Batch(self._images, pts, self.time_base, self.indices, self.capture_times, self._alphas)

    @property
    def array_backed(self) -> bool:
        """True when the pixels were given as a numpy array (what the CPU stages make),
        False for a torch tensor: tells a stage which of its two executions to run."""
        return isinstance(self._images, np.ndarray)

    @property
    def images_array(self) -> np.ndarray:
        """``images`` as a numpy array (no copy); ``ValueError`` for CUDA tensors."""
        return as_array(self._images, "images")

    @property
    def alphas_array(self) -> np.ndarray | None:
        """``alphas`` as a numpy array (no copy), or None."""
        return None if self._alphas is None else as_array(self._alphas, "alphas")

    @property
    def height(self) -> int:
        return int(self._images.shape[1])

    @property
    def width(self) -> int:
        return int(self._images.shape[2])

    def frames(self) -> list[Frame]:
        """The frames as ``Frame`` objects (views, no copies, in the buffer's own kind)."""
        caps = self.capture_times or (None,) * len(self)
        alphas = self._alphas if self._alphas is not None else (None,) * len(self)
        return [
            Frame(self._images[i], self.pts[i], self.time_base, self.indices[i], caps[i], alphas[i])
            for i in range(len(self))
        ]


@dataclass(frozen=True, repr=False)
class MattedBatch:
    """A batch plus its alpha matte. ``alpha`` is ``(N,H,W)`` uint8, 255 = foreground,
    given as a numpy array or a torch tensor; it reads as a torch tensor, and as a numpy
    array through ``alpha_array``."""

    batch: Batch
    alpha: torch.Tensor = _TorchView()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        a, x = self._alpha, self.batch._images
        if a.ndim != 3 or not _is_uint8(a) or tuple(a.shape) != tuple(x.shape[:3]):
            raise ValueError(f"expected alpha (N,H,W)={tuple(x.shape[:3])} uint8, got {tuple(a.shape)} {a.dtype}")

    def __len__(self) -> int:
        return len(self.batch)

    def __repr__(self) -> str:
        return f"MattedBatch({self.batch!r})"

    def retimed(self, pts: tuple[int, ...]) -> MattedBatch:
        """The same frames and matte (no copy) at ``pts``."""
        return MattedBatch(self.batch.retimed(pts), self._alpha)

    @property
    def alpha_array(self) -> np.ndarray:
        """``alpha`` as a numpy array (no copy); ``ValueError`` for CUDA tensors."""
        return as_array(self._alpha, "alpha")

    def rgba(self) -> torch.Tensor:
        """Straight (unpremultiplied) RGBA ``(N,H,W,4)`` uint8: what alpha video stores."""
        import torch

        return torch.cat([self.batch.images, self.alpha.unsqueeze(-1)], dim=-1)

    def rgba_array(self) -> np.ndarray:
        """``rgba()`` as a numpy array, for the host stages (numpy has no torch import)."""
        return join_rgba(self.batch.images_array, self.alpha_array)

    def foreground(self) -> torch.Tensor:
        """The rembg ``naive_cutout`` colour: RGB premultiplied by alpha, ``(N,H,W,3)`` uint8.

        Same rounding as PIL's ``Image.composite`` (``(c*a + 127) // 255``)."""
        import torch

        a = self.alpha.unsqueeze(-1).to(torch.int32)
        return ((self.batch.images.to(torch.int32) * a + 127) // 255).to(torch.uint8)


def join_rgba(images: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``(...,H,W,4)`` RGBA from ``(...,H,W,3)`` colour and ``(...,H,W)`` alpha. OpenCV's
    vectorized channel insert plus one strided alpha write take ~0.2 ms a 640x480 frame,
    a numpy or torch concatenation ~1.7 ms."""
    import cv2

    out = np.empty((*images.shape[:-1], 4), np.uint8)
    flat_in = images.reshape(-1, *images.shape[-3:])
    flat_out = out.reshape(-1, *out.shape[-3:])
    for i in range(len(flat_in)):
        cv2.cvtColor(np.ascontiguousarray(flat_in[i]), cv2.COLOR_RGB2RGBA, dst=flat_out[i])
    out[..., 3] = alpha
    return out

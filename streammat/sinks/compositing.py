"""Backgrounds for composite outputs: a colour, an image, or the blurred original frame.

``parse_background(spec)`` understands colour names (``green``), ``#00ff00`` / ``#0f0``,
``0,255,0``, ``blur`` (optionally ``blur:<strength>``), and otherwise an image path. The
image is cover-resized to the frame size once, at ``Compositor.prepare``; the blur is
cheap: downscale by 8 → Gaussian blur → upscale, per frame.

One formula, two array backends side by side: ``composite`` (numpy, on the host, frame
by frame in the sinks) and ``composite_torch`` (a batch of torch tensors on any device),
with the same integer rounding, so they agree to the level. When the frames are on a GPU,
the matting stage composites there (``Compositor.apply_torch``) and hands the result on
as a ``CompositedBatch``; a sink whose compositor has the same background takes that
composite (``Compositor.composites``) instead of compositing on the host again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..errors import ConfigError, OutputError
from ..frames import MattedBatch

if TYPE_CHECKING:  # torch is imported where a batch is on the GPU, never on the CPU path
    import torch

__all__ = [
    "COLORS",
    "Background",
    "parse_background",
    "Compositor",
    "CompositedBatch",
    "composite",
    "composite_background",
    "composite_torch",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "red": (255, 0, 0),
    "gray": (128, 128, 128),
    "grey": (128, 128, 128),
    "magenta": (255, 0, 255),
    "yellow": (255, 255, 0),
    "cyan": (0, 255, 255),
}

_BLUR_DOWNSCALE = 8


@dataclass(frozen=True)
class Background:
    kind: str  # "color" | "image" | "blur"
    color: tuple[int, int, int] = (0, 0, 0)
    path: str = ""
    blur_sigma: float = 3.0


#: the colour forms ``--background`` takes besides names: ``#rrggbb``/``#rgb`` (the ``#``
#: optional) and ``r,g,b``
_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")
_RGB = re.compile(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*")


def names_image(spec: str) -> bool:
    """Whether a ``--background`` value can only be an image file: not a colour name,
    ``#rrggbb``, ``r,g,b`` or a blur (the forms ``parse_background`` reads first)."""
    low = spec.strip().lower()
    if low in COLORS or low == "blur" or low.startswith(("blur:", "#")):
        return False
    return not (_HEX.fullmatch(low) or _RGB.fullmatch(low))


def parse_background(spec: str) -> Background:
    """Parse ``--background``. Raises ``ConfigError`` for malformed colours/missing images."""
    s = spec.strip()
    low = s.lower()
    if low in COLORS:
        return Background("color", COLORS[low])
    if low == "blur" or low.startswith("blur:"):
        sigma = 3.0
        if ":" in low:
            try:
                sigma = float(low.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"bad blur strength in background {spec!r}; use e.g. blur:3") from exc
        return Background("blur", blur_sigma=sigma)
    m = _HEX.fullmatch(s)
    if m and (s.startswith("#") or not Path(s).exists()):
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return Background("color", (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    if _RGB.fullmatch(s):
        rgb = tuple(int(v) for v in s.split(","))
        if any(v > 255 for v in rgb):
            raise ConfigError(f"background colour {spec!r}: components must be 0..255")
        return Background("color", rgb)  # type: ignore[arg-type]
    if Path(s).is_file():
        return Background("image", path=s)
    raise ConfigError(
        f"background {spec!r} is not a colour ({', '.join(sorted(COLORS))}, #rrggbb, r,g,b), "
        "'blur', or an existing image file"
    )


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to cover ``width``×``height`` keeping aspect, then centre-crop."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    x0, y0 = (nw - width) // 2, (nh - height) // 2
    return np.ascontiguousarray(resized[y0 : y0 + height, x0 : x0 + width])


def composite(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``rgb*a + bg*(1-a)`` in uint16 integer math, rounded: ``(B,H,W,3)`` or ``(H,W,3)`` uint8."""
    a = alpha[..., None].astype(np.uint16)
    out = rgb.astype(np.uint16) * a
    out += background.astype(np.uint16) * (255 - a)
    out += 127
    out //= 255
    return out.astype(np.uint8)


def composite_torch(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``composite`` for torch tensors on any device, level for level: the same integer
    formula in int32 (torch's uint16 lacks the arithmetic), ``(N,H,W,3)`` uint8."""
    import torch

    a = alpha.unsqueeze(-1).to(torch.int32)
    out = rgb.to(torch.int32) * a
    out += background.to(torch.int32) * (255 - a)
    out += 127
    return out.div_(255, rounding_mode="floor").to(torch.uint8)


def composite_background(sinks: Iterable[Any]) -> Background | None:
    """The background of the first of ``sinks`` (or of the sink one wraps, as ``inner``)
    that writes composites through a ``Compositor``; None when none does."""
    for sink in sinks:
        compositor = getattr(getattr(sink, "inner", sink), "compositor", None)
        if isinstance(compositor, Compositor):
            return compositor.background
    return None


@dataclass(frozen=True)
class CompositedBatch(MattedBatch):
    """A matted batch that also carries its composite over ``background``, ``(N,H,W,3)``
    uint8, made where the frames were (on the GPU) and copied back once."""

    composite: torch.Tensor
    background: Background

    def __post_init__(self) -> None:
        super().__post_init__()
        c, x = self.composite, self.batch.images
        if str(c.dtype) != "torch.uint8" or tuple(c.shape) != tuple(x.shape):
            raise ValueError(f"expected composite (N,H,W,3)={tuple(x.shape)} uint8, got {tuple(c.shape)} {c.dtype}")


class Compositor:
    """Composites straight RGB + alpha onto a prepared background."""

    def __init__(self, background: Background) -> None:
        self.background = background
        self._plate: np.ndarray | None = None
        self._device_plate: torch.Tensor | None = None  # the plate, uploaded once per device

    def prepare(self, width: int, height: int) -> None:
        """Build the static background once (colour plate or cover-resized image)."""
        bg = self.background
        if bg.kind == "color":
            self._plate = np.empty((height, width, 3), np.uint8)
            self._plate[...] = np.array(bg.color, np.uint8)
        elif bg.kind == "image":
            img = cv2.imread(bg.path, cv2.IMREAD_COLOR)
            if img is None:
                raise OutputError(f"cannot read background image {bg.path}")
            self._plate = _cover(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), width, height)
        else:
            self._plate = None
        self._device_plate = None

    def _blurred(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        sw, sh = max(1, w // _BLUR_DOWNSCALE), max(1, h // _BLUR_DOWNSCALE)
        small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), self.background.blur_sigma)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def apply(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """One frame: ``rgb`` (H,W,3) uint8, ``alpha`` (H,W) uint8 → (H,W,3) uint8."""
        plate = self._blurred(rgb) if self._plate is None else self._plate
        return composite(rgb, alpha, plate)

    def composites(self, images: np.ndarray, alpha: np.ndarray, *, made: MattedBatch | None = None) -> np.ndarray:
        """``(N,H,W,3)`` uint8 composites of host ``images`` ``(N,H,W,3)`` and ``alpha``
        ``(N,H,W)``: the ones ``made`` carries when it was composited over this background
        at this size (on the GPU), else computed here."""
        if (
            isinstance(made, CompositedBatch)
            and made.background == self.background
            and tuple(made.composite.shape[:3]) == tuple(images.shape[:3])
        ):
            return made.composite.numpy()
        if self._plate is not None:  # a fixed plate: the whole batch in one pass, no stacking copy
            return composite(images, alpha, self._plate)
        return np.stack([self.apply(images[i], alpha[i]) for i in range(images.shape[0])])

    def apply_torch(self, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """A batch where it lives: ``images`` ``(N,H,W,3)`` and ``alpha`` ``(N,H,W)`` uint8
        torch tensors on one device → ``(N,H,W,3)`` uint8 composites there. The blurred
        background comes from torch's own resizes, within a level or two of OpenCV's."""
        import torch

        if self.background.kind == "blur":
            plate = _blurred_torch(images, self.background.blur_sigma)
        else:
            if self._plate is None or self._plate.shape[:2] != tuple(images.shape[1:3]):
                self.prepare(int(images.shape[2]), int(images.shape[1]))
            if self._device_plate is None or self._device_plate.device != images.device:
                assert self._plate is not None
                self._device_plate = torch.from_numpy(self._plate).to(images.device)
            plate = self._device_plate
        return composite_torch(images, alpha, plate)


def _blurred_torch(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``Compositor._blurred`` for a batch of torch tensors: area downscale by 8, OpenCV's
    Gaussian for uint8 (its kernel size for ``sigma``, mirrored edges), bilinear upscale."""
    import torch
    import torch.nn.functional as F

    from ..matting.feather import gaussian_blur_torch

    n, h, w, _ = images.shape
    sh, sw = max(1, h // _BLUR_DOWNSCALE), max(1, w // _BLUR_DOWNSCALE)
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    small = F.interpolate(x, size=(sh, sw), mode="area").round_().to(torch.uint8)  # (N,3,sh,sw)
    size = round(sigma * 6 + 1) | 1  # OpenCV's kernel size for a uint8 image and this sigma
    small = gaussian_blur_torch(small.reshape(n * 3, sh, sw), size, sigma, border="reflect").view(n, 3, sh, sw)
    big = F.interpolate(small.to(torch.float32), size=(h, w), mode="bilinear", align_corners=False)
    return big.round_().clamp_(0.0, 255.0).to(torch.uint8).permute(0, 2, 3, 1)

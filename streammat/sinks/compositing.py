"""Backgrounds for composite outputs: a colour, an image, or the blurred original frame.

``parse_background(spec)`` understands colour names (``green``), ``#00ff00`` / ``#0f0``,
``0,255,0``, ``blur`` (optionally ``blur:<strength>``), and otherwise an image path. The
image is cover-resized to the frame size once, at ``Compositor.prepare``; the blur is
cheap: downscale by 8 → Gaussian blur → upscale, per frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, OutputError

__all__ = ["COLORS", "Background", "parse_background", "Compositor", "composite"]

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
    m = re.fullmatch(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})", s)
    if m and (s.startswith("#") or not Path(s).exists()):
        h = m.group(1)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        return Background("color", (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)))
    if re.fullmatch(r"\s*\d+\s*,\s*\d+\s*,\s*\d+\s*", s):
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


class Compositor:
    """Composites straight RGB + alpha onto a prepared background."""

    def __init__(self, background: Background) -> None:
        self.background = background
        self._plate: np.ndarray | None = None

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

"""Image sequences as a source: a folder of images, or a printf pattern (``out/img_%05d.png``),
as VFX tools and ffmpeg's image2 demuxer read them. streammat's own PNG-sequence output is
a valid input.

Files are PNG, JPEG or TIFF (8 or 16 bit, grey, RGB or RGBA), read in name order (numbers
compared as numbers: ``img2`` before ``img10``). Timing comes from the PNG sink's
timestamps sidecar when there is one (its exact pts and time_base), else from ``rate``
(25 fps by default, said once). Alpha in RGBA images is not needed for matting and is
dropped, or kept in ``Frame.alpha`` with ``keep_alpha=True``.

Backpressure "block". Every frame must have the first frame's size; a missing, unreadable
or differently sized file is an ``InputError`` naming it. Each file's size is read from its
header and checked against ``max_pixels`` before its pixels are decoded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError
from ..frames import MAX_PIXELS, Frame, StreamInfo
from ..sinks.png_sequence import SIDECAR, is_pattern, split_pattern
from .base import SourceLifecycle, check_frame_size, check_max_pixels, check_spec, check_threads

__all__ = ["ImageSequenceSource", "is_image_sequence", "image_size", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)

#: file name endings read as images (lower case)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: frame rate of a sequence without a timestamps sidecar when no ``rate`` is given
DEFAULT_RATE = Fraction(25)
_NUMBER = re.compile(r"(\d+)")
_PRINTF = re.compile(r"%0?(\d*)d")


def is_image_sequence(spec: str) -> bool:
    """A folder, or a ``%d`` pattern that is not itself an existing file or a URL."""
    if "://" in spec:
        return False
    return os.path.isdir(spec) or (is_pattern(spec) and not os.path.exists(spec))


class ImageSequenceSource(SourceLifecycle):
    """Frames from a folder of images or a ``%d`` file pattern.

    - ``rate``: frames per second when there is no timestamps sidecar (default 25).
    - ``keep_alpha``: keep an RGBA image's alpha in ``Frame.alpha`` (default: dropped).
    - ``max_pixels``: the largest image (width × height) accepted.
    - ``threads``: images decoded ahead in parallel (0: 2).
    """

    backpressure = "block"

    def __init__(
        self,
        spec: str | os.PathLike[str],
        *,
        rate: float | Fraction | None = None,
        keep_alpha: bool = False,
        max_pixels: int = MAX_PIXELS,
        threads: int = 0,
    ) -> None:
        self.name = check_spec(spec)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float, Fraction)) or rate <= 0):
            raise ConfigError(f"rate: expected a positive number of frames per second, got {rate!r}")
        self.rate = None if rate is None else Fraction(rate).limit_denominator(1001)
        self.keep_alpha = bool(keep_alpha)
        self.max_pixels = check_max_pixels(max_pixels)
        self.threads = check_threads(threads) or 2
        self.info: StreamInfo | None = None
        self._files: list[Path] = []
        self._pts: list[int] = []
        self._pool: ThreadPoolExecutor | None = None
        self._stats = {"decoded": 0}

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    # -- lifecycle ----------------------------------------------------------------
    def _open(self) -> StreamInfo:
        folder, files, sidecar = self._list()
        if sidecar.is_file():
            time_base, rate, files, pts = self._read_sidecar(sidecar, folder)
        else:
            rate = self.rate or DEFAULT_RATE
            if self.rate is None:
                log.warning(
                    "%s: no %s; frames are timed at %s fps (give a rate to change it)", self.name, sidecar.name, rate
                )
            time_base, pts = 1 / rate, list(range(len(files)))
        if not files:
            raise InputError(f"{self.name}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        width, height = self._size(files[0])
        self._files, self._pts = files, pts
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sm-images")
        log.info("%s: %d images of %dx%d", self.name, len(files), width, height)
        return StreamInfo(width=width, height=height, time_base=time_base, rate=rate, frames=len(files), name=self.name)

    def _release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _list(self) -> tuple[Path, list[Path], Path]:
        """(folder, image files in order, sidecar path) of a folder or a pattern."""
        if not is_pattern(self.name):
            folder = Path(self.name)
            if not folder.is_dir():
                raise InputError(f"{self.name}: no such folder")
            files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
            return folder, sorted(files, key=_natural), folder / SIDECAR
        folder, name, base = split_pattern(self.name)
        if not folder.is_dir():
            raise InputError(f"{self.name}: no such folder {folder}")
        head, _, tail = _PRINTF.split(name, maxsplit=1)
        matcher = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + r"\Z")
        numbered = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := matcher.match(p.name)))
        for expected, (number, _) in enumerate(numbered, start=numbered[0][0] if numbered else 0):
            if number != expected:
                raise InputError(f"{folder / (name % expected)}: missing frame of the sequence {self.name}")
        return folder, [p for _, p in numbered], folder / f"{base}.{SIDECAR}"

    def _read_sidecar(self, sidecar: Path, folder: Path) -> tuple[Fraction, Fraction | None, list[Path], list[int]]:
        """(time_base, rate, files, pts) from the PNG sink's timestamps sidecar."""
        try:
            data = json.loads(sidecar.read_text())
            time_base = Fraction(data["time_base"])
            entries = [(str(e["file"]), int(e["pts"])) for e in data["frames"]]
            if data.get("version") != 1 or time_base <= 0:
                raise ValueError(f"version {data.get('version')!r}, time_base {time_base}")
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            raise InputError(f"{sidecar}: not a readable timestamps file ({exc})") from exc
        files = [folder / name for name, _ in entries]
        pts = [p for _, p in entries]
        for path in files:
            if not path.is_file():
                raise InputError(f"{path}: missing frame (listed in {sidecar.name})")
        if any(b <= a for a, b in zip(pts, pts[1:], strict=False)):
            raise InputError(f"{sidecar}: timestamps do not increase")
        if self.rate is not None:
            log.warning("%s: timed by %s; the given rate %s is not used", self.name, sidecar.name, self.rate)
        return time_base, None, files, pts

    # -- iteration ----------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        info, pool = self.info, self._pool
        if info is None or pool is None:
            raise InputError(f"{self.name}: source is not open")
        ahead: deque[Future] = deque()
        pending = iter(self._files)
        for index in range(len(self._files)):
            while len(ahead) < 2 * self.threads and (path := next(pending, None)) is not None:
                ahead.append(pool.submit(self._load, path, info.width, info.height))
            try:
                image, alpha = ahead.popleft().result()
            except CancelledError:  # closed from another thread
                return
            self._stats["decoded"] = index + 1
            yield Frame(image, self._pts[index], info.time_base, index, alpha=alpha)
            if self._shut:
                return

    def _size(self, path: Path) -> tuple[int, int]:
        """The image's size from its header, checked against the limit before decoding."""
        size = image_size(path)
        if size is None:
            raise InputError(f"{path}: cannot read as an image (not a PNG, JPEG or TIFF file)")
        check_frame_size(str(path), *size, self.max_pixels)
        return size

    def _load(self, path: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray | None]:
        import cv2

        size = self._size(path)
        if size != (width, height):
            raise InputError(f"{path}: {size[0]}x{size[1]}, but the sequence's frames are {width}x{height}")
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise InputError(f"{path}: cannot read as an image")
        if data.dtype == np.uint16:
            data = (data >> 8).astype(np.uint8)
        elif data.dtype != np.uint8:
            raise InputError(f"{path}: {data.dtype} pixels are not supported (8 or 16 bit only)")
        if data.ndim == 2:
            return np.ascontiguousarray(np.repeat(data[:, :, None], 3, axis=2)), None
        rgb = np.ascontiguousarray(data[:, :, 2::-1])
        alpha = np.ascontiguousarray(data[:, :, 3]) if self.keep_alpha and data.shape[2] == 4 else None
        return rgb, alpha


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or TIFF header, without decoding; None when the file
    is none of those. Pillow's format classes are used directly: ``Image.open`` refuses
    the very images whose size is wanted here (its decompression-bomb check)."""
    from PIL import JpegImagePlugin, PngImagePlugin, TiffImagePlugin

    for kind in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile, TiffImagePlugin.TiffImageFile):
        try:
            image = kind(os.fspath(path))
        except (SyntaxError, OSError, ValueError):  # Pillow's "not this format"
            continue
        try:
            return image.size
        finally:
            image.close()
    return None


def _natural(path: Path) -> list[object]:
    """Sort key comparing digit runs as numbers: ``img2`` before ``img10``."""
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(path.name)]

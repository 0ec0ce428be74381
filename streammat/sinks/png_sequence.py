"""PNG sequence sink: one PNG per frame plus ``timestamps.json`` (pts + time_base).

Output is a folder (``frames/`` → ``frames/000000.png`` …) or a pattern
(``out/img_%05d.png``). Frames are written into a hidden temporary folder next to the
output and moved into place at ``close(complete=True)``; ``close(complete=False)`` keeps
them as ``frames.partial/`` (folder) or ``out/img.partial/`` (pattern), each with its own
``timestamps.json``. PNGs are written with FFmpeg's png encoder at compression level 1 (measured
~2.7× faster than ``cv2.imwrite`` at the same size, 720p RGBA).

Sidecar ``timestamps.json`` (version 1)::

    {"version": 1, "time_base": "1/1000", "width": 64, "height": 48,
     "frames": [{"file": "000000.png", "pts": 0}, ...]}

For a pattern output the sidecar is ``<prefix>.timestamps.json`` next to the PNGs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import OutputError
from ..frames import MattedBatch, StreamInfo
from . import _safe_path
from .compositing import Compositor

__all__ = ["PngSequenceSink", "is_pattern", "split_pattern", "SIDECAR"]

log = logging.getLogger(__name__)

SIDECAR = "timestamps.json"
_PATTERN = re.compile(r"%0?\d*d")


def is_pattern(output: str) -> bool:
    return bool(_PATTERN.search(Path(output).name))


def split_pattern(output: str) -> tuple[Path, str, str]:
    """``out/img_%05d.png`` → (``out``, ``img_%05d.png``, base name ``img``)."""
    p = Path(output)
    base = _PATTERN.split(p.name, maxsplit=1)[0].rstrip("_-. ") or "frames"
    return p.parent, p.name, base


class PngSequenceSink:
    """RGBA (or matte gray / composite RGB) PNG files plus a timestamps sidecar."""

    def __init__(
        self, output: str | Path, *, mode: str = "alpha", compositor: Compositor | None = None, threads: int = 2
    ) -> None:
        if mode == "composite" and compositor is None:
            raise ValueError("composite mode needs a compositor")
        self.output = str(output)
        #: PNGs are independent: ``threads`` of them are compressed at once (zlib releases the GIL)
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.mode = mode
        self.compositor = compositor
        self.frames = 0
        self.final_path: Path | None = None
        self._entries: list[dict[str, object]] = []
        self._tmp: Path | None = None
        self._closed = False
        self._opened = False
        if is_pattern(self.output):
            self._folder, self._name, self._base = split_pattern(self.output)
            self._pattern = True
        else:
            self._folder, self._name, self._base = Path(self.output.rstrip("/\\") or "."), "%06d.png", ""
            self._pattern = False

    def open(self, info: StreamInfo) -> None:
        self._info = info
        if self._pattern:
            folder = self._folder
            if not folder.is_dir():
                raise OutputError(f"cannot write {self.output}: folder {folder} does not exist")
            tmp = folder / f".{self._base}.tmp-{os.getpid()}"
        else:
            folder = self._folder
            if folder.exists() and not folder.is_dir():
                raise OutputError(f"cannot write {folder}: it is a file, expected a folder")
            _safe_path.check_file_target(folder / "x") if folder.exists() else _check_parent(folder)
            tmp = _safe_path.temp_sibling(folder)
        if not os.access(tmp.parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {self.output}: permission denied on folder {tmp.parent}")
        try:
            tmp.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {self.output}: {exc.strerror or exc}") from exc
        self._tmp = tmp
        self._pix_fmt = {"alpha": "rgba", "matte": "gray", "composite": "rgb24"}[self.mode]
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sm-png") if self.threads > 1 else None
        self._opened = True
        if self.compositor is not None:
            self.compositor.prepare(info.width, info.height)
        if info.audio_path:
            log.info("PNG sequences have no audio; the audio of %s is not copied", info.audio_path)

    def write(self, batch: MattedBatch) -> None:
        if not self._opened or self._closed or self._tmp is None:
            raise OutputError(f"{self.output} is not open")
        n = len(batch)
        rgb, alpha = batch.batch.images.numpy(), batch.alpha.numpy()
        jobs = [(rgb[i], alpha[i], self._name % (self.frames + i)) for i in range(n)]
        if self._pool is None:
            for job in jobs:
                self._write_one(*job)
        else:
            for future in [self._pool.submit(self._write_one, *job) for job in jobs]:
                future.result()  # in order; re-raises the first error
        for i, (_, _, name) in enumerate(jobs):
            self._entries.append({"file": name, "pts": int(batch.batch.pts[i])})
        self.frames += n

    def _encoder(self) -> av.codec.CodecContext:
        """This thread's PNG encoder (a codec context must not be shared between threads)."""
        enc = getattr(self._local, "encoder", None)
        if enc is None:
            enc = av.codec.CodecContext.create("png", "w")
            enc.width, enc.height = self._info.width, self._info.height
            enc.pix_fmt = self._pix_fmt
            enc.options = {"compression_level": "1"}  # fast; level 3 is ~15 % smaller
            self._local.encoder = enc
        return enc

    def _write_one(self, x: np.ndarray, a: np.ndarray, name: str) -> None:
        w, h = self._info.width, self._info.height
        if x.shape[:2] != (h, w):
            x = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA)
            a = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
        if self.mode == "alpha":
            img = np.empty((h, w, 4), np.uint8)
            img[..., :3] = x
            img[..., 3] = a
        elif self.mode == "matte":
            img = a
        else:
            assert self.compositor is not None
            img = self.compositor.apply(x, a)
        assert self._tmp is not None
        path = self._tmp / name
        try:
            packets = self._encoder().encode(av.VideoFrame.from_ndarray(img, format=self._pix_fmt))
            with open(path, "wb") as fh:
                for packet in packets:
                    fh.write(packet)
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}") from exc

    def _sidecar(self) -> dict[str, object]:
        tb = self._info.time_base
        return {
            "version": 1,
            "time_base": f"{tb.numerator}/{tb.denominator}",
            "width": self._info.width,
            "height": self._info.height,
            "frames": self._entries,
        }

    def close(self, *, complete: bool = True) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        tmp = self._tmp
        if tmp is None:
            return
        text = json.dumps(self._sidecar(), indent=0)
        try:
            if self.frames:
                (tmp / SIDECAR).write_text(text)
            if self._pattern and complete and self.frames:
                for entry in self._entries:
                    os.replace(tmp / str(entry["file"]), self._folder / str(entry["file"]))
                os.replace(tmp / SIDECAR, self._folder / f"{self._base}.{SIDECAR}")
                tmp.rmdir()
                self.final_path = self._folder
                return
        except OSError as exc:
            raise OutputError(f"cannot finish {self.output}: {exc.strerror or exc}") from exc
        final = self._folder / self._base if self._pattern else self._folder
        self.final_path = _safe_path.finish(tmp, final, complete=complete, frames=self.frames)

    @property
    def description(self) -> str:
        kind = {"alpha": "RGBA", "matte": "matte", "composite": "composite"}[self.mode]
        return f"{self.final_path or self.output} ({kind} PNG sequence, {self.frames} frames)"


def _check_parent(folder: Path) -> None:
    parent = folder.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {folder}: folder {parent} does not exist")

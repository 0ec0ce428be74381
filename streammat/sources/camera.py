"""Live capture through OpenCV: webcams, V4L2 devices, network streams, and files played
in real time.

Backpressure is ``"latest"``: a capture thread reads the device as fast as it delivers and
keeps only the newest frame; a frame the consumer did not take before the next one
arrived is dropped and counted (``stats["dropped"]``). Every frame is converted BGR→RGB
once, stamped with its wall-clock capture time (``Frame.capture_time``) and given a pts
from a monotonic clock in ``TIME_BASE``, so a recording keeps the real timing.

A watchdog declares the camera lost when no new frame arrived for ``watchdog`` seconds
(``read()`` fails, blocks, or keeps returning the identical last frame, as OpenCV does
after an unplug), then reopens it with exponential backoff. During the outage the
source simply does not yield; the pipeline and its subscribers carry on.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..frames import MAX_PIXELS, Frame, StreamInfo
from ._capture import (
    PROP_BUFFERSIZE,
    PROP_FPS,
    PROP_HEIGHT,
    PROP_WIDTH,
    Capture,
    bgr_to_rgb,
    default_opener,
    get_prop,
    release_capture,
    same_image,
    set_prop,
)
from .base import SourceLifecycle, check_frame_size, check_max_pixels, check_positive

__all__ = ["CameraSource", "Capture", "list_cameras", "parse_camera_spec", "TIME_BASE"]

log = logging.getLogger(__name__)

#: pts unit of every camera frame (milliseconds: accepted by every encoder and muxer)
TIME_BASE = Fraction(1, 1000)
_POLL = 0.05


def parse_camera_spec(spec: str | int) -> tuple[str, int | str]:
    """``("device", 0 | "/dev/videoN")``, ``("stream", url)`` or ``("file", path)``."""
    if isinstance(spec, int):
        return "device", spec
    s = str(spec).strip()
    if s.isdigit():
        return "device", int(s)
    if s.startswith("/dev/"):
        return "device", s
    if "://" in s:
        return "stream", s
    return "file", os.path.expanduser(s)


def list_cameras() -> list[str]:
    """The video capture devices present (``/dev/video*`` on Linux; empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    return sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))


def _cameras_hint() -> str:
    cams = list_cameras()
    return f"cameras found: {', '.join(cams)}" if cams else "no cameras found"


class CameraSource(SourceLifecycle):
    """A live source from OpenCV (``spec``: ``0``, ``/dev/videoN``, ``rtsp://…``, or a file).

    - ``width``/``height``/``fps``: requests to the device (a file is resized / paced instead).
    - ``watchdog``: seconds without a new frame before the camera counts as lost.
    - ``reconnect``: reopen a lost camera (backoff ``backoff[0]`` doubling up to ``backoff[1]``);
      when False a loss ends the stream.
    - ``loop``: replay a file camera from the start at its end (else the end ends the stream).
    - ``realtime``: pace a file camera at its frame rate (default: on for files).
    - ``freeze_check``: treat identical consecutive frames as a frozen camera (default: on
      for devices and streams, off for files, whose still scenes repeat legitimately).
    - ``max_frames``/``max_seconds``: end the stream after that many delivered frames / seconds.
    - ``max_pixels``: the largest frame (width × height) accepted; the size the capture
      reports is checked before its first read, and every frame after.
    - ``opener``: ``callable(target) -> Capture``, ``cv2.VideoCapture`` by default (tests
      inject synthetic cameras, see ``streammat.testing.SyntheticCamera``).
    """

    backpressure = "latest"

    def __init__(
        self,
        spec: str | int,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        watchdog: float = 2.0,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.5, 8.0),
        loop: bool = False,
        realtime: bool | None = None,
        freeze_check: bool | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        open_timeout: float = 5.0,
        max_pixels: int = MAX_PIXELS,
        opener: Callable[[int | str], Capture] | None = None,
    ) -> None:
        if isinstance(spec, bool) or not isinstance(spec, (str, int, os.PathLike)) or not str(spec).strip():
            raise ConfigError(f"camera: expected an index, /dev/videoN, a URL or a file, got {spec!r}")
        check_positive(watchdog, "watchdog")
        check_positive(open_timeout, "open_timeout")
        for argument, value in (("width", width), ("height", height), ("max_frames", max_frames)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"{argument}: expected a positive int or None, got {value!r}")
        for argument, value in (("fps", fps), ("max_seconds", max_seconds)):
            if value is not None:
                check_positive(value, argument)
        self.max_pixels = check_max_pixels(max_pixels)
        spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
        self.spec = spec
        self.kind, self.target = parse_camera_spec(spec)
        self.width, self.height, self.fps = width, height, fps
        self.watchdog = watchdog
        self.reconnect = reconnect
        self.backoff = backoff
        self.loop = loop
        self.realtime = (self.kind == "file") if realtime is None else realtime
        self.freeze_check = (self.kind != "file") if freeze_check is None else freeze_check
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.open_timeout = max(open_timeout, watchdog)
        self.opener = opener or default_opener
        self.name = str(spec)
        #: the stream description once ``open()`` succeeded
        self.info: StreamInfo | None = None

        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._latest: Frame | None = None
        self._ended = False  # the capture thread finished (end of file, or no reconnect)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._last_pts = -1
        self._index = 0
        self._stats = {
            "captured": 0,
            "delivered": 0,
            "dropped": 0,
            "repeated": 0,
            "lost": 0,
            "reconnects": 0,
            "reopen_failures": 0,
        }
        self._period = 0.0  # file pacing

    # -- Source protocol ----------------------------------------------------------
    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._stats)

    def _open(self) -> StreamInfo:
        """Open the camera and wait for its first frame. Raises ``InputError``."""
        if self.kind == "file" and not os.path.exists(str(self.target)):
            raise InputError(f"{self.spec}: no such file or camera ({_cameras_hint()})")
        cap = self._open_capture()
        if cap is not None:
            try:
                check_frame_size(
                    self.name, int(get_prop(cap, PROP_WIDTH)), int(get_prop(cap, PROP_HEIGHT)), self.max_pixels
                )
            except InputError:
                release_capture(cap)
                raise
        if cap is None:
            if self.kind == "device":
                raise InputError(f"camera {self.spec} cannot be opened ({_cameras_hint()})")
            if self.kind == "stream":
                raise InputError(f"{self.spec}: cannot open the stream")
            raise InputError(f"{self.spec}: OpenCV cannot open it as a video")
        rate = self._rate(cap)
        self._period = 1.0 / float(rate) if rate else 0.0
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(cap,), name="sm-camera", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.open_timeout
        try:
            with self._cond:
                while self._latest is None and self._error is None and not self._ended:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed.is_set():
                        break
                    self._cond.wait(min(left, _POLL))
                first, error = self._latest, self._error
        except BaseException:
            self.close()
            raise
        if first is None:
            self.close()
            if error is not None:
                raise InputError(f"{self.spec}: {error}") from error
            raise InputError(f"{self.spec}: opened, but no frame arrived within {self.open_timeout:g} s")
        h, w = first.image.shape[:2]
        log.info("camera %s: %dx%d at %s fps", self.name, w, h, rate or "?")
        return StreamInfo(width=w, height=h, time_base=TIME_BASE, rate=rate, frames=None, name=self.name)

    def __iter__(self) -> Iterator[Frame]:
        delivered = 0
        first_at: float | None = None
        with self._cond:  # frames replaced while nobody was reading yet (model loading) don't count
            self._stats["dropped"] = 0
        end_at: float | None = None  # --duration also ends a run whose camera is down
        while not self._closed.is_set():
            with self._cond:
                while self._latest is None and not self._ended and not self._closed.is_set():
                    if end_at is not None and time.monotonic() >= end_at:
                        return
                    self._cond.wait(_POLL)
                frame, self._latest = self._latest, None
                if frame is None:
                    if self._error is not None:
                        raise InputError(f"{self.spec}: {self._error}") from self._error
                    return  # ended or closed
                self._stats["delivered"] += 1
            if first_at is None:
                first_at = time.monotonic()
                end_at = None if self.max_seconds is None else first_at + self.max_seconds
            yield frame
            delivered += 1
            if self.max_frames is not None and delivered >= self.max_frames:
                return
            if self.max_seconds is not None and time.monotonic() - first_at >= self.max_seconds:
                return

    def _release(self) -> None:
        """Stop capturing and release the camera. Idempotent, safe from any thread."""
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=0.5)  # a reader stuck in a driver call is a daemon; never wait on it

    # -- capture ------------------------------------------------------------------
    def _open_capture(self) -> Capture | None:
        try:
            cap = self.opener(self.target)
        except Exception as exc:  # noqa: BLE001 - any backend failure is "could not open"
            log.debug("camera %s: open failed: %s", self.name, exc)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                release_capture(cap)
            return None
        if self.kind != "file":
            requests = ((PROP_WIDTH, self.width), (PROP_HEIGHT, self.height), (PROP_FPS, self.fps))
            for prop, value in requests:
                if value:
                    set_prop(cap, prop, value)
            set_prop(cap, PROP_BUFFERSIZE, 1)  # keep the driver from queueing stale frames
        return cap

    def _rate(self, cap: Capture) -> Fraction | None:
        value = self.fps if (self.fps and self.kind == "file") else get_prop(cap, PROP_FPS)
        if not value or value <= 0 or value > 1000:
            value = self.fps
        return Fraction(value).limit_denominator(1001) if value else None

    def _run(self, cap: Capture) -> None:
        """The supervisor: reads through a reader thread, watches it, reopens on loss."""
        try:
            delay = self.backoff[0]
            while not self._closed.is_set():
                outcome = self._watch(cap)
                if outcome == "closed":
                    return
                if outcome == "eof":
                    if self.loop:
                        new = self._open_capture()
                        if new is not None:
                            cap = new
                            continue
                        gone = self.kind == "file" and not os.path.exists(str(self.target))
                        problem = "the file no longer exists" if gone else "it cannot be reopened"
                        log.warning("camera %s: cannot loop: %s; ending the stream", self.name, problem)
                    self._end()
                    return
                # lost: reconnect with backoff
                with self._cond:
                    self._stats["lost"] += 1
                more = "; reconnecting" if self.reconnect else ""
                log.warning("camera %s lost (%s)%s", self.name, outcome, more)
                if not self.reconnect:
                    self._end()
                    return
                lost_at = time.monotonic()
                delay = self.backoff[0]
                while not self._closed.is_set():
                    new = self._open_capture()
                    if new is not None:
                        cap = new
                        with self._cond:
                            self._stats["reconnects"] += 1
                        log.info("camera %s recovered after %.1f s", self.name, time.monotonic() - lost_at)
                        break
                    with self._cond:
                        self._stats["reopen_failures"] += 1
                    log.debug("camera %s: reopen failed, next try in %.1f s", self.name, delay)
                    if self._closed.wait(delay):
                        return
                    delay = min(delay * 2, self.backoff[1])
        except BaseException as exc:  # noqa: BLE001 - reported to the consumer
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _watch(self, cap: Capture) -> str:
        """Read ``cap`` on a reader thread until it ends, fails or stalls; release it."""
        state: dict[str, Any] = {"last": time.monotonic(), "done": None}
        abandoned = threading.Event()
        wake = threading.Event()
        reader = threading.Thread(
            target=self._read_loop, args=(cap, state, abandoned, wake), name="sm-camera-read", daemon=True
        )
        reader.start()
        while True:
            if wake.wait(_POLL):
                wake.clear()
            if self._closed.is_set():
                abandoned.set()
                reader.join(timeout=0.2)
                return "closed"
            if state["done"] is not None:
                reader.join(timeout=0.2)
                if state.get("error") is not None:
                    raise state["error"]
                return str(state["done"])
            stalled = time.monotonic() - state["last"]
            if stalled > max(self.watchdog, 2 * self._period):
                abandoned.set()  # the reader releases the capture if its read() ever returns
                frozen = state.get("frozen", False)
                return f"{'identical frames' if frozen else 'no frame'} for {stalled:.1f} s"

    def _read_loop(
        self, cap: Capture, state: dict[str, Any], abandoned: threading.Event, wake: threading.Event
    ) -> None:
        prev: np.ndarray | None = None
        next_due = time.monotonic()
        try:
            while not abandoned.is_set():
                if self.realtime and self._period:
                    now = time.monotonic()
                    if next_due > now and abandoned.wait(next_due - now):
                        break
                    next_due = max(next_due + self._period, time.monotonic() - self._period)
                try:
                    ok, image = cap.read()
                except Exception as exc:  # noqa: BLE001 - a backend error is a lost camera
                    log.debug("camera %s: read raised %s", self.name, exc)
                    ok, image = False, None
                if abandoned.is_set():
                    break
                if not ok or image is None:
                    state["done"] = "eof" if self.kind == "file" else "read failed"
                    break
                now_wall, now_mono = time.time(), time.monotonic()
                if self.freeze_check and prev is not None and same_image(prev, image):
                    state["frozen"] = True
                    with self._cond:
                        self._stats["repeated"] += 1
                    continue
                try:
                    check_frame_size(self.name, image.shape[1], image.shape[0], self.max_pixels)
                except InputError as exc:  # the stream changed to an oversized frame
                    state["error"], state["done"] = exc, "error"
                    break
                prev = image
                state["last"], state["frozen"] = now_mono, False
                self._deliver(image, now_wall, now_mono)
        finally:
            release_capture(cap)
            wake.set()

    def _deliver(self, image: np.ndarray, wall: float, mono: float) -> None:
        rgb = bgr_to_rgb(image)
        if self.kind == "file" and self.width and self.height and rgb.shape[:2] != (self.height, self.width):
            import cv2

            rgb = cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)
        pts = max(round((mono - self._t0) / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        frame = Frame(rgb, pts, TIME_BASE, self._index, capture_time=wall)
        self._index += 1
        with self._cond:
            self._stats["captured"] += 1
            if self._latest is not None:
                self._stats["dropped"] += 1
            self._latest = frame
            self._cond.notify_all()

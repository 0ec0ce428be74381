"""One lifecycle for every source: ``info``, a second ``open()``, ``open()`` after ``close()``,
``with``, and constructor arguments checked with ``ConfigError``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streammat.errors import ConfigError, InputError
from streammat.frames import StreamInfo
from streammat.sources import Source
from streammat.sources.camera import CameraSource
from streammat.sources.file import FileSource
from streammat.sources.images import ImageSequenceSource
from streammat.testing import SyntheticCamera


@pytest.fixture
def make_source(clip, tmp_path):
    cams: list[SyntheticCamera] = []

    def make(kind: str):
        if kind == "file":
            return FileSource(clip(frames=4))
        if kind == "images":
            folder = tmp_path / "frames"
            folder.mkdir(exist_ok=True)
            for i in range(4):
                cv2.imwrite(str(folder / f"{i:06d}.png"), np.full((48, 64, 3), i * 40, np.uint8))
            return ImageSequenceSource(folder)
        cams.append(SyntheticCamera(width=64, height=48))
        return CameraSource(0, opener=cams[-1], max_frames=4)

    yield make
    for cam in cams:
        cam.close()


KINDS = ["file", "images", "camera"]


@pytest.mark.parametrize("kind", KINDS)
def test_info_is_none_until_open_then_the_stream_info(make_source, kind):
    src = make_source(kind)
    assert isinstance(src, Source) and src.info is None
    info = src.open()
    try:
        assert isinstance(info, StreamInfo) and src.info is info and (info.width, info.height) == (64, 48)
    finally:
        src.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_open_returns_the_same_info_without_reopening(make_source, kind):
    src = make_source(kind)
    opens = []
    real_open = src._open
    src._open = lambda: opens.append(1) or real_open()
    try:
        first = src.open()
        assert src.open() is first and len(opens) == 1
        assert len(list(src)) == 4
    finally:
        src.close()


@pytest.mark.parametrize("kind", KINDS)
def test_open_after_close_is_an_input_error(make_source, kind):
    src = make_source(kind)
    src.open()
    src.close()
    src.close()  # idempotent
    with pytest.raises(InputError, match=r": the source is closed; create a new one$"):
        src.open()


@pytest.mark.parametrize("kind", KINDS)
def test_sources_are_context_managers(make_source, kind):
    src = make_source(kind)
    with src as opened:
        assert opened is src and src.info is not None
        frames = list(src)
    assert len(frames) == 4
    with pytest.raises(InputError, match="closed"):
        src.open()


def test_a_failed_open_leaves_the_source_closed(tmp_path):
    src = FileSource(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="no such file"):
        src.open()
    with pytest.raises(InputError, match="closed"):
        src.open()


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: FileSource(123), "path: expected a file path or URL (str or Path), got int 123"),
        (lambda: FileSource(None), "path: expected a file path or URL (str or Path), got NoneType None"),
        (lambda: FileSource(""), "path: expected a file path or URL, got ''"),
        (lambda: FileSource("a.mp4", threads=-3), "threads: expected an int >= 0 (0 = automatic), got -3"),
        (lambda: FileSource("a.mp4", max_pixels=-1), "max_pixels: expected a positive int"),
        (lambda: FileSource("a.mp4", max_pixels=1.5), "max_pixels: expected a positive int"),
        (lambda: FileSource("a.mp4", timeout=0), "timeout: expected a positive number of seconds, got 0"),
        (lambda: CameraSource(0, watchdog=-1), "watchdog: expected a positive number of seconds, got -1"),
        (lambda: CameraSource(0, max_pixels=0), "max_pixels: expected a positive int"),
        (lambda: CameraSource(0, width=-2), "width: expected a positive int or None, got -2"),
        (lambda: CameraSource(None), "camera: expected an index, /dev/videoN, a URL or a file, got None"),
        (lambda: ImageSequenceSource("frames", rate=0), "rate: expected a positive number of frames per second"),
        (lambda: ImageSequenceSource("frames", max_pixels="8k"), "max_pixels: expected a positive int"),
        (lambda: ImageSequenceSource(["frames"]), "path: expected a file path or URL (str or Path), got list"),
    ],
)
def test_bad_constructor_arguments_are_config_errors(make, argument):
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).startswith(argument) and "\n" not in str(err.value)

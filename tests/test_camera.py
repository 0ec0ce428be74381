"""CameraSource: newest-frame policy, real-time files, watchdog + reconnect, clean stops."""

from __future__ import annotations

import _thread
import logging
import queue
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

from streammat.errors import InputError, Interrupted
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.pipeline import Pipeline
from streammat.sources import camera as camera_mod
from streammat.sources.camera import CameraSource, parse_camera_spec
from streammat.testing import SyntheticCamera, camera_clip, frame_number, synthetic_frame


@pytest.fixture
def synthetic():
    cams: list[SyntheticCamera] = []

    def make(**kwargs) -> SyntheticCamera:
        cam = SyntheticCamera(**kwargs)
        cams.append(cam)
        return cam

    yield make
    for cam in cams:
        cam.close()


def collect(source: CameraSource, limit: float = 10.0) -> list:
    """(arrival monotonic time, frame) for every frame, bounded by ``limit`` seconds."""
    out = []
    deadline = time.monotonic() + limit
    for frame in source:
        out.append((time.monotonic(), frame))
        if time.monotonic() > deadline:
            break
    return out


class CollectingSink:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.numbers: list[int] = []
        self.complete: bool | None = None

    def open(self, info: StreamInfo) -> None:
        self.info = info

    def write(self, batch: MattedBatch) -> None:
        for f in batch.batch.frames():
            self.latencies.append(time.time() - f.capture_time)
            self.numbers.append(frame_number(f.image))

    def close(self, *, complete: bool = True) -> None:
        if self.complete is None:
            self.complete = complete

    @property
    def description(self) -> str:
        return "collector"


class SlowMatter:
    def __init__(self, delay: float = 0.1) -> None:
        self.delay = delay

    def __call__(self, batch: Batch) -> MattedBatch:
        time.sleep(self.delay)
        return MattedBatch(batch, torch.full(batch.images.shape[:3], 255, dtype=torch.uint8))


def test_parse_spec():
    assert parse_camera_spec("0") == ("device", 0)
    assert parse_camera_spec(2) == ("device", 2)
    assert parse_camera_spec("/dev/video1") == ("device", "/dev/video1")
    assert parse_camera_spec("rtsp://cam/stream")[0] == "stream"
    assert parse_camera_spec("clip.mp4") == ("file", "clip.mp4")


def test_frames_are_rgb_numbered_stamped_and_timed(synthetic):
    cam = synthetic(width=32, height=24)
    src = CameraSource(0, opener=cam, max_frames=10)
    t0 = time.time()
    info = src.open()
    assert (info.width, info.height, info.time_base, info.rate) == (32, 24, Fraction(1, 1000), 30)
    frames = [f for _, f in collect(src)]
    src.close()
    assert len(frames) == 10
    numbers = [frame_number(f.image) for f in frames]
    assert numbers == sorted(numbers) and len(set(numbers)) == 10
    bgr = synthetic_frame(numbers[3], 32, 24)
    np.testing.assert_array_equal(np.asarray(frames[3].image), bgr[:, :, ::-1])  # converted once, to RGB
    assert all(f.time_base == Fraction(1, 1000) for f in frames)
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    # pts follow the real clock: ~33 ms apart at 30 fps
    assert 200 <= pts[-1] - pts[0] <= 2000
    assert all(t0 - 0.1 <= f.capture_time <= time.time() for f in frames)
    assert src.stats["delivered"] == 10


def test_file_camera_plays_in_real_time_and_loops(tmp_path):
    clip = camera_clip(tmp_path / "clip.avi", frames=10, fps=30)
    src = CameraSource(str(clip), loop=True, max_frames=25)
    info = src.open()
    assert (info.width, info.height) == (64, 48)
    frames = [f for _, f in collect(src)]
    src.close()
    assert [frame_number(f.image) for f in frames] == list(range(10)) * 2 + list(range(5))
    assert frames[-1].pts - frames[0].pts >= 600  # 24 frame periods of 33 ms, not as fast as decode


def test_a_looped_file_that_disappears_ends_the_stream_with_a_warning(tmp_path, caplog):
    clip = camera_clip(tmp_path / "clip.avi", frames=6)
    src = CameraSource(str(clip), loop=True, max_seconds=20)
    with caplog.at_level(logging.WARNING, logger="streammat.sources.camera"), src:
        clip.unlink()  # the open capture still reads it; the next loop cannot reopen it
        frames = collect(src)
    assert len(frames) == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"camera {clip}: cannot loop: the file no longer exists; ending the stream"]


def test_file_camera_without_loop_ends(tmp_path):
    clip = camera_clip(tmp_path / "clip.avi", frames=6)
    src = CameraSource(str(clip))
    src.open()
    frames = collect(src)
    src.close()
    assert len(frames) == 6
    assert src.stats["lost"] == 0


def test_missing_camera_lists_the_ones_that_exist(synthetic, monkeypatch):
    monkeypatch.setattr(camera_mod, "list_cameras", lambda: [])
    with pytest.raises(InputError, match="camera 3 cannot be opened.*no cameras found"):
        CameraSource(3, opener=synthetic(missing=True)).open()
    monkeypatch.setattr(camera_mod, "list_cameras", lambda: ["/dev/video0", "/dev/video2"])
    with pytest.raises(InputError, match="cameras found: /dev/video0, /dev/video2"):
        CameraSource("/dev/video7", opener=synthetic(missing=True)).open()
    with pytest.raises(InputError, match="no such file or camera"):
        CameraSource("no-such-clip.mp4").open()


def test_newest_frame_policy_under_slow_inference(synthetic, monkeypatch):
    from streammat import pipeline as pipeline_mod

    sizes: dict[int, int] = {}
    original = queue.Queue._put

    def recording_put(self, item):
        original(self, item)
        real = sum(1 for x in self.queue if x is not pipeline_mod._EOS)
        sizes[id(self)] = max(sizes.get(id(self), 0), real)

    monkeypatch.setattr(queue.Queue, "_put", recording_put)
    cam = synthetic(width=32, height=24, fps=30)
    src = CameraSource(0, opener=cam, max_seconds=1.5)
    sink = CollectingSink()
    result = Pipeline(src, SlowMatter(0.1), [sink], batch_size=1, queue_depth=1).run()
    assert result.complete
    captured = src.stats["captured"]
    assert result.source_stats["dropped"] > 0
    assert len(sink.numbers) < captured / 2  # ~10 of ~45 frames went through the 100 ms model
    assert sink.numbers == sorted(sink.numbers)
    assert max(sizes.values()) <= 1  # no queue ever held more than one waiting item
    # bounded latency: one inference plus a wait for the stage ahead, never a growing backlog
    assert max(sink.latencies) < 0.5
    assert max(sink.latencies[-3:]) < 0.5


def test_unplugged_camera_is_reconnected_with_backoff(synthetic, caplog):
    caplog.set_level(logging.INFO, logger="streammat.sources.camera")
    cam = synthetic(fault="unplug", fault_after=10, failed_reopens=2)
    src = CameraSource(0, opener=cam, watchdog=2.0, backoff=(0.2, 1.0), max_frames=20)
    src.open()
    frames = collect(src)
    src.close()
    numbers = [frame_number(f.image) for _, f in frames]
    assert numbers == list(range(20))  # frames resume, numbering continues
    gap = frames[10][0] - frames[9][0]
    assert 0.2 < gap < 2.0 + 0.2 + 0.4 + 1.0  # read failure seen at once, then 0.2 + 0.4 s backoff
    stats = src.stats
    assert (stats["lost"], stats["reconnects"], stats["reopen_failures"]) == (1, 1, 2)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert any(level == "WARNING" and "lost" in m for level, m in messages)
    assert any(level == "INFO" and "recovered" in m for level, m in messages)


@pytest.mark.parametrize("fault", ["block", "repeat"])
def test_stalled_camera_is_detected_by_the_watchdog(synthetic, caplog, fault):
    caplog.set_level(logging.WARNING, logger="streammat.sources.camera")
    cam = synthetic(fault=fault, fault_after=5)
    src = CameraSource(0, opener=cam, watchdog=0.6, backoff=(0.1, 0.5), max_frames=10)
    src.open()
    frames = collect(src)
    src.close()
    numbers = [frame_number(f.image) for _, f in frames]
    assert numbers == list(range(10))  # a frozen camera's repeats are not delivered
    gap = frames[5][0] - frames[4][0]
    assert 0.5 < gap < 0.6 + 1.0
    assert src.stats["lost"] == 1 and src.stats["reconnects"] == 1
    if fault == "repeat":
        assert src.stats["repeated"] > 0
        assert any("identical frames" in r.getMessage() for r in caplog.records)
    else:
        assert any("no frame" in r.getMessage() for r in caplog.records)


def test_lost_camera_without_reconnect_ends_the_stream(synthetic):
    cam = synthetic(fault="unplug", fault_after=5)
    src = CameraSource(0, opener=cam, reconnect=False)
    src.open()
    frames = collect(src)
    src.close()
    assert len(frames) == 5 and src.stats["lost"] == 1 and cam.opens == 1


def test_pipeline_stop_during_an_outage_returns_promptly(synthetic):
    cam = synthetic(fault="unplug", fault_after=3, failed_reopens=1000)
    src = CameraSource(0, opener=cam, backoff=(0.1, 0.2))
    sink = CollectingSink()
    pipe = Pipeline(src, SlowMatter(0.0), [sink], batch_size=1, queue_depth=1)
    timer = threading.Timer(0.8, pipe.stop)
    timer.start()
    t = time.monotonic()
    result = pipe.run()
    timer.join()
    assert time.monotonic() - t < 2.5
    assert result.frames_out == 3 and sink.complete is not None


def test_ctrl_c_stops_within_a_second_and_closes_sinks_as_partial(synthetic):
    cam = synthetic(width=32, height=24)
    src = CameraSource(0, opener=cam)
    sink = CollectingSink()
    pipe = Pipeline(src, SlowMatter(0.02), [sink], batch_size=1, queue_depth=1)
    timer = threading.Timer(0.6, _thread.interrupt_main)
    timer.start()
    t = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            pipe.run()
            time.sleep(5)  # pragma: no cover - only reached if run() returned
        stopped_in = time.monotonic() - t - 0.6
    finally:
        timer.join()
    assert stopped_in < 1.0
    assert sink.complete is False and len(sink.numbers) > 3
    assert not [t for t in threading.enumerate() if t.name == "sm-camera" and t.is_alive()]


def test_max_seconds_ends_the_stream_even_while_the_camera_is_down(synthetic):
    cam = synthetic(fault="unplug", fault_after=3, failed_reopens=1000)
    src = CameraSource(0, opener=cam, backoff=(0.1, 0.2), max_seconds=0.8)
    src.open()
    t = time.monotonic()
    frames = collect(src)
    src.close()
    assert len(frames) == 3
    assert time.monotonic() - t < 2.0

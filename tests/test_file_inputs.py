"""FileSource inputs beyond plain files: devices, named pipes, standard input, raw streams
without timestamps, audio-only files, and the ``zmq+`` prefix rule of ``open_source``."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from streammat.cli import main
from streammat.errors import InputError
from streammat.readback import probe
from streammat.sources import ZMQ_FORMS, open_source, zmq_url
from streammat.sources.file import FileSource
from streammat.testing.media import _write_tone

MODEL = ["--model", "u2netp", "--no-progress"]


def raw_h264(path: Path, frames: int = 25, rate: int = 25) -> Path:
    """An H.264 elementary stream: no container, so no timestamps at all."""
    with av.open(str(path), "w", format="h264") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5 % 256, np.uint8), format="rgb24")
            vf.pts = i
            for pkt in s.encode(vf):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def test_raw_h264_frames_get_timestamps_from_the_frame_rate(tmp_path, caplog):
    src = FileSource(raw_h264(tmp_path / "raw.h264"))
    with caplog.at_level(logging.WARNING, logger="streammat.sources.file"), src:
        seconds = [float(f.pts * f.time_base) for f in src]
    assert seconds == pytest.approx([i / 25 for i in range(25)], abs=1e-6)
    warnings = [r for r in caplog.records if "timestamps" in r.getMessage()]
    assert len(warnings) == 1 and "25 fps" in warnings[0].getMessage()


@pytest.mark.parametrize("name", ["out.mov", "out.webm"])
def test_raw_h264_output_lasts_frames_over_rate(tiny_home, tmp_path, name):
    src = raw_h264(tmp_path / "raw.h264", frames=50)
    out = tmp_path / name
    assert main(["process", str(src), "-o", str(out), *MODEL]) == 0
    info = probe(out)
    seconds = [float(p * info["time_base"]) for p in info["pts"]]
    assert info["frames"] == 50 and all(b > a for a, b in zip(seconds, seconds[1:], strict=False))
    assert info["duration"] == pytest.approx(50 / 25, abs=0.05)


def test_a_device_is_named_as_a_device():
    with pytest.raises(InputError, match=r"^/dev/zero: is a device, not a video file") as err:
        FileSource("/dev/zero").open()
    assert "\n" not in str(err.value)


def test_a_named_pipe_is_read(clip, tmp_path):
    data = clip("in.mkv", frames=8, audio="aac").read_bytes()
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as fh:  # blocks until the reader opens the pipe
            fh.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with FileSource(fifo) as src:
            frames = list(src)
            # a pipe cannot be read a second time, so its audio cannot be copied
            assert src.info.audio_path is None
        assert len(frames) == 8
    finally:
        if writer.is_alive():  # the reader failed before opening: let the writer finish
            with open(fifo, "rb") as fh:
                fh.read()
        writer.join(timeout=5)
    assert not writer.is_alive()


@pytest.mark.slow
def test_stdin_is_read_when_the_input_is_a_dash(clip, tmp_path, cli_env):
    data = clip("in.mkv", width=64, height=48, frames=9).read_bytes()
    out = tmp_path / "out.mkv"
    proc = subprocess.run(
        [sys.executable, "-m", "streammat", "process", "-", "-o", str(out), *MODEL],
        input=data,
        capture_output=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert probe(out)["frames"] == 9


def test_an_audio_only_file_lists_its_streams_with_codecs(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        _write_tone(out.add_stream("aac", rate=48000, layout="stereo"), out, seconds=0.2)
    with pytest.raises(InputError, match=r"no video stream \(streams: audio \(aac\)\)"):
        FileSource(path).open()


@pytest.mark.parametrize(
    "spec, url",
    [
        ("zmq+tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
        ("zmq+ipc:///tmp/x.sock", "ipc:///tmp/x.sock"),
        ("zmq+inproc://frames", "inproc://frames"),
        ("zmq+clip.mp4", None),
        ("zmq+udp://host:1", None),
        ("tcp://127.0.0.1:5555", None),
        ("clip.mp4", None),
    ],
)
def test_zmq_url_accepts_only_zeromq_transports(spec, url):
    assert zmq_url(spec) == url


def test_a_file_named_zmq_plus_something_is_a_file(clip, tmp_path, monkeypatch):
    clip("zmq+clip.mp4", frames=3)
    monkeypatch.chdir(tmp_path)
    src = open_source("zmq+clip.mp4")
    assert isinstance(src, FileSource)
    with src:
        assert len(list(src)) == 3


def test_a_missing_zmq_plus_name_lists_the_accepted_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        open_source("zmq+clip.mp4")
    assert str(err.value) == f"zmq+clip.mp4: no such file, and not a ZeroMQ input (expected {ZMQ_FORMS})"

"""``streammat live`` end to end (file camera + tiny model), and the preview / virtual camera sinks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import types
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from streammat.cli import main
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.testing import camera_clip

MODEL = ["--model", "u2netp"]  # the tiny model the tiny_home fixture installs


def _batch(h: int = 24, w: int = 32, value: int = 200, alpha: int = 255) -> MattedBatch:
    b = Batch(
        images=torch.full((1, h, w, 3), value, dtype=torch.uint8),
        pts=(0,),
        time_base=Fraction(1, 1000),
        indices=(0,),
        capture_times=(time.time() - 0.04,),
    )
    return MattedBatch(b, torch.full((1, h, w), alpha, dtype=torch.uint8))


def _decode(path: Path) -> tuple[list[float], str]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * f.time_base) for f in c.decode(s)]
        return times, s.codec_context.pix_fmt or ""


def test_live_records_alpha_video_with_real_timing(tmp_path, tiny_home, capsys):
    clip = camera_clip(tmp_path / "cam.avi", frames=10, fps=30)
    out = tmp_path / "out.mkv"
    rc = main(["live", "--camera", str(clip), "--loop", "--frames", "30", "-o", str(out), *MODEL])
    err = capsys.readouterr().err
    assert rc == 0, err
    times, pix_fmt = _decode(out)
    assert 15 <= len(times) <= 30  # a live run may drop a few frames on a busy machine
    assert "a" in pix_fmt.replace("yuv", "")  # yuva…: alpha kept
    assert times == sorted(times)
    assert 0.6 < times[-1] - times[0] < 2.0  # real-time timing (29 periods of 33 ms), not frame counts
    assert "frames in" in err and "p95" in err and "dropped" in err


def test_live_publishes_frames_with_capture_time(tmp_path, tiny_home, capsys):
    import zmq

    clip = camera_clip(tmp_path / "cam.avi", frames=10, fps=30)
    url = f"ipc://{tmp_path}/live.sock"
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(url)
    headers: list[dict] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            if sub.poll(50):
                parts = sub.recv_multipart()
                headers.append(json.loads(parts[1]))

    t = threading.Thread(target=receive)
    t.start()
    try:
        rc = main(["live", "--camera", str(clip), "--loop", "--frames", "45", "--publish", url, *MODEL])
        time.sleep(0.2)
    finally:
        done.set()
        t.join(5)
        sub.close()
    assert rc == 0, capsys.readouterr().err
    frames = [h for h in headers if h.get("kind") == "frame"]
    assert frames, headers
    assert all(h["capture_time"] and h["capture_time"] <= time.time() for h in frames)
    assert frames[0]["time_base"] == "1/1000"


@pytest.mark.slow
def test_ctrl_c_is_the_normal_end_of_a_live_recording(tmp_path, cli_env):
    """SIGINT → the pipeline stops and the recording is finalized within ~1 s (the summary
    line is printed after that) as a complete file whose first frame is at time 0: Ctrl-C
    is how a live recording ends. The process exit that follows gets a wider bound."""
    clip = camera_clip(tmp_path / "cam.avi", frames=10, fps=30)
    out = tmp_path / "out.mov"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammat", "live", "--camera", str(clip), "--loop", "-o", str(out), *MODEL],
        env=cli_env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), ln) for ln in proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:  # wait until frames are being written
            tmp = list(tmp_path.glob(".out.tmp-*.mov"))
            if tmp and tmp[0].stat().st_size > 20_000:
                break
            time.sleep(0.1)
        assert proc.poll() is None, lines
        time.sleep(0.3)
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        exited_in = time.monotonic() - t
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = "".join(ln for _, ln in lines)
    assert proc.returncode == 0, err
    summary_at = next(at for at, ln in lines if "frames in" in ln)  # printed after the sinks closed
    assert summary_at - t < 1.0, err
    assert exited_in < 6.0, err
    assert out.exists() and not (tmp_path / "out.partial.mov").exists(), (list(tmp_path.iterdir()), err)
    assert not list(tmp_path.glob(".out.tmp-*")), "no temporary file left"
    times, _ = _decode(out)
    assert len(times) > 3 and times[0] == 0.0, times[:3]


def test_live_with_smoothing_and_refinement_imports_no_torch(tmp_path, cli_env):
    """A live recording on the CPU, smoothed (live's default) and refined, never imports
    torch (about 2 s of start-up on its own): the matte controls run on numpy arrays with
    OpenCV. ``-X importtime`` lists every module the run imported."""
    clip = camera_clip(tmp_path / "cam.avi", frames=10, fps=30)
    out = tmp_path / "out.mkv"
    cmd = [sys.executable, "-X", "importtime", "-m", "streammat", "live", "--camera", str(clip), "--loop"]
    cmd += ["--frames", "12", "--refine", "guided", "-o", str(out), *MODEL]
    run = subprocess.run(cmd, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.is_file()
    imported = {ln.rsplit("|", 1)[1].strip() for ln in run.stderr.splitlines() if ln.startswith("import time:")}
    assert "streammat.matting.motion" in imported and "cv2" in imported  # the listing is real
    assert {m.split(".")[0] for m in imported} & {"torch"} == set()


def test_preview_without_gui_says_so(tmp_path, capsys):
    clip = camera_clip(tmp_path / "cam.avi", frames=3)
    from streammat.sinks.preview import preview_unavailable

    if preview_unavailable() is None:  # pragma: no cover - a desktop with GUI OpenCV
        pytest.skip("a preview window could open here")
    assert main(["live", "--camera", str(clip), "--preview"]) == 1
    err = capsys.readouterr().err
    assert "preview" in err and ("GUI" in err or "display" in err)
    assert "Traceback" not in err


def test_virtual_camera_without_pyvirtualcam_says_how_to_install(tmp_path, capsys, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("pyvirtualcam") is not None:  # pragma: no cover
        pytest.skip("pyvirtualcam is installed")
    clip = camera_clip(tmp_path / "cam.avi", frames=3)
    assert main(["live", "--camera", str(clip), "--virtual-camera"]) == 1
    assert "streammat[virtualcam]" in capsys.readouterr().err


def test_missing_camera_is_one_clear_line(tmp_path, capsys):
    assert main(["live", "--camera", "7", "-o", str(tmp_path / "x.mov")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "camera 7 cannot be opened" in err[0] and "cameras" in err[0]


def test_nothing_to_do_is_a_usage_error(tmp_path, capsys):
    clip = camera_clip(tmp_path / "cam.avi", frames=3)
    assert main(["live", "--camera", str(clip)]) == 2
    assert "nothing to write: give -o OUTPUT, --publish URL, --preview" in capsys.readouterr().err


def test_preview_sink_renders_fps_and_latency_and_quits_on_q():
    from streammat.sinks.preview import PreviewSink

    shown: list[np.ndarray] = []
    quits: list[bool] = []
    sink = PreviewSink(show=lambda img: shown.append(img) or ord("q"), on_quit=lambda: quits.append(True))
    sink.open(StreamInfo(width=32, height=24, time_base=Fraction(1, 1000)))
    sink.write(_batch(h=48, w=160, alpha=0))
    sink.close()
    sink.close()
    assert shown[0].shape == (48, 160, 3) and quits == [True]
    assert len(np.unique(shown[0][:30, :120].reshape(-1, 3), axis=0)) > 2  # checkerboard + overlay text


def test_virtual_camera_sink_composites_and_keeps_its_size(monkeypatch):
    sent: list[np.ndarray] = []

    class FakeCamera:
        def __init__(self, width, height, fps, fmt=None, **kwargs):
            self.size, self.device = (width, height), "/dev/video9"
            self.closed = False

        def send(self, frame):
            sent.append(frame.copy())

        def close(self):
            self.closed = True

    fake = types.SimpleNamespace(Camera=FakeCamera, PixelFormat=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    from streammat.sinks.virtual_camera import VirtualCameraSink

    sink = VirtualCameraSink(background="green")
    sink.open(StreamInfo(width=32, height=24, time_base=Fraction(1, 1000), rate=Fraction(30)))
    sink.write(_batch(alpha=0))  # fully transparent: all background
    sink.write(_batch(h=12, w=16, alpha=255))  # a reconnected camera at another size
    sink.close()
    assert sent[0].shape == (24, 32, 3) and (sent[0] == (0, 255, 0)).all()
    assert sent[1].shape == (24, 32, 3) and (sent[1] == 200).all()
    assert "/dev/video9" in sink.description and "2 frames" in sink.description


def test_live_is_listed_in_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "live" in capsys.readouterr().out


def test_live_takes_its_settings_from_a_config_file(tmp_path, tiny_home, capsys):
    clip = camera_clip(tmp_path / "cam.avi", frames=10, fps=30)
    cfg = tmp_path / "live.yaml"
    cfg.write_text(f"live:\n  camera: {clip}\n  model: u2netp\n  threshold: 0.5\n  smoothing: 0.0\n")
    out = tmp_path / "out.mkv"
    rc = main(["live", "--config", str(cfg), "--loop", "--frames", "12", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    from streammat.readback import read_rgba

    alpha = np.stack([f.image[..., 3] for f in read_rgba(out)])
    assert set(np.unique(alpha)) <= {0, 255}  # the config's threshold was applied
    bad = tmp_path / "bad.yaml"
    bad.write_text("live:\n  every: 0\n")
    assert main(["live", "--config", str(bad), "--camera", str(clip)]) == 2
    assert "every" in capsys.readouterr().err

"""Data safety at the edges: every decodable frame of a broken input is written, and
signals at any moment (one, two, SIGTERM) end a run promptly with a playable partial and no
temporary file left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from streammat.cli import main
from streammat.readback import read_rgba
from streammat.testing import make_clip

MODEL = ["--model", "u2netp"]


def _decodable(path: Path) -> int:
    """Frames PyAV itself decodes from ``path`` (what a user could recover by hand)."""
    n = 0
    with av.open(str(path)) as c:
        try:
            for _ in c.decode(video=0):
                n += 1
        except av.FFmpegError:
            pass
    return n


def test_every_decodable_frame_of_a_truncated_file_is_written(tiny_home, tmp_path, capsys):
    src = make_clip(tmp_path / "t.mkv", width=64, height=48, frames=200, rate=25, codec="mpeg4")
    cut = tmp_path / "cut.mkv"
    data = src.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    decodable = _decodable(cut)
    assert 50 < decodable < 200
    out = tmp_path / "t.mov"
    assert main(["process", str(cut), "-o", str(out), *MODEL, "--batch-size", "8", "--no-progress"]) == 1
    partial = tmp_path / "t.partial.mov"
    assert partial.exists() and not out.exists()
    assert len(list(read_rgba(partial))) == decodable, capsys.readouterr().err


def _start(tmp_path: Path, cli_env: dict, out: str) -> tuple[subprocess.Popen, Path]:
    src = tmp_path / "long.mp4"
    if not src.exists():
        make_clip(src, width=96, height=64, frames=3000, rate=30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammat", "process", str(src), "-o", str(tmp_path / out), *MODEL, "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    return proc, tmp_path / out


def _written(tmp: Path) -> bool:
    """Frames have reached the temporary output (beyond a container header)."""
    try:
        if tmp.is_dir():
            return len(list(tmp.iterdir())) >= 2
        return tmp.stat().st_size > 20_000
    except FileNotFoundError:
        return False


def _wait_for_output(tmp_path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(_written(p) for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")):
            return
        time.sleep(0.05)


@pytest.mark.parametrize(
    "out, signals",
    [("out.mov", "SIGINT SIGINT"), ("out.webm", "SIGTERM"), ("out.mkv", "SIGINT"), ("out/", "SIGINT SIGINT")],
)
def test_signals_end_a_run_promptly_with_a_playable_partial(tiny_home, tmp_path, cli_env, out, signals):
    proc, target = _start(tmp_path, cli_env, out)
    try:
        _wait_for_output(tmp_path, proc)
        for name in signals.split():
            proc.send_signal(getattr(signal, name))
            time.sleep(0.05)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers == [], leftovers
    name = out.rstrip("/")
    partial = tmp_path / (f"{Path(name).stem}.partial{Path(name).suffix}")
    assert partial.exists() and not (tmp_path / name).exists(), (sorted(p.name for p in tmp_path.iterdir()), stderr)
    assert len(list(read_rgba(partial))) > 0

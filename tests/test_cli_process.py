"""``streammat process`` end to end: real PyAV files, a tiny ONNX model loaded by rembg."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streammat.cli import main
from streammat.readback import probe, read_rgba
from streammat.sources.file import FileSource
from streammat.testing import make_clip

MODEL = ["--model", "u2netp", "--no-progress"]


def input_times(path: Path) -> list[float]:
    src = FileSource(path)
    src.open()
    times = [float(f.pts * f.time_base) for f in src]
    src.close()
    return times


def output_times(path: Path) -> list[float]:
    return [float(f.pts * f.time_base) for f in read_rgba(path)]


@pytest.mark.parametrize("name", ["out.mov", "out.webm", "out.mkv", "frames", "seq/%05d.png"])
def test_alpha_outputs_keep_every_frame_its_time_and_alpha(tiny_home, clip, tmp_path, name):
    src = clip("in.mp4", width=96, height=64, frames=14, audio="aac")
    out = tmp_path / name
    if name.startswith("seq"):
        out.parent.mkdir()
    assert main(["process", str(src), "-o", str(out), *MODEL]) == 0
    if name == "frames":
        assert out.is_dir()
    frames = list(read_rgba(out))
    assert len(frames) == 14
    assert output_times(out) == pytest.approx(input_times(src), abs=2e-3)
    alpha = np.stack([f.image[..., 3] for f in frames])
    assert alpha.std() > 5  # a real matte, not a constant plane
    # the tiny model weighs red: the bright disc is more opaque than the blue-ish corner
    assert alpha[:, 32, :].mean() > 0 and alpha.max() > 150
    if name.endswith((".mov", ".mkv", ".webm")):
        info = probe(out)
        assert info["has_audio"], f"{name} lost the audio track"
        assert info["duration"] == pytest.approx(probe(src)["duration"], abs=2e-3)


def test_matte_and_background_outputs(tiny_home, clip, tmp_path):
    src = clip("in.mp4", width=96, height=64, frames=10, audio="aac")
    matte, comp = tmp_path / "matte.mp4", tmp_path / "comp.mp4"
    assert main(["process", str(src), "-o", str(matte), "--matte", *MODEL]) == 0
    assert main(["process", str(src), "-o", str(comp), "--background", "green", *MODEL]) == 0
    for out in (matte, comp):
        info = probe(out)
        assert info["frames"] == 10 and info["has_audio"]


def test_vfr_input_stays_vfr(tiny_home, clip, tmp_path):
    from fractions import Fraction

    pts = [0, 1, 3, 4, 7, 8, 12, 13, 14, 20]
    src = clip("vfr.mkv", frames=10, pts=pts, time_base=Fraction(1, 30))
    out = tmp_path / "vfr-out.mkv"  # not the input itself
    assert main(["process", str(src), "-o", str(out), *MODEL]) == 0
    assert output_times(out) == pytest.approx([p / 30 for p in pts], abs=2e-3)


def test_odd_sized_input(tiny_home, clip, tmp_path):
    src = clip("odd.mp4", width=65, height=47, frames=6)
    out = tmp_path / "odd.mov"
    assert main(["process", str(src), "-o", str(out), *MODEL]) == 0
    frames = list(read_rgba(out))
    assert len(frames) == 6 and frames[0].image.shape == (47, 65, 4)


def _broken_inputs(tmp_path: Path) -> dict[str, Path]:
    good_mp4 = make_clip(tmp_path / "good.mp4", width=96, height=64, frames=60)
    good_mkv = make_clip(tmp_path / "good.mkv", width=96, height=64, frames=100)
    cases: dict[str, bytes] = {}
    for name, data in (("mp4", good_mp4.read_bytes()), ("mkv", good_mkv.read_bytes())):
        for frac in (0.1, 0.5, 0.9):
            cases[f"{name}-truncated-{int(frac * 100)}"] = data[: int(len(data) * frac)]
        flipped = np.frombuffer(data, np.uint8).copy()
        rng = np.random.default_rng(3)
        flipped[rng.integers(len(data) // 8, len(data), 64)] ^= 0xFF
        cases[f"{name}-bitflips"] = flipped.tobytes()
    cases["zero-bytes"] = b""
    cases["text"] = b"this is a text file, not a video\n" * 50
    paths = {}
    for name, data in cases.items():
        ext = ".mkv" if name.startswith("mkv") else ".mp4"
        paths[name] = tmp_path / f"{name}{ext}"
        paths[name].write_bytes(data)
    return paths


def test_broken_inputs_give_one_line_errors_fast(tiny_home, tmp_path, capfd):
    """Every broken input: exit != 0 within seconds, one line on stderr, no traceback;
    what could be decoded is finalized as a playable partial output."""
    for name, path in _broken_inputs(tmp_path).items():
        out = tmp_path / f"{name}-out.mkv"
        t = time.monotonic()
        code = main(["process", str(path), "-o", str(out), *MODEL])
        elapsed = time.monotonic() - t
        stderr = capfd.readouterr().err
        errors = [line for line in stderr.splitlines() if line.startswith("streammat: error")]
        assert "Traceback" not in stderr, (name, stderr)
        assert code == 1, (name, stderr)
        assert len(errors) == 1 and path.name in errors[0], (name, stderr)
        assert elapsed < 20, (name, elapsed)
        assert not out.exists(), f"{name}: a broken input must not leave a complete-looking output"
        partial = tmp_path / f"{name}-out.partial.mkv"
        if partial.exists():
            assert len(list(read_rgba(partial))) > 0
            assert "partial" in stderr


def test_a_real_process_prints_no_traceback_for_a_bad_input(tmp_path, cli_env):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    proc = subprocess.run(
        [sys.executable, "-m", "streammat", "process", str(bad), "-o", str(tmp_path / "o.mov"), *MODEL],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"streammat: error: {bad}: not a video, or damaged/truncated (Invalid data found when processing input)"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.mp4", "-o", "{tmp}/o.mov"], "no such file"),
        (["{good}", "-o", "{tmp}/no/such/dir/o.mov"], "o.mov"),
        (["{good}", "-o", "{tmp}/o.mp4"], "alpha"),
        (["{good}", "-o", "{tmp}/o.mov", "--model", "nonexistent-model"], "unknown model"),
        (["{good}"], "nothing to write"),
    ],
    ids=["missing", "unwritable", "mp4-alpha", "unknown-model", "no-output"],
)
def test_usage_errors_are_one_line(tiny_home, tmp_path, clip, capsys, args, message):
    good = clip()
    argv = ["process", *[a.format(tmp=tmp_path, good=good) for a in args]]
    if "--model" not in argv:
        argv += MODEL
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err


def test_sigint_mid_encode_finalizes_a_playable_partial(tiny_home, tmp_path, cli_env):
    src = make_clip(tmp_path / "long.mp4", width=160, height=120, frames=1500, rate=30)
    out = tmp_path / "out.mkv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammat", "process", str(src), "-o", str(out), *MODEL, "--exact"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env,
    )
    # wait until the output has started growing, then interrupt
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".out.tmp-*")) and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    partial = tmp_path / "out.partial.mkv"
    assert partial.exists() and not out.exists(), stderr
    frames = list(read_rgba(partial))
    assert 0 < len(frames) < 1500
    assert "partial" in stderr
    assert not list(tmp_path.glob(".out.tmp-*")), "temporary file left behind"


def test_config_file_and_matte_controls(tiny_home, clip, tmp_path):
    src = clip("in.mp4", width=96, height=64, frames=6)
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("process:\n  model: u2netp\n  batch_size: 4\n  threshold: 0.5\n")
    out = tmp_path / "o.mkv"
    assert main(["process", str(src), "-o", str(out), "--config", str(cfg), "--no-progress"]) == 0
    alpha = np.stack([f.image[..., 3] for f in read_rgba(out)])
    assert set(np.unique(alpha)) <= {0, 255} and len(np.unique(alpha)) == 2  # thresholded
    bad = tmp_path / "bad.yaml"
    bad.write_text("process:\n  modle: u2netp\n")
    assert main(["process", str(src), "-o", str(out), "--config", str(bad)]) == 2


def test_default_config_file_loads():
    from streammat.config import ProcessConfig, load_config

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs" / "default.yaml") == ProcessConfig()


def test_live_config_file_loads_and_validates(tmp_path):
    from streammat.config import LiveConfig, load_config
    from streammat.errors import ConfigError

    root = Path(__file__).resolve().parents[1]
    assert load_config(root / "configs" / "live.yaml", LiveConfig) == LiveConfig()
    bad = tmp_path / "live.yaml"
    bad.write_text("live:\n  smoothing: 1.5\n")
    with pytest.raises(ConfigError, match="smoothing"):
        load_config(bad, LiveConfig)

"""Outputs stay playable while they are written: after kill -9, a full disk or a file-size
limit, what is left plays (checked by decoding it with PyAV) or is gone, and says so."""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import PYTHON
from test_sinks import info_for, run, synthetic

from streammat.frames import Batch, MattedBatch
from streammat.readback import probe
from streammat.sinks import create_sink

RATE = 25
TB = Fraction(1, RATE)
INFO = info_for(64, 48, TB, rate=Fraction(RATE))


def noise(frames: int, w: int = 64, h: int = 48, batch: int = 8, seed: int = 0) -> list[MattedBatch]:
    """Frames that do not compress, so files grow fast."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(0, frames, batch):
        k = min(batch, frames - s)
        imgs = torch.from_numpy(rng.integers(0, 256, (k, h, w, 3), dtype=np.uint8))
        alpha = torch.from_numpy(rng.integers(0, 256, (k, h, w), dtype=np.uint8))
        out.append(MattedBatch(Batch(imgs, tuple(range(s, s + k)), TB, tuple(range(s, s + k))), alpha))
    return out


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes from the start of ``path`` before the first error."""
    count = 0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                count += len(packet.decode())
    except (av.FFmpegError, EOFError):
        pass  # a truncated tail
    return count


def top_level_boxes(path: Path) -> list[str]:
    data, i, boxes = path.read_bytes(), 0, []
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return boxes


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- while writing
@pytest.mark.parametrize(("name", "kwargs"), [("a.mov", {}), ("a.mkv", {}), ("a.webm", {}), ("c.mp4", {"matte": True})])
def test_playable_while_writing_and_regular_when_finished(tmp_path: Path, name: str, kwargs: dict):
    out = tmp_path / name
    sink = create_sink(out, **kwargs)
    sink.open(INFO)
    for b in noise(3 * RATE):  # 3 s: at least two 1 s fragments/clusters are on disk
        sink.write(b)
    (temp,) = (p for p in tmp_path.iterdir() if ".tmp-" in p.name)
    assert decoded_frames(temp) >= RATE
    sink.close()
    assert decoded_frames(out) == 3 * RATE and not hidden(tmp_path)
    p = probe(out)
    assert [t * p["time_base"] for t in p["pts"]] == [i * TB for i in range(3 * RATE)]
    if name.endswith((".mov", ".mp4")):  # a regular file at the end: one mdat, the index after it
        boxes = top_level_boxes(out)
        assert "moof" not in boxes and boxes.count("mdat") == 1 and boxes[-1] == "moov", boxes


@pytest.mark.parametrize("name", ["t.mkv", "t.webm"])
def test_truncated_matroska_plays(tmp_path: Path, name: str):
    out = tmp_path / name
    run(create_sink(out), noise(3 * RATE), INFO)
    data = out.read_bytes()
    cut = tmp_path / f"cut{out.suffix}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert 0 < decoded_frames(cut) < 3 * RATE


@pytest.mark.slow
def test_killed_process_leaves_a_playable_mov_that_the_next_run_recovers(tmp_path, clip, cli_env, caplog):
    src = clip("long.mp4", frames=1500)  # 60 s: still running when killed
    out = tmp_path / "out.mov"
    cmd = [PYTHON, "-m", "streammat", "process", str(src), "-o", str(out), "--model", "u2netp", "--no-progress"]
    proc = subprocess.Popen(cmd, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    temp = tmp_path / f".out.tmp-{proc.pid}.mov"
    try:
        for _ in range(1200):  # at most 120 s
            if temp.exists() and decoded_frames(temp) >= 2 * RATE:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert decoded_frames(temp) >= 2 * RATE
    caplog.set_level(logging.WARNING)
    sink = create_sink(out)
    sink.open(INFO)  # the next writer of this output finds the dead writer's file
    sink.close()
    assert decoded_frames(tmp_path / "out.partial.mov") >= 2 * RATE
    assert any("note: recovered" in r.getMessage() and str(proc.pid) in r.getMessage() for r in caplog.records)
    assert not hidden(tmp_path)


# --------------------------------------------------------------------------- full disk
_WRITER = """
import json, logging, shutil, sys
sys.path.insert(0, sys.argv[3])
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("streammat").addHandler(Keep(logging.WARNING))
from pathlib import Path
from test_playable_outputs import INFO, decoded_frames, hidden, noise, partial_of
from streammat.errors import OutputError
from streammat.sinks import create_sink
report = []
for name in json.loads(sys.argv[1]):
    out = Path(name)
    errors, warnings = [], []
    sink = create_sink(out)
    sink.open(INFO)
    try:
        for batch in noise(int(sys.argv[2])):
            sink.write(batch)
    except OutputError as exc:
        errors.append(str(exc))
    try:
        sink.close(complete=not errors)
    except OutputError as exc:
        errors.append(str(exc))
    partial = partial_of(out)
    frames = decoded_frames(partial) if partial.is_file() else len(list(partial.glob("*.png")))
    left = {"final": out.exists(), "hidden": hidden(out.parent)}
    report.append({"errors": errors, "warnings": warnings, "partial_frames": frames, **left})
    if partial.is_dir():  # make room for the next output on a full disk
        shutil.rmtree(partial)
    else:
        partial.unlink(missing_ok=True)
print(json.dumps(report))
"""


def partial_of(out: Path) -> Path:
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def write_limited(outputs: list[Path], frames: int, *, fsize: int | None = None) -> list[dict]:
    """Write ``frames`` noise frames to each output, one after the other, in one subprocess
    (with a file-size limit if given); what each run left, as the subprocess saw it."""

    def limit() -> None:
        if fsize is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    here = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", _WRITER, json.dumps([str(o) for o in outputs]), str(frames), here],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def check_full_disk_result(out: Path, result: dict, *, min_frames: int = 1) -> None:
    """One error, one line naming the output; a playable partial (and a warning names it),
    or nothing and the warning says so; never the final name, never a temporary."""
    errors, said = result["errors"], " | ".join(result["warnings"] + result["errors"])
    assert len(errors) == 1 and "\n" not in errors[0] and str(out) in errors[0], result
    if result["partial_frames"]:
        assert result["partial_frames"] >= min_frames and str(partial_of(out)) in said, result
    else:
        assert "nothing playable was kept" in said or "no frames were written" in said, result
    assert not result["final"] and not result["hidden"], result


def test_file_size_limit(tmp_path: Path):
    outputs = [tmp_path / name for name in ("f.mov", "f.mkv", "f.webm")]
    for out, result in zip(outputs, write_limited(outputs, 8 * RATE, fsize=600_000), strict=True):
        assert result["errors"][0] == f"cannot write {out}: file too large"
        check_full_disk_result(out, result, min_frames=RATE)  # at least one whole second made it


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk(small_disk: Path):
    outputs = [small_disk / name for name in ("d.mov", "d.webm", "dseq")]
    for out, result in zip(outputs, write_limited(outputs, 12 * RATE), strict=True):
        assert "no space left on device" in result["errors"][0]
        check_full_disk_result(out, result)


@pytest.mark.slow
def test_full_disk_through_the_cli(small_disk: Path, clip, cli_env):
    src = clip("in.mp4", frames=300, width=160, height=120)
    out = small_disk / "out.mov"
    cmd = [PYTHON, "-m", "streammat", "process", str(src), "-o", str(out), "--model", "u2netp", "--no-progress"]
    proc = subprocess.run(cmd, env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [f"streammat: error: cannot write {out}: no space left on device"], proc.stderr
    partial = partial_of(out)
    assert (partial.exists() and decoded_frames(partial) >= 1) or "nothing playable" in proc.stderr
    assert not out.exists() and not hidden(small_disk)


# --------------------------------------------------------------------------- audio
@pytest.fixture
def corrupt_audio_clip(tmp_path: Path) -> Path:
    """1 s of video with an AAC track whose 10th packet is garbage."""
    path = tmp_path / "corrupt.mkv"
    with av.open(str(path), "w") as oc:
        v = oc.add_stream("ffv1", rate=RATE)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = oc.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(RATE):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            f.pts = i
            oc.mux(v.encode(f))
        wave = (np.sin(np.arange(48000) / 10) * 0.3).astype(np.float32)
        n = 0
        for off in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([wave[off : off + 1024]] * 2), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, off
            for packet in a.encode(frame):
                n += 1
                if n == 10:
                    bad = av.Packet(b"\xff" * packet.size)
                    bad.pts, bad.dts, bad.time_base, bad.stream = packet.pts, packet.dts, packet.time_base, a
                    packet = bad
                oc.mux(packet)
        oc.mux(v.encode(None))
        oc.mux(a.encode(None))
    return path


def test_corrupt_audio_packet_is_skipped_and_counted(tmp_path: Path, corrupt_audio_clip: Path, caplog):
    caplog.set_level(logging.WARNING)
    out = tmp_path / "a.webm"
    run(create_sink(out), synthetic(64, 48, list(range(RATE))), info_for(64, 48, TB, audio=str(corrupt_audio_clip)))
    p = probe(out)
    assert p["frames"] == RATE and p["audio_codec"] == "opus" and p["audio_duration"] > 0.9
    warnings = [r.getMessage() for r in caplog.records if "corrupt audio" in r.getMessage()]
    assert warnings == [f"1 corrupt audio packet(s) of {corrupt_audio_clip} were skipped; the audio has gaps there"]

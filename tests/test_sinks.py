"""Sinks: real PyAV encodes of tiny synthetic clips, read back with read_rgba/probe."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from streammat.errors import ConfigError, OutputError
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.readback import probe, read_rgba
from streammat.sinks import FORMATS, NullSink, PngSequenceSink, VideoSink, create_sink
from streammat.sinks.compositing import composite, parse_background

TB = Fraction(1, 1000)
VFR_PTS = [0, 33, 100, 133, 233, 267, 300, 400, 433, 467, 567, 600]  # gaps: variable frame rate


def synthetic(w: int, h: int, pts: list[int], tb: Fraction = TB, batch: int = 4) -> list[MattedBatch]:
    """A moving gradient with a moving soft alpha disc, as fixed-size matted batches."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    images, alphas = [], []
    for i in range(len(pts)):
        img = np.empty((h, w, 3), np.uint8)
        img[..., 0] = xs * 200 / w + i * 4  # smooth, no wrap-around edge
        img[..., 1] = ys * 255 / h
        img[..., 2] = 128 + 8 * (i % 4)
        cx, cy, r = w * (0.3 + 0.03 * i), h / 2, min(w, h) / 3
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
        alpha = np.clip((r - d) * 40 + 128, 0, 255).astype(np.uint8)
        images.append(img)
        alphas.append(alpha)
    out = []
    for s in range(0, len(pts), batch):
        idx = list(range(s, min(s + batch, len(pts))))
        imgs = torch.from_numpy(np.stack([images[i] for i in idx]))
        al = torch.from_numpy(np.stack([alphas[i] for i in idx]))
        b = Batch(imgs, tuple(pts[i] for i in idx), tb, tuple(idx))
        out.append(MattedBatch(b, al))
    return out


def expected_rgba(batches: list[MattedBatch]) -> list[np.ndarray]:
    return [mb.rgba()[i].numpy() for mb in batches for i in range(len(mb))]


def run(sink, batches, info: StreamInfo, *, complete: bool = True):
    sink.open(info)
    for mb in batches:
        sink.write(mb)
    sink.close(complete=complete)
    return sink


def info_for(w: int, h: int, tb: Fraction = TB, audio: str | None = None, rate=None) -> StreamInfo:
    return StreamInfo(w, h, tb, rate=rate, audio_path=audio, name="synthetic")


# --------------------------------------------------------------------------- alpha
# (output name, max |alpha error|, mean |alpha error|, max |rgb error| where alpha==255)
ALPHA_CASES = [
    ("out.mkv", 0, 0.0, 0),  # FFV1 bgra: lossless
    ("frames", 0, 0.0, 0),  # PNG folder: lossless
    ("img_%05d.png", 0, 0.0, 0),  # PNG pattern: lossless
    ("out.mov", 0, 0.0, 2),  # ProRes 4444: alpha coded losslessly (10-bit), colour near-lossless
    ("out.webm", 24, 1.5, 24),  # VP9 yuva420p, crf 30 realtime: lossy (measured max 13, mean 0.6)
]


@pytest.mark.parametrize(("name", "amax", "amean", "rgbmax"), ALPHA_CASES)
@pytest.mark.parametrize(("w", "h"), [(64, 48), (65, 49)])
def test_alpha_roundtrip(tmp_path: Path, name: str, amax: int, amean: float, rgbmax: int, w: int, h: int):
    batches = synthetic(w, h, VFR_PTS)
    out = tmp_path / name
    sink = run(create_sink(str(out)), batches, info_for(w, h))
    assert sink.frames == len(VFR_PTS)
    frames = list(read_rgba(out))
    assert len(frames) == len(VFR_PTS)
    assert [f.pts * f.time_base for f in frames] == [p * TB for p in VFR_PTS]
    expected = expected_rgba(batches)
    errs = [np.abs(f.image.astype(int) - e.astype(int)) for f, e in zip(frames, expected, strict=True)]
    assert frames[0].image.shape == (h, w, 4)
    assert max(int(e[..., 3].max()) for e in errs) <= amax
    assert float(np.mean([e[..., 3].mean() for e in errs])) <= amean
    opaque = [e[..., :3][x[..., 3] == 255] for e, x in zip(errs, expected, strict=True)]
    assert max(int(o.max()) for o in opaque if o.size) <= rgbmax
    # no temporary files are left behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_probe_reports_alpha_formats(tmp_path: Path):
    batches = synthetic(64, 48, VFR_PTS[:4])
    for name, pix in [("a.mov", "yuva444p"), ("a.webm", "yuva420p"), ("a.mkv", "bgra")]:
        run(create_sink(str(tmp_path / name)), batches, info_for(64, 48))
        p = probe(tmp_path / name)
        assert p["pix_fmt"].startswith(pix) and p["alpha"], (name, p)
        assert p["frames"] == 4 and not p["has_audio"]


@pytest.mark.parametrize("tb", [Fraction(1, 30), Fraction(1001, 30000), Fraction(1, 90000)])
def test_mov_keeps_exact_pts_and_time_base(tmp_path: Path, tb: Fraction):
    pts = [0, 1, 3, 4, 7, 8] if tb.numerator != 1 or tb.denominator < 1000 else [0, 3003, 9009, 12012]
    batches = synthetic(64, 48, pts, tb)
    out = tmp_path / "t.mov"
    run(create_sink(str(out)), batches, info_for(64, 48, tb))
    frames = list(read_rgba(out))
    assert [f.pts * f.time_base for f in frames] == [p * tb for p in pts]
    if tb.numerator == 1:
        assert frames[0].time_base == tb and [f.pts for f in frames] == pts


def test_prores_aw_option(tmp_path: Path):
    batches = synthetic(64, 48, VFR_PTS[:4])
    out = tmp_path / "aw.mov"
    sink = run(create_sink(str(out), codec="prores"), batches, info_for(64, 48))
    assert "prores_aw" in sink.description
    frames = list(read_rgba(out))
    exp = expected_rgba(batches)
    assert (
        max(int(np.abs(f.image[..., 3].astype(int) - e[..., 3]).max()) for f, e in zip(frames, exp, strict=True)) == 0
    )
    with pytest.raises(OutputError, match="even width"):
        create_sink(str(tmp_path / "odd.mov"), codec="prores").open(info_for(65, 49))
    assert not list(tmp_path.glob(".odd*"))


# --------------------------------------------------------------------------- audio
@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory) -> Path:
    """A 1 s input file with an AAC stereo track (and a tiny H.264 video stream)."""
    path = tmp_path_factory.mktemp("in") / "in.mp4"
    with av.open(str(path), "w") as oc:
        v = oc.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = oc.add_stream("aac", rate=44100)
        a.layout = "stereo"
        for i in range(25):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
            f.pts = i
            oc.mux(v.encode(f))
        n = 44100
        wave = (np.sin(np.arange(n) / 10) * 0.3).astype(np.float32)
        for off in range(0, n, 1024):
            chunk = wave[off : off + 1024]
            af = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 44100, off
            oc.mux(a.encode(af))
        oc.mux(v.encode(None))
        oc.mux(a.encode(None))
    return path


@pytest.mark.parametrize(
    ("name", "codec", "kwargs"),
    [
        ("a.mov", "aac", {}),
        ("a.mkv", "aac", {}),
        ("a.webm", "opus", {}),
        ("a.mp4", "aac", {"background": "blue"}),
    ],
)
def test_audio_passthrough(tmp_path: Path, clip_with_audio: Path, name: str, codec: str, kwargs: dict):
    pts = list(range(0, 1000, 40))  # 25 frames over 1 s
    batches = synthetic(64, 48, pts, batch=8)
    out = tmp_path / name
    run(create_sink(str(out), **kwargs), batches, info_for(64, 48, audio=str(clip_with_audio)))
    p = probe(out)
    assert p["has_audio"] and p["audio_codec"] == codec
    assert abs(p["audio_duration"] - 1.0) < 0.1, p["audio_duration"]
    assert p["frames"] == 25


def test_png_sequence_has_no_audio(tmp_path: Path, clip_with_audio: Path, caplog):
    caplog.set_level("INFO")
    run(
        create_sink(str(tmp_path / "seq")),
        synthetic(64, 48, [0, 40]),
        info_for(64, 48, audio=str(clip_with_audio)),
    )
    assert "no audio" in caplog.text
    assert probe(tmp_path / "seq")["frames"] == 2


# --------------------------------------------------------------------------- matte / composite
# (name, max error, mean error): H.264 crf 18 / VP9 crf 30 are lossy at the disc's sharp edge
MATTE_CASES = [("m.mp4", 24, 1.0), ("m.mkv", 0, 0), ("m.mov", 1, 0.5), ("m.webm", 40, 2.0), ("mseq", 0, 0)]


@pytest.mark.parametrize(("name", "tol", "mean_tol"), MATTE_CASES)
def test_matte_outputs(tmp_path: Path, name: str, tol: int, mean_tol: float):
    batches = synthetic(65, 49, VFR_PTS[:8])
    out = tmp_path / name
    run(create_sink(str(out), matte=True), batches, info_for(65, 49))
    frames = list(read_rgba(out))
    assert len(frames) == 8 and frames[0].image.shape == (49, 65, 4)
    alphas = [mb.alpha[i].numpy() for mb in batches for i in range(len(mb))]
    errs = [np.abs(f.image[..., 0].astype(int) - a) for f, a in zip(frames, alphas, strict=True)]
    assert max(int(e.max()) for e in errs) <= tol
    assert float(np.mean([e.mean() for e in errs])) <= mean_tol


@pytest.mark.parametrize(("w", "h", "pix"), [(64, 48, "yuv420p"), (65, 49, "yuv444p")])
def test_background_color_mp4(tmp_path: Path, w: int, h: int, pix: str):
    batches = synthetic(w, h, VFR_PTS)
    out = tmp_path / "c.mp4"
    run(create_sink(str(out), background="#00ff00"), batches, info_for(w, h))
    p = probe(out)
    assert p["codec"] == "h264" and p["pix_fmt"] == pix and (p["width"], p["height"]) == (w, h)
    frames = list(read_rgba(out))
    assert [f.pts * f.time_base for f in frames] == [x * TB for x in VFR_PTS]
    exp = expected_rgba(batches)
    for f, e in zip(frames, exp, strict=True):
        want = composite(e[..., :3], e[..., 3], np.array([0, 255, 0], np.uint8))
        assert np.abs(f.image[..., :3].astype(int) - want).mean() < 6  # lossy, 4:2:0 at the edge


def test_background_image_and_blur(tmp_path: Path):
    import cv2

    bg = tmp_path / "bg.png"
    cv2.imwrite(str(bg), np.full((30, 90, 3), (255, 0, 0), np.uint8))  # BGR blue, other aspect
    batches = synthetic(64, 48, VFR_PTS[:4])
    run(create_sink(str(tmp_path / "i.mp4"), background=str(bg)), batches, info_for(64, 48))
    f0 = next(read_rgba(tmp_path / "i.mp4")).image
    assert f0[0, -1, 2] > 200 and f0[0, -1, 0] < 40  # transparent corner shows the blue image
    run(create_sink(str(tmp_path / "b.mp4"), background="blur"), batches, info_for(64, 48))
    assert probe(tmp_path / "b.mp4")["frames"] == 4
    run(create_sink(str(tmp_path / "cseq"), background="white"), batches, info_for(64, 48))
    assert next(read_rgba(tmp_path / "cseq")).image[0, -1, :3].tolist() == [255, 255, 255]


def test_parse_background():
    assert parse_background("green").color == (0, 255, 0)
    assert parse_background("#0000ff").color == (0, 0, 255)
    assert parse_background("#f00").color == (255, 0, 0)
    assert parse_background("1, 2,3").color == (1, 2, 3)
    assert parse_background("blur").kind == "blur"
    with pytest.raises(ConfigError):
        parse_background("no-such-colour")
    with pytest.raises(ConfigError):
        parse_background("300,0,0")


# --------------------------------------------------------------------------- safe writing
@pytest.mark.parametrize("name", ["p.mov", "p.webm", "p.mkv", "pseq", "pp_%04d.png"])
def test_partial_output(tmp_path: Path, name: str, caplog):
    batches = synthetic(64, 48, VFR_PTS)
    sink = create_sink(str(tmp_path / name))
    sink.open(info_for(64, 48))
    sink.write(batches[0])
    sink.write(batches[1])
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written to a hidden temp
    sink.close(complete=False)
    sink.close(complete=True)  # idempotent: no effect
    partial = {
        "p.mov": "p.partial.mov",
        "p.webm": "p.partial.webm",
        "p.mkv": "p.partial.mkv",
        "pseq": "pseq.partial",
        "pp_%04d.png": "pp.partial",
    }[name]
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial]
    assert "partial" in caplog.text and "8 frames" in caplog.text
    frames = list(read_rgba(tmp_path / partial))
    assert [f.pts * f.time_base for f in frames] == [p * TB for p in VFR_PTS[:8]]


def test_nothing_written_leaves_nothing(tmp_path: Path):
    for name in ["e.mov", "eseq", "e_%03d.png"]:
        sink = create_sink(str(tmp_path / name))
        sink.open(info_for(64, 48))
        sink.close(complete=False)
    assert list(tmp_path.iterdir()) == []


def test_pattern_output_lands_in_folder(tmp_path: Path):
    run(create_sink(str(tmp_path / "f_%03d.png")), synthetic(64, 48, [5, 9, 20]), info_for(64, 48))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "f.timestamps.json",
        "f_000.png",
        "f_001.png",
        "f_002.png",
    ]
    assert [f.pts for f in read_rgba(tmp_path / "f_%03d.png")] == [5, 9, 20]


def test_mp4_without_background_is_an_error(tmp_path: Path):
    with pytest.raises(OutputError, match=r"\.mp4.*alpha.*\.mov.*\.webm.*\.mkv"):
        create_sink(str(tmp_path / "x.mp4"))


def test_unwritable_outputs(tmp_path: Path):
    with pytest.raises(OutputError, match="does not exist"):
        create_sink(str(tmp_path / "missing" / "o.mov")).open(info_for(64, 48))
    (tmp_path / "d.mov").mkdir()
    with pytest.raises(OutputError, match="directory"):
        create_sink(str(tmp_path / "d.mov")).open(info_for(64, 48))
    with pytest.raises(OutputError, match="does not exist"):
        create_sink(str(tmp_path / "missing" / "x_%03d.png")).open(info_for(64, 48))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        create_sink(str(tmp_path / "file"), format="png").open(info_for(64, 48))


def test_permission_denied(tmp_path: Path):
    if os.geteuid() == 0:  # root ignores file modes; sysfs refuses new files even to root
        target = Path("/sys/streammat-test.webm")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "o.webm"
    with pytest.raises(OutputError, match="(?i)permission denied") as err:
        create_sink(str(target)).open(info_for(64, 48))
    assert str(target) in str(err.value) and "encoder" not in str(err.value)
    assert not target.exists()


def test_frame_size_change_is_scaled(tmp_path: Path, caplog):
    out = tmp_path / "s.mkv"
    sink = create_sink(str(out))
    sink.open(info_for(64, 48))
    sink.write(synthetic(64, 48, [0, 1])[0])
    sink.write(synthetic(80, 60, [2, 3])[0])
    sink.close()
    assert "frame size changed" in caplog.text
    frames = list(read_rgba(out))
    assert len(frames) == 4 and all(f.image.shape == (48, 64, 4) for f in frames)


def test_factory_and_null_sink(tmp_path: Path):
    assert {"prores", "vp9", "ffv1", "png"} <= set(FORMATS)
    assert isinstance(create_sink(str(tmp_path / "a.mov")), VideoSink)
    assert isinstance(create_sink(str(tmp_path / "dir/")), PngSequenceSink)
    assert isinstance(create_sink(str(tmp_path / "a.out"), format="ffv1"), VideoSink)
    with pytest.raises(OutputError, match="format"):
        create_sink(str(tmp_path / "a.avi"))
    with pytest.raises(ConfigError):
        create_sink(str(tmp_path / "a.mov"), format="nope")
    null = run(create_sink("-", format="null"), synthetic(64, 48, VFR_PTS), info_for(64, 48))
    assert isinstance(null, NullSink) and null.frames == len(VFR_PTS)


def test_prores_is_exact_and_deterministic_at_awkward_sizes(tmp_path: Path):
    """Regression: threaded swscale corrupted 10-bit conversions and alpha blocks at widths
    that are not a multiple of 16 (FFmpeg 8.1); the sink converts single-threaded."""
    rng = np.random.default_rng(7)
    w, h = 150, 100
    imgs = torch.from_numpy(rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8))
    alpha = torch.from_numpy(rng.integers(0, 256, (4, h, w), dtype=np.uint8))
    mb = MattedBatch(Batch(imgs, (0, 1, 2, 3), TB, (0, 1, 2, 3)), alpha)
    for name in ("a.mov", "b.mov"):
        run(create_sink(str(tmp_path / name)), [mb], info_for(w, h))
    a, b = (list(read_rgba(tmp_path / n)) for n in ("a.mov", "b.mov"))
    exp = mb.rgba().numpy()
    for fa, fb, e in zip(a, b, exp, strict=True):
        assert np.array_equal(fa.image, fb.image)
        assert np.array_equal(fa.image[..., 3], e[..., 3])
        assert int(np.abs(fa.image[..., :3].astype(int) - e[..., :3]).max()) <= 2

from fractions import Fraction

import numpy as np
import pytest

from streammat.errors import InputError
from streammat.sources import open_source
from streammat.sources.file import FileSource


def read_all(path):
    src = FileSource(path)
    info = src.open()
    frames = list(src)
    src.close()
    return info, frames, src.stats


def test_frames_keep_their_pts_and_time_base(clip):
    info, frames, stats = read_all(clip(frames=10))
    assert len(frames) == 10 and stats["decoded"] == 10
    assert [f.index for f in frames] == list(range(10))
    step = frames[1].pts - frames[0].pts
    assert step > 0 and [f.pts for f in frames] == [i * step for i in range(10)]
    assert all(f.time_base == info.time_base for f in frames)
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)


def test_variable_frame_rate_stays_variable(clip):
    pts = [0, 1, 3, 4, 7, 8, 12, 13, 14, 20]
    info, frames, _ = read_all(clip("vfr.mkv", frames=10, pts=pts, time_base=Fraction(1, 30)))
    seconds = [float(f.pts * f.time_base) for f in frames]
    assert seconds == pytest.approx([p / 30 for p in pts], abs=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        dict(width=65, height=47),  # odd sizes
        dict(codec="libx264", pix_fmt="yuv444p"),  # 4:4:4
        dict(name="hevc10.mkv", codec="libx265", pix_fmt="yuv420p10le"),  # 10-bit
        dict(name="ffv1.mkv", codec="ffv1", pix_fmt="yuv444p10le"),
        dict(name="mpeg4.avi", codec="mpeg4"),
    ],
    ids=["odd", "yuv444", "hevc10", "ffv1-444-10", "mpeg4-avi"],
)
def test_formats_decode_to_rgb24(clip, options):
    name = options.pop("name", "in.mp4")
    info, frames, _ = read_all(clip(name, **options))
    w, h = options.get("width", 64), options.get("height", 48)
    assert (info.width, info.height) == (w, h) and len(frames) == 12
    # the bright disc of the synthetic clip survives the conversion
    assert frames[0].image.max() > 200 and frames[0].image.shape == (h, w, 3)


def test_rotation_metadata_turns_frames_upright(clip):
    info, frames, _ = read_all(clip("rot.mp4", width=64, height=48, rotation=90))
    assert (info.width, info.height) == (48, 64)
    assert frames[0].image.shape == (64, 48, 3)


def test_audio_is_reported_and_absent_audio_is_fine(clip):
    with_audio, _, _ = read_all(clip("a.mp4", audio="aac"))
    without, _, _ = read_all(clip("b.mp4"))
    assert with_audio.audio_path and without.audio_path is None


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty file"),
        (lambda p: (p.write_text("not a video\n" * 20), p)[1], "not a video"),
    ],
    ids=["missing", "directory", "empty", "text"],
)
def test_bad_paths_raise_one_line_input_errors(tmp_path, make, message):
    path = make(tmp_path / "input.mp4")
    with pytest.raises(InputError, match=message) as err:
        FileSource(path).open()
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_audio_only_file_is_rejected(tmp_path):
    import av

    from streammat.testing.media import _write_tone

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        _write_tone(out.add_stream("aac", rate=48000, layout="stereo"), out, seconds=0.2)
    with pytest.raises(InputError, match="no video stream"):
        FileSource(path).open()


def test_truncated_streamable_file_delivers_what_it_can_then_errors(clip, tmp_path):
    data = clip("long.mkv", frames=100, width=96, height=64).read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    src = FileSource(cut)
    src.open()
    got = []
    with pytest.raises(InputError, match="truncated|corrupt"):
        for f in src:
            got.append(f)
    assert 5 < len(got) < 100


def test_open_source_dispatches_files(clip):
    assert isinstance(open_source(str(clip())), FileSource)


def test_close_from_another_thread_stops_iteration(clip):
    src = FileSource(clip(frames=30))
    src.open()
    it = iter(src)
    next(it)
    src.close()
    assert len(list(it)) <= 1


@pytest.mark.parametrize("rotation, corner", [(90, "bottom-left"), (-90, "top-right"), (180, "bottom-right")])
def test_rotation_follows_ffmpeg_autorotate(tmp_path, rotation, corner):
    """A display matrix of +90 (counter-clockwise, av_display_rotation_set) is shown by
    ffmpeg's autorotate with ``transpose=cclock``: the stored top-left corner ends up
    bottom-left; -90 is ``transpose=clock`` (top-right); 180 is both flips."""
    import av

    path = tmp_path / "marked.mp4"
    img = np.zeros((48, 64, 3), np.uint8)
    img[:12, :12] = (255, 255, 255)  # a white block in the stored top-left corner
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv444p"
        s.set_display_rotation(rotation)
        for i in range(3):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            for pkt in s.encode(vf):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    _, frames, _ = read_all(path)
    shown = frames[0].image[..., 0].astype(int)
    h, w = shown.shape
    corners = {
        "top-left": shown[:6, :6],
        "top-right": shown[:6, w - 6 :],
        "bottom-left": shown[h - 6 :, :6],
        "bottom-right": shown[h - 6 :, w - 6 :],
    }
    assert corners[corner].mean() > 200, {k: v.mean() for k, v in corners.items()}
    assert sum(v.mean() > 200 for v in corners.values()) == 1


def test_urls_go_to_ffmpeg(clip):
    path = clip(frames=5)
    src = FileSource(f"file://{path}")
    info = src.open()
    assert src.is_url and (info.width, info.height) == (64, 48) and len(list(src)) == 5
    src.close()
    with pytest.raises(InputError, match=r"http://127\.0\.0\.1:9/x\.mp4"):  # loopback, nothing listens
        FileSource("http://127.0.0.1:9/x.mp4").open()

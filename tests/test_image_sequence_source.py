"""Image sequences (folders and ``%d`` patterns) as a source, streammat's own PNG output
included."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from streammat.cli import main
from streammat.errors import InputError
from streammat.readback import probe
from streammat.sinks.png_sequence import SIDECAR
from streammat.sources import open_source
from streammat.sources.file import FileSource
from streammat.sources.images import ImageSequenceSource

MODEL = ["--model", "u2netp", "--no-progress"]


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (48, 64), channels: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img = np.zeros((*size, channels), np.uint8)
        img[..., 0] = 10 * i  # blue in OpenCV's order: red after the source's BGR→RGB
        img[..., 2] = 200
        if channels == 4:
            img[..., 3] = 7 * i
        cv2.imwrite(str(folder / name), img)
    return folder


def read(src) -> list:
    with src:
        return list(src)


@pytest.mark.slow
def test_streammat_png_output_round_trips_with_exact_pts(tiny_home, clip, tmp_path):
    pts = [0, 40, 120, 160, 280, 320, 480]  # milliseconds, variable rate
    src = clip("in.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000))
    frames, out = tmp_path / "frames", tmp_path / "out.mkv"
    assert main(["process", str(src), "-o", str(frames), *MODEL]) == 0
    assert main(["process", str(frames), "-o", str(out), *MODEL]) == 0
    info = probe(out)
    assert info["time_base"] == Fraction(1, 1000) and info["pts"] == pts


def test_the_sidecar_gives_exact_timing(tmp_path):
    folder = write_images(tmp_path / "frames", ["000000.png", "000001.png", "000002.png"])
    sidecar = {"version": 1, "time_base": "1/90000", "width": 64, "height": 48}
    sidecar["frames"] = [{"file": f"00000{i}.png", "pts": p} for i, p in enumerate([3000, 6003, 9009])]
    (folder / SIDECAR).write_text(json.dumps(sidecar))
    src = ImageSequenceSource(folder)
    frames = read(src)
    assert src.info.time_base == Fraction(1, 90000) and [f.pts for f in frames] == [3000, 6003, 9009]
    assert frames[1].image[0, 0].tolist() == [200, 0, 10]  # RGB


def test_without_a_sidecar_frames_are_timed_at_25_fps_said_once(tmp_path, caplog):
    folder = write_images(tmp_path / "frames", [f"f{i}.png" for i in range(5)])
    with caplog.at_level(logging.WARNING, logger="streammat.sources.images"):
        frames = read(ImageSequenceSource(folder))
    assert [f.pts * f.time_base for f in frames] == [Fraction(i, 25) for i in range(5)]
    assert len([r for r in caplog.records if "25 fps" in r.getMessage()]) == 1
    timed = read(ImageSequenceSource(folder, rate=30))
    assert timed[4].pts * timed[4].time_base == Fraction(4, 30)


def test_files_are_read_in_natural_order(tmp_path):
    folder = write_images(tmp_path / "frames", ["img1.png", "img2.png", "img10.png", "img3.jpg"])
    frames = read(ImageSequenceSource(folder, rate=25))
    assert [round(int(f.image[0, 0, 2]) / 10) for f in frames] == [
        0,
        1,
        3,
        2,
    ]  # 1, 2, 10, 3; JPEG is lossy


def test_a_pattern_reads_its_numbered_files_only(tmp_path):
    folder = write_images(tmp_path / "seq", ["img_001.png", "img_002.png", "img_003.png", "other.png"])
    src = open_source(str(folder / "img_%03d.png"))
    assert isinstance(src, ImageSequenceSource) and len(read(src)) == 3
    assert isinstance(open_source(str(folder)), ImageSequenceSource)
    assert isinstance(open_source(str(folder / "img_001.png")), FileSource)


def test_rgba_images_keep_their_colour_and_optionally_their_alpha(tmp_path):
    folder = write_images(tmp_path / "rgba", ["0.png", "1.png"], channels=4)
    plain = read(ImageSequenceSource(folder))
    kept = read(ImageSequenceSource(folder, keep_alpha=True))
    assert plain[1].alpha is None and plain[1].image[0, 0].tolist() == [200, 0, 10]
    assert kept[1].alpha is not None and int(kept[1].alpha[0, 0]) == 7


def test_16_bit_images_become_8_bit(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    cv2.imwrite(str(folder / "0.png"), np.full((48, 64, 3), 0xABCD, np.uint16))
    frame = read(ImageSequenceSource(folder))[0]
    assert frame.image.dtype == np.uint8 and int(frame.image[0, 0, 0]) == 0xAB


def _gap(folder: Path) -> Path:
    write_images(folder, ["img_001.png", "img_002.png", "img_004.png"])
    return folder / "img_%03d.png"


def _odd_size(folder: Path) -> Path:
    write_images(folder, ["0.png", "1.png"])
    write_images(folder, ["2.png"], size=(50, 64))
    return folder


def _broken(folder: Path) -> Path:
    write_images(folder, ["0.png", "1.png"])
    (folder / "2.png").write_bytes(b"not a png" * 10)
    return folder


def _listed_but_missing(folder: Path) -> Path:
    write_images(folder, ["000000.png"])
    entries = [{"file": "000000.png", "pts": 0}, {"file": "000001.png", "pts": 1}]
    (folder / SIDECAR).write_text(json.dumps({"version": 1, "time_base": "1/25", "frames": entries}))
    return folder


def _bad_sidecar(folder: Path) -> Path:
    write_images(folder, ["000000.png"])
    (folder / SIDECAR).write_text("{ not json")
    return folder


@pytest.mark.parametrize(
    "make, culprit, problem",
    [
        (_gap, "img_003.png", "missing frame of the sequence"),
        (_odd_size, "2.png", "64x50, but the sequence's frames are 64x48"),
        (_broken, "2.png", "cannot read as an image"),
        (_listed_but_missing, "000001.png", f"missing frame (listed in {SIDECAR})"),
        (_bad_sidecar, SIDECAR, "not a readable timestamps file"),
        (lambda folder: (folder.mkdir(), folder)[1], "frames", "no images"),
        (lambda folder: folder / "img_%04d.png", "img_%04d.png", "no such folder"),
    ],
    ids=["gap", "size", "unreadable", "listed-missing", "bad-sidecar", "empty", "no-folder"],
)
def test_broken_sequences_name_the_file(tmp_path, make, culprit, problem):
    spec = make(tmp_path / "frames")
    with pytest.raises(InputError) as err:
        read(ImageSequenceSource(spec))
    message = str(err.value)
    assert culprit in message and problem in message and "\n" not in message


def test_images_above_max_pixels_are_refused(tmp_path):
    folder = write_images(tmp_path / "frames", ["0.png"])
    with pytest.raises(InputError, match=r"0\.png: frame size 64x48 .*limit of 100 pixels.*--max-pixels"):
        ImageSequenceSource(folder, max_pixels=100).open()

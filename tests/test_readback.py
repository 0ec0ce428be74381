"""The alpha-aware reader, and the sinks driven by the real Pipeline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from test_sinks import TB, VFR_PTS, clip_with_audio, expected_rgba, info_for, run, synthetic  # noqa: F401

from streammat.errors import InputError
from streammat.frames import Batch, Frame, MattedBatch, StreamInfo
from streammat.pipeline import Pipeline
from streammat.readback import probe, read_rgba
from streammat.sinks import create_sink


def test_native_vp9_decoder_drops_alpha_but_read_rgba_keeps_it(tmp_path: Path):
    out = tmp_path / "a.webm"
    batches = synthetic(64, 48, VFR_PTS[:4])
    run(create_sink(str(out)), batches, info_for(64, 48))
    with av.open(str(out)) as c:
        native = next(c.decode(video=0))
    assert native.format.name == "yuv420p"  # why read_rgba uses the libvpx-vp9 decoder
    ours = next(read_rgba(out))
    assert ours.image[..., 3].min() < 10 and ours.image[..., 3].max() > 245
    assert np.abs(ours.image[..., 3].astype(int) - expected_rgba(batches)[0][..., 3]).mean() < 1.5


def test_png_folder_without_sidecar(tmp_path: Path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 10, 4), 60 * i, np.uint8))
    frames = list(read_rgba(tmp_path))
    assert [f.pts for f in frames] == [0, 1, 2] and frames[0].time_base == Fraction(1, 25)
    assert frames[2].image.shape == (8, 10, 4) and frames[2].image[0, 0, 3] == 120


def test_missing_inputs(tmp_path: Path):
    with pytest.raises(InputError):
        list(read_rgba(tmp_path / "nope.mov"))
    with pytest.raises(InputError):
        list(read_rgba(tmp_path))  # empty folder


def test_probe_png_sequence(tmp_path: Path):
    run(create_sink(str(tmp_path / "s")), synthetic(65, 49, VFR_PTS), info_for(65, 49))
    p = probe(tmp_path / "s")
    assert p["frames"] == len(VFR_PTS) and p["pts"] == VFR_PTS and p["time_base"] == TB
    assert (p["width"], p["height"], p["pix_fmt"], p["alpha"]) == (65, 49, "rgba", True)


def test_partial_with_audio_stops_near_the_last_frame(tmp_path: Path, clip_with_audio: Path):  # noqa: F811
    batches = synthetic(64, 48, list(range(0, 1000, 40)), batch=4)
    sink = create_sink(str(tmp_path / "p.mov"))
    sink.open(info_for(64, 48, audio=str(clip_with_audio)))
    sink.write(batches[0])
    sink.write(batches[1])  # 8 frames: video ends at 0.32 s
    sink.close(complete=False)
    p = probe(tmp_path / "p.partial.mov")
    assert p["frames"] == 8 and p["has_audio"]
    assert 0.2 < p["audio_duration"] < 0.5, p["audio_duration"]


# --------------------------------------------------------------------------- with the Pipeline
class _ListSource:
    backpressure = "block"

    def __init__(self, batches: list[MattedBatch], fail_after: int | None = None) -> None:
        self._frames = [f for mb in batches for f in mb.batch.frames()]
        self._alpha = {f.index: mb.alpha[i] for mb in batches for i, f in enumerate(mb.batch.frames())}
        self.fail_after = fail_after
        self.closed = threading.Event()

    def open(self) -> StreamInfo:
        h, w = self._frames[0].image.shape[:2]
        return StreamInfo(w, h, TB)

    def __iter__(self) -> Iterator[Frame]:
        for i, f in enumerate(self._frames):
            if self.fail_after is not None and i == self.fail_after:
                raise InputError("corrupt input")
            yield f

    def close(self) -> None:
        self.closed.set()

    @property
    def stats(self) -> dict[str, int]:
        return {}


def _matter(source: _ListSource):
    import torch

    def mat(batch: Batch) -> MattedBatch:
        return MattedBatch(batch, torch.stack([source._alpha[i] for i in batch.indices]))

    return mat


def test_pipeline_complete_and_failed_runs(tmp_path: Path):
    batches = synthetic(64, 48, VFR_PTS)
    src = _ListSource(batches)
    result = Pipeline(src, _matter(src), [create_sink(str(tmp_path / "ok.mkv"))], batch_size=4).run()
    assert result.complete and result.frames_out == len(VFR_PTS)
    assert [f.pts for f in read_rgba(tmp_path / "ok.mkv")] == VFR_PTS

    src = _ListSource(batches, fail_after=11)
    with pytest.raises(InputError):
        Pipeline(src, _matter(src), [create_sink(str(tmp_path / "bad.mkv"))], batch_size=2).run()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "bad.mkv" not in names and not [n for n in names if n.startswith(".")]
    if "bad.partial.mkv" in names:  # how many batches reached the sink before the stop is racy
        frames = list(read_rgba(tmp_path / "bad.partial.mkv"))
        assert [f.pts for f in frames] == VFR_PTS[: len(frames)] and 0 < len(frames) <= 11

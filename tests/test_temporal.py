"""TemporalMatter: EMA math, threshold, feather, every-N reuse, resets."""

from __future__ import annotations

import threading
from fractions import Fraction

import pytest
import torch

from streammat.errors import ConfigError
from streammat.frames import Batch, MattedBatch
from streammat.matting.temporal import TemporalMatter

TB = Fraction(1, 1000)


class ScriptedMatter:
    """Returns the next alpha value(s) from a script, one constant mask per frame."""

    def __init__(self, values: list[int]) -> None:
        self.values = list(values)
        self.calls: list[int] = []  # batch sizes seen

    def __call__(self, batch: Batch) -> MattedBatch:
        self.calls.append(len(batch))
        alpha = torch.empty(batch.images.shape[:3], dtype=torch.uint8)
        for i in range(len(batch)):
            alpha[i] = self.values.pop(0)
        return MattedBatch(batch, alpha)


def make_batch(pts: list[int], h: int = 6, w: int = 8) -> Batch:
    return Batch(
        images=torch.zeros((len(pts), h, w, 3), dtype=torch.uint8),
        pts=tuple(pts),
        time_base=TB,
        indices=tuple(range(len(pts))),
    )


def test_off_is_identity():
    inner = ScriptedMatter([10, 200, 30])
    tm = TemporalMatter(inner)
    out = [tm(make_batch([i * 33])).alpha[0, 0, 0].item() for i in range(3)]
    assert out == [10, 200, 30]


def test_ema_math_within_and_across_batches():
    s = 0.75
    values = [0, 255, 255, 255, 100]
    tm = TemporalMatter(ScriptedMatter(values), smoothing=s, motion=None)
    got = [
        tm(make_batch([0, 33])).alpha[:2, 0, 0].tolist(),
        tm(make_batch([66, 100, 133])).alpha[:3, 0, 0].tolist(),
    ]
    ema, expected = None, []
    for v in values:
        ema = float(v) if ema is None else s * ema + (1 - s) * v
        expected.append(round(ema))
    assert got[0] + got[1] == expected


def test_threshold_binarizes_after_smoothing():
    tm = TemporalMatter(ScriptedMatter([0, 255, 255]), smoothing=0.5, threshold=0.6, motion=None)
    out = [tm(make_batch([i * 33])).alpha[0].unique().tolist() for i in range(3)]
    # ema: 0, 127.5, 191.25 → threshold 153 → 0, 0, 255
    assert out == [[0], [0], [255]]


def test_feather_softens_edges_only():
    class Edge:
        def __call__(self, batch: Batch) -> MattedBatch:
            a = torch.zeros(batch.images.shape[:3], dtype=torch.uint8)
            a[:, :, 16:] = 255
            return MattedBatch(batch, a)

    sharp = TemporalMatter(Edge())(make_batch([0], h=8, w=32)).alpha[0]
    soft = TemporalMatter(Edge(), feather=3)(make_batch([0], h=8, w=32)).alpha[0]
    assert set(sharp.unique().tolist()) == {0, 255}
    row = soft[4].tolist()
    assert row[0] == 0 and row[-1] == 255  # far from the edge: unchanged
    assert 0 < row[15] < 128 < row[16] < 255  # at the edge: a ramp
    assert row == sorted(row)


def test_every_n_reuses_the_mask_and_skips_inference():
    inner = ScriptedMatter([10, 20, 30, 40])
    tm = TemporalMatter(inner, every=3)
    out = [tm(make_batch([i * 33])).alpha[0, 0, 0].item() for i in range(7)]
    assert out == [10, 10, 10, 20, 20, 20, 30]
    assert inner.calls == [1, 1, 1]  # the in-between frames never reached the model
    assert (tm.computed, tm.reused) == (3, 4)


def test_every_n_inside_a_batch_sends_only_key_frames():
    inner = ScriptedMatter([10, 20, 30])
    tm = TemporalMatter(inner, every=2)
    a = tm(make_batch([0, 33, 66, 100, 133])).alpha
    assert a[:, 0, 0].tolist() == [10, 10, 20, 20, 30]
    assert inner.calls == [3]


def test_reset_on_size_change():
    inner = ScriptedMatter([0, 0, 255])
    tm = TemporalMatter(inner, smoothing=0.9, motion=None)
    tm(make_batch([0]))
    tm(make_batch([33]))
    out = tm(make_batch([66], h=10, w=12)).alpha
    assert out.shape == (1, 10, 12)
    assert out.unique().tolist() == [255]  # not smoothed towards the old size's mask
    assert tm.resets == 1


def test_reset_after_a_gap_and_every_n_recomputes():
    inner = ScriptedMatter([0, 255, 255])
    tm = TemporalMatter(inner, smoothing=0.9, every=10, reset_after=1.0, motion=None)
    tm(make_batch([0]))
    tm(make_batch([33]))  # reused
    out = tm(make_batch([3000])).alpha  # 3 s later: a reconnected camera
    assert out[0, 0, 0].item() == 255
    assert inner.calls == [1, 1]


@pytest.mark.parametrize(
    "kwargs",
    [{"smoothing": 1.0}, {"smoothing": -0.1}, {"threshold": 1.5}, {"feather": -1}, {"feather": 2.5}, {"every": 0}],
)
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        TemporalMatter(ScriptedMatter([]), **kwargs)


class StagedScript(ScriptedMatter):
    """A staged matter: the three steps, each recording the thread it ran on."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(values)
        self.threads: dict[str, set[str]] = {"prepare": set(), "infer": set(), "finish": set()}

    def prepare(self, batch: Batch) -> Batch:
        self.threads["prepare"].add(threading.current_thread().name)
        return batch

    def infer(self, batch: Batch) -> Batch:
        self.threads["infer"].add(threading.current_thread().name)
        return batch

    def finish(self, batch: Batch, raw: Batch) -> MattedBatch:
        self.threads["finish"].add(threading.current_thread().name)
        return self(raw)


def test_is_staged_and_keeps_the_three_thread_overlap_in_a_pipeline():
    from streammat.matting.base import StagedMatter
    from streammat.pipeline import Pipeline
    from streammat.testing import CollectingSink, ListSource

    values = [(i * 37) % 256 for i in range(40)]
    inner = StagedScript(values)
    tm = TemporalMatter(inner, smoothing=0.5, every=2, motion=None)
    assert isinstance(tm, StagedMatter)
    sink = CollectingSink()
    Pipeline(ListSource(40), tm, [sink], batch_size=4).run()  # 40 ms apart
    # every other frame reached the model, each step on its own pipeline thread
    assert len(sink.alpha) == 40 and sum(inner.calls) == 20
    assert inner.threads == {"prepare": {"sm-batch"}, "infer": {"sm-model"}, "finish": {"sm-finish"}}
    # the same numbers as the one-call path
    ref = TemporalMatter(ScriptedMatter(values), smoothing=0.5, every=2, motion=None)
    expected = [ref(make_batch([i * 40 for i in range(s, s + 4)])).alpha[:, 0, 0].tolist() for s in range(0, 40, 4)]
    assert [int(a[0, 0]) for a in sink.alpha] == [v for chunk in expected for v in chunk]


def test_refine_and_motion_smoothing_run_inside_the_staged_matter():
    """Guided refinement and motion-aware smoothing on real-sized frames: a still edge
    settles, the settings are checked, and the result stays a valid matte."""
    from streammat.matting.refine import guided_refine

    h, w = 64, 96
    images = torch.zeros((4, h, w, 3), dtype=torch.uint8)
    images[:, :, w // 2 :] = 200  # a still colour edge

    class Noisy:
        calls = 0

        def __call__(self, batch: Batch) -> MattedBatch:
            Noisy.calls += 1
            a = torch.zeros(batch.images.shape[:3], dtype=torch.uint8)
            a[:, :, w // 2 - 4 :] = 255
            a[:, :, w // 2 - 4 : w // 2 + 4] = 100 + 40 * (Noisy.calls % 2)  # a flickering soft edge
            return MattedBatch(batch, a)

    plain = TemporalMatter(Noisy())
    smooth = TemporalMatter(Noisy(), smoothing=0.8, refine="guided")
    batch = Batch(images, (0, 40, 80, 120), TB, (0, 1, 2, 3))
    a = [plain(batch).alpha, plain(batch).alpha]
    b = [smooth(batch).alpha, smooth(batch).alpha]
    flicker = lambda x: (x[1].float() - x[0].float()).abs().mean().item()  # noqa: E731
    assert flicker(b) < flicker(a)
    assert b[1].dtype == torch.uint8 and b[1].shape == (4, h, w)
    refined = guided_refine(images, a[0].clone())
    assert torch.equal(refined[:, :, :16], a[0][:, :, :16]), "away from the edge nothing changes"
    with pytest.raises(ConfigError, match="refine"):
        TemporalMatter(Noisy(), refine="sharp")

"""The matte controls on numpy frames (numpy and OpenCV, the CPU path) against the torch
code they mirror, on real frames: the quality benchmark's clip (a person over a moving
texture, camera noise, H.264) with model-like soft masks, batch after batch.

The tolerance, everywhere: no pixel more than 1 grey level off, and at most 0.1 % of the
pixels off at all (the two sum in another order, so a value near a half may round the
other way)."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch

from streammat.frames import Batch, MattedBatch
from streammat.matting.cells import CELL, gather_cells, put_cells
from streammat.matting.grid import box_mean, edge_cells, edge_cells_array, sample, sample_array
from streammat.matting.motion import MotionSmoother
from streammat.matting.refine import guided_refine, guided_refine_array
from streammat.matting.temporal import TemporalMatter
from streammat.quality.clips import make_clip

TB = Fraction(1, 1000)
FRAME_MS = 33
#: the largest difference allowed, and the share of pixels that may differ at all
MAX_LEVELS, MAX_SHARE = 1, 1e-3


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T,H,W,3)`` and model-like masks ``(T,H,W)``: the true alpha seen through a
    coarse grid (soft, blobby edges), shimmering by a level or two from frame to frame."""
    c = make_clip("moving", frames=14, width=204, height=136)  # 204: not a whole number of cells
    t, h, w = c.alpha.shape
    rng = np.random.default_rng(1)
    masks = np.empty_like(c.alpha)
    for i, truth in enumerate(c.alpha):
        coarse = cv2.resize(truth, (48, 32), interpolation=cv2.INTER_AREA).astype(np.int16)
        coarse += rng.integers(-2, 3, coarse.shape, dtype=np.int16)
        masks[i] = cv2.resize(np.clip(coarse, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return c.frames, masks


def assert_close(host: np.ndarray, ref: np.ndarray) -> None:
    diff = np.abs(host.astype(np.int16) - ref.astype(np.int16))
    assert int(diff.max()) <= MAX_LEVELS, f"max difference {int(diff.max())} levels"
    assert float((diff > 0).mean()) <= MAX_SHARE, f"{float((diff > 0).mean()):.4%} of pixels differ"


# -- the cell helpers ------------------------------------------------------------------------
@pytest.mark.parametrize("width", [64, 60])  # a whole number of cells (8-byte words), and not
def test_cell_helpers_equal_their_torch_versions(width):
    rng = np.random.default_rng(2)
    alpha = rng.integers(0, 256, (3, 40, width), dtype=np.uint8)
    rgb = rng.integers(0, 256, (3, 40, width, 3), dtype=np.uint8)
    for x in (alpha, rgb):
        for s in (4, CELL):
            assert np.array_equal(sample_array(x, s), sample(torch.from_numpy(x), s).numpy())
    planes = rng.random((2, 5, 9, 13), dtype=np.float32)
    assert np.array_equal(box_mean(planes, 2), box_mean(torch.from_numpy(planes), 2).numpy())
    mask = sample_array(alpha, CELL).astype(np.float32) / 255
    for band in (0, 16):
        torch_edges = edge_cells(torch.from_numpy(mask).unsqueeze(1), band=band, s=CELL).numpy()
        assert np.array_equal(edge_cells_array(mask, band=band, s=CELL), torch_edges)
    # gather and write the cells (n, i, j) as slicing would
    n, i, j = np.nonzero(rng.random((3, 40 // CELL, width // CELL)) > 0.6)
    for x in (alpha, rgb):
        cells = gather_cells(x, n, i, j, CELL)
        for k in range(n.size):
            block = x[n[k], i[k] * CELL : (i[k] + 1) * CELL, j[k] * CELL : (j[k] + 1) * CELL]
            assert np.array_equal(cells[k], block)
        target = np.zeros_like(x)
        put_cells(target, cells, n, i, j, CELL)
        written = np.zeros(x.shape[:3], bool)
        for k in range(n.size):
            written[n[k], i[k] * CELL : (i[k] + 1) * CELL, j[k] * CELL : (j[k] + 1) * CELL] = True
        assert np.array_equal(target[written], x[written]) and not target[~written].any()


# -- the filters -----------------------------------------------------------------------------
@pytest.mark.parametrize("settings", [{}, {"band": 16, "subsample": 8}, {"radius": 40, "eps": 1e-3}])
def test_guided_refine_on_arrays_equals_torch(clip, settings):
    frames, masks = clip
    ref = guided_refine(torch.from_numpy(frames), torch.from_numpy(masks), **settings).numpy()
    host = masks.copy()
    assert guided_refine_array(frames, host, out=host, **settings) is host
    assert_close(host, ref)
    assert not np.array_equal(host, masks)  # the edges did move
    assert np.array_equal(guided_refine_array(frames[:1], masks[:1], **settings), host[:1])  # alone = in a batch


def test_motion_smoother_on_arrays_equals_torch_batch_after_batch(clip):
    frames, masks = clip
    host, ref = MotionSmoother(0.8), MotionSmoother(0.8)
    outs = []
    for a, b in ((0, 3), (3, 4), (4, 8), (8, 14)):
        if a == 8:
            host.reset()
            ref.reset()
        got = host(frames[a:b], masks[a:b])
        assert isinstance(got, np.ndarray)
        assert_close(got, ref(torch.from_numpy(frames[a:b]), torch.from_numpy(masks[a:b])).numpy())
        outs.append(got)
    assert not np.array_equal(np.concatenate(outs), masks)  # still edges were blended
    assert np.array_equal(outs[-1][0], masks[8])  # after a reset the first frame passes


# -- the controls as the pipeline runs them --------------------------------------------------
class Script:
    """The inner matter: each frame's mask by its index, in the kind of the batch."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks

    def __call__(self, batch: Batch) -> MattedBatch:
        alpha = np.stack([self.masks[i][: batch.height, : batch.width] for i in batch.indices])
        return MattedBatch(batch, alpha if batch.array_backed else torch.from_numpy(alpha))


#: (first frame, frames, crop): batches of 3, 1 and 4 frames, a gap in time, a batch of
#: 2, then frames of another size
BATCHES = ((0, 3, None), (3, 1, None), (4, 4, None), (8, 2, None), (10, 1, (120, 184)), (11, 3, (120, 184)))


def _run(matter: TemporalMatter, frames: np.ndarray, *, arrays: bool) -> list[np.ndarray]:
    outs = []
    for first, count, crop in BATCHES:
        images = frames[first : first + count]
        if crop is not None:
            images = np.ascontiguousarray(images[:, : crop[0], : crop[1]])
        idx = tuple(range(first, first + count))
        pts = tuple(FRAME_MS * i + (2000 if first >= 8 else 0) for i in idx)  # a 2 s gap before frame 8
        batch = Batch(images if arrays else torch.from_numpy(images.copy()), pts, TB, idx)
        result = matter(batch)
        outs.append(result.alpha_array.copy())
    return outs


@pytest.mark.parametrize(
    "controls",
    [
        {"smoothing": 0.8, "refine": "guided"},
        {"smoothing": 0.5, "motion": None},
        {"smoothing": 0.5, "motion": None, "threshold": 0.5},
        {"threshold": 0.4, "feather": 3, "refine": "guided"},
        {"smoothing": 0.8, "every": 2, "feather": 2},
    ],
)
def test_temporal_matter_on_arrays_equals_the_torch_path(clip, controls):
    frames, masks = clip
    host_matter = TemporalMatter(Script(masks), **controls)
    torch_matter = TemporalMatter(Script(masks), **controls)
    host = _run(host_matter, frames, arrays=True)
    ref = _run(torch_matter, frames, arrays=False)
    for got, want in zip(host, ref, strict=True):
        assert_close(got, want)
    raw = [
        masks[first : first + count, : got.shape[1], : got.shape[2]]
        for (first, count, _), got in zip(BATCHES, host, strict=True)
    ]
    assert any(not np.array_equal(got, r) for got, r in zip(host, raw, strict=True))  # the controls acted
    counters = ("computed", "reused", "resets")
    assert [getattr(host_matter, c) for c in counters] == [getattr(torch_matter, c) for c in counters]
    assert host_matter.resets >= 2  # the gap and the new frame size

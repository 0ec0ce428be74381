from fractions import Fraction

import numpy as np
import pytest
import torch

from streammat.batching import Batcher
from streammat.frames import Batch, Frame, MattedBatch, StreamInfo

TB = Fraction(1, 25)


def frame(i: int, h: int = 4, w: int = 6) -> Frame:
    return Frame(np.full((h, w, 3), i, np.uint8), pts=i * 2, time_base=TB, index=i)


def test_frame_rejects_wrong_shape_with_clear_message():
    with pytest.raises(ValueError, match=r"expected \(H,W,3\) uint8, got \(4, 6\)"):
        Frame(np.zeros((4, 6), np.uint8), 0, TB, 0)
    with pytest.raises(ValueError, match="float32"):
        Frame(np.zeros((4, 6, 3), np.float32), 0, TB, 0)


def test_batch_checks_lengths_and_is_never_empty():
    x = torch.zeros(2, 4, 6, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="2 pts"):
        Batch(x, (0,), TB, (0, 1))
    with pytest.raises(ValueError, match="empty batch"):
        Batch(x[:0], (), TB, ())
    with pytest.raises(ValueError, match="alphas"):
        Batch(x, (0, 1), TB, (0, 1), alphas=torch.zeros(2, 4, 5, dtype=torch.uint8))


def test_batch_slices_into_batches_of_views():
    x = torch.arange(4).view(4, 1, 1, 1).expand(4, 2, 3, 3).contiguous().to(torch.uint8)
    b = Batch(x, (0, 2, 4, 6), TB, (0, 1, 2, 3), (1.0, 2.0, 3.0, 4.0))
    tail = b[1:3]
    assert len(tail) == 2 and tail.pts == (2, 4) and tail.capture_times == (2.0, 3.0)
    assert int(tail.images[0, 0, 0, 0]) == 1 and tail.images.data_ptr() == x[1].data_ptr()


def test_stream_info_rejects_float_time_base():
    with pytest.raises(ValueError, match="Fraction"):
        StreamInfo(width=4, height=4, time_base=0.04)  # type: ignore[arg-type]


def test_batcher_makes_batches_of_real_frames_only():
    b = Batcher(4)
    out = [batch for i in range(10) for batch in b.add(frame(i))]
    last = b.flush()
    assert [len(x) for x in out] == [4, 4] and last is not None and len(last) == 2
    assert all(x.images.shape == (4, 4, 6, 3) for x in out) and last.images.shape == (2, 4, 6, 3)
    assert last.pts == (16, 18) and last.indices == (8, 9) and int(last.images[1, 0, 0, 0]) == 9
    assert b.flush() is None


def test_batcher_flushes_on_size_change():
    b = Batcher(4)
    assert b.add(frame(0)) == [] and b.add(frame(1)) == []
    out = b.add(frame(2, h=8))
    assert len(out) == 1 and len(out[0]) == 2 and out[0].height == 4
    assert len(b) == 1


def test_matted_batch_foreground_matches_pil_composite():
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 5, 7, 3), dtype=np.uint8)
    a = rng.integers(0, 256, (1, 5, 7), dtype=np.uint8)
    mb = MattedBatch(Batch(torch.from_numpy(img), (0,), TB, (0,)), torch.from_numpy(a))
    ref = np.asarray(Image.composite(Image.fromarray(img[0]), Image.new("RGBA", (7, 5), 0), Image.fromarray(a[0])))
    assert np.array_equal(mb.foreground()[0].numpy(), ref[..., :3])
    assert np.array_equal(mb.rgba()[0, ..., 3].numpy(), a[0])
    assert np.array_equal(mb.rgba()[0, ..., :3].numpy(), img[0])  # straight alpha keeps the colour


def test_a_numpy_batch_reads_as_torch_and_numpy_without_copies():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    a = np.full((2, 4, 6), 7, np.uint8)
    b = Batch(x, (0, 1), TB, (0, 1), alphas=a)
    assert b.images_array is x and b.alphas_array is a
    assert isinstance(b.images, torch.Tensor) and b.images is b.images  # made once
    assert b.images.data_ptr() == x.ctypes.data and b.alphas.data_ptr() == a.ctypes.data
    assert b[1:].images_array.base is not None and int(b[1:].images[0, 0, 0, 0]) == x[1, 0, 0, 0]
    m = MattedBatch(b, a)
    assert np.array_equal(m.rgba_array(), m.rgba().numpy()) and m.alpha_array is a
    moved = m.retimed((5, 6))
    assert moved.batch.pts == (5, 6) and moved.batch.images_array is x and moved.alpha_array is a


def test_a_torch_batch_has_the_same_numpy_view():
    x = torch.zeros(2, 4, 6, 3, dtype=torch.uint8)
    b = Batch(x, (0, 1), TB, (0, 1))
    assert b.images is x and b.images_array.ctypes.data == x.data_ptr() and b.alphas_array is None


def test_numpy_batches_are_checked_like_tensors():
    with pytest.raises(ValueError, match=r"expected \(N,H,W,3\) uint8, got \(2, 4, 6, 3\) float32"):
        Batch(np.zeros((2, 4, 6, 3), np.float32), (0, 1), TB, (0, 1))
    with pytest.raises(ValueError, match="alphas"):
        Batch(np.zeros((2, 4, 6, 3), np.uint8), (0, 1), TB, (0, 1), alphas=np.zeros((2, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="expected alpha"):
        MattedBatch(Batch(np.zeros((1, 4, 6, 3), np.uint8), (0,), TB, (0,)), np.zeros((1, 4, 6), np.float32))


def test_batcher_stacks_numpy_frames_into_a_numpy_batch():
    b = Batcher(2)
    (out,) = [batch for i in range(2) for batch in b.add(frame(i))]
    assert isinstance(out.images_array, np.ndarray) and out.images_array.shape == (2, 4, 6, 3)
    assert "_images_tensor" not in vars(out)  # no torch view made until asked for

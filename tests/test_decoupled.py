"""A live recorder that cannot keep up drops its own frames and never slows the stream."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest
import torch

from streammat.errors import OutputError
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.pipeline import Pipeline
from streammat.sinks.decoupled import DecoupledSink
from streammat.testing import CollectingSink, ListSource


def batch(i: int) -> MattedBatch:
    b = Batch(torch.zeros((1, 4, 6, 3), dtype=torch.uint8), (i,), Fraction(1, 30), (i,))
    return MattedBatch(b, torch.zeros((1, 4, 6), dtype=torch.uint8))


def test_a_slow_recorder_drops_frames_for_itself_only_and_keeps_the_rest_in_order():
    slow = CollectingSink(delay=0.05)
    sink = DecoupledSink(slow, max_batches=4)
    sink.open(StreamInfo(6, 4, Fraction(1, 30)))
    t = time.monotonic()
    for i in range(40):
        sink.write(batch(i))
    writes_took = time.monotonic() - t
    sink.close()
    assert writes_took < 0.05 * 40 / 2, "write() waited for the slow recorder"
    assert sink.dropped > 0 and len(slow.pts) + sink.dropped == 40
    assert slow.pts == sorted(slow.pts) and slow.closed_with == [True]
    assert "dropped (recorder too slow)" in sink.description


def test_a_recorder_error_reaches_the_pipeline():
    sink = DecoupledSink(CollectingSink(fail_at=3))
    with pytest.raises(OutputError, match="disk full"):
        Pipeline(ListSource(200, delay=0.002), lambda b: MattedBatch(b, b.images[..., 0]), [sink], batch_size=1).run()

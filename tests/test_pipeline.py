import threading
import time

import pytest
import torch

from streammat.errors import ConfigError, InputError, Interrupted, OutputError
from streammat.frames import MattedBatch
from streammat.pipeline import Pipeline
from streammat.testing import CollectingSink, ListSource


def half_alpha(batch):
    return MattedBatch(batch, torch.full(batch.images.shape[:3], 128, dtype=torch.uint8))


def test_every_frame_arrives_in_order_with_its_pts():
    sink = CollectingSink()
    result = Pipeline(ListSource(21, step=3), half_alpha, [sink], batch_size=4).run()
    assert result.complete and result.frames_in == result.frames_out == 21
    assert sink.pts == [i * 3 for i in range(21)]
    assert sink.closed_with == [True]
    assert all(int(a[0, 0]) == 128 for a in sink.alpha)
    assert [int(x[0, 0, 0]) for x in sink.rgb] == list(range(21))


def test_source_error_reaches_caller_after_every_decoded_frame_was_written():
    """A broken input drains: the frames decoded before the error reach the outputs."""
    sink = CollectingSink(delay=0.02)  # a slow writer: frames are still queued at the error
    with pytest.raises(InputError, match="frame 10 is broken"):
        Pipeline(ListSource(50, fail_at=10), half_alpha, [sink], batch_size=4).run()
    assert sink.closed_with == [False]
    assert sink.pts == list(range(10))


def test_drained_stop_writes_what_was_read_and_a_hard_stop_does_not_wait():
    sink = CollectingSink(delay=0.005)
    p = Pipeline(ListSource(10_000, delay=0.001), half_alpha, [sink], batch_size=4)
    threading.Timer(0.3, lambda: p.stop(drain=True)).start()
    result = p.run()
    assert result.stopped and not result.complete and sink.closed_with == [False]
    assert result.frames_out == result.frames_in == len(sink.pts) > 0  # nothing read was lost


def test_stop_is_the_normal_end_of_a_live_run():
    sink = CollectingSink()
    p = Pipeline(ListSource(10_000, delay=0.002), half_alpha, [sink], batch_size=1, stop_is_end=True)
    threading.Timer(0.3, lambda: p.stop(drain=True)).start()
    result = p.run()
    assert result.stopped and result.complete and sink.closed_with == [True]


def test_a_pipeline_runs_once():
    p = Pipeline(ListSource(3), half_alpha, [CollectingSink()])
    p.run()
    with pytest.raises(ConfigError, match="runs once"):
        p.run()


def test_sinks_close_only_after_the_writer_finished_and_any_close_error_is_reported():
    class Sink(CollectingSink):
        writing = False

        def write(self, batch):
            self.writing = True
            time.sleep(0.05)
            super().write(batch)
            self.writing = False

        def close(self, *, complete=True):
            assert not self.writing, "closed while the writer was inside write()"
            super().close(complete=complete)
            raise RuntimeError("flush failed")

    sink = Sink()
    p = Pipeline(ListSource(10_000), half_alpha, [sink], batch_size=2)
    threading.Timer(0.2, p.stop).start()
    with pytest.raises(OutputError, match="flush failed"):
        p.run()
    assert sink.closed_with == [False]


@pytest.mark.parametrize(
    "args, culprit",
    [
        (("in.mp4", half_alpha, []), "source must be a Source"),
        ((ListSource(1), object(), []), "matter must be a Matter"),
        ((ListSource(1), half_alpha, "out.mov"), "sinks must be a list"),
        ((ListSource(1), half_alpha, [object()]), "is not a sink"),
    ],
)
def test_wrong_stages_are_one_clear_error(args, culprit):
    with pytest.raises(ConfigError, match=culprit):
        Pipeline(*args)


def test_matting_error_stops_every_stage_promptly():
    def broken(batch):
        raise RuntimeError("model exploded")

    src = ListSource(10_000)
    t = time.monotonic()
    with pytest.raises(RuntimeError, match="model exploded"):
        Pipeline(src, broken, [CollectingSink()], batch_size=2).run()
    assert time.monotonic() - t < 5 and src.closed


def test_sink_error_stops_a_blocking_source():
    sink = CollectingSink(fail_at=5)
    with pytest.raises(OutputError, match="disk full"):
        Pipeline(ListSource(10_000), half_alpha, [sink], batch_size=2).run()
    assert sink.closed_with == [False]


def test_stop_from_another_thread_gives_a_partial_result():
    sink = CollectingSink(delay=0.01)
    p = Pipeline(ListSource(10_000), half_alpha, [sink], batch_size=2)
    threading.Timer(0.3, p.stop).start()
    result = p.run()
    assert not result.complete and 0 < result.frames_out < 10_000
    assert sink.closed_with == [False]


def test_keyboard_interrupt_in_the_caller_finalizes_partial(monkeypatch):
    sink = CollectingSink(delay=0.01)
    p = Pipeline(ListSource(10_000), half_alpha, [sink], batch_size=2)
    real_join = threading.Thread.join
    calls = {"n": 0}

    def join(self, timeout=None):  # the caller's wait is where Ctrl-C lands
        calls["n"] += 1
        if calls["n"] == 20 and threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        return real_join(self, timeout)

    monkeypatch.setattr(threading.Thread, "join", join)
    with pytest.raises(Interrupted):
        p.run()
    assert sink.closed_with == [False]


def test_latest_policy_drops_old_frames_instead_of_queueing():
    src = ListSource(120, delay=0.002, backpressure="latest")

    def slow(batch):
        time.sleep(0.03)
        return half_alpha(batch)

    sink = CollectingSink()
    result = Pipeline(src, slow, [sink], batch_size=1, flush_after=0.0).run()
    assert result.source_stats["dropped"] > 0
    assert result.frames_out + result.source_stats["dropped"] >= 100
    assert sink.pts == sorted(sink.pts)


def test_partial_batch_is_flushed_on_deadline():
    src = ListSource(3, delay=0.2)
    seen = []

    def record(batch):
        seen.append((len(batch), time.monotonic()))
        return half_alpha(batch)

    Pipeline(src, record, [CollectingSink()], batch_size=8, flush_after=0.05).run()
    assert sum(v for v, _ in seen) == 3 and len(seen) >= 2  # did not wait for 8 frames


def test_a_live_pipeline_prepares_only_the_batches_its_model_takes():
    """The newest-frame policy drops waiting batches; none of them was prepared in vain."""
    calls = {"prepare": 0, "infer": 0}

    class Staged:
        def prepare(self, batch):
            calls["prepare"] += 1
            return batch

        def infer(self, prepared):
            calls["infer"] += 1
            time.sleep(0.03)  # a model slower than the camera
            return prepared

        def finish(self, batch, raw):
            return half_alpha(batch)

        def __call__(self, batch):
            return self.finish(batch, self.infer(self.prepare(batch)))

    src = ListSource(60, delay=0.002, backpressure="latest")
    result = Pipeline(src, Staged(), [CollectingSink()], batch_size=1, flush_after=0.0).run()
    assert result.source_stats["dropped"] > 0
    assert calls["prepare"] == calls["infer"] == result.frames_out


def test_a_matter_that_bounds_its_frames_in_flight_gets_the_newest_frame_once_it_has_room():
    """A staged matter with ``reserve`` (a stream of a shared model) is asked for room
    before the pipeline takes a batch: the frames that arrived while it was full are
    replaced by the newest, instead of the oldest one waiting inside ``infer``."""
    room = threading.Event()
    taken: list[int] = []

    class Source(ListSource):
        def __iter__(self):
            for frame in super().__iter__():
                yield frame
                if frame.index == 20:  # the matter has room only once frame 20 went by
                    time.sleep(0.2)  # (and reached the model's queue)
                    room.set()

    class Bounded:
        def reserve(self, timeout):
            return room.wait(timeout)

        def prepare(self, batch):
            return batch

        def infer(self, prepared):
            taken.append(prepared.indices[0])
            return prepared

        def finish(self, batch, raw):
            return half_alpha(batch)

        def __call__(self, batch):
            return self.finish(batch, self.infer(self.prepare(batch)))

    src = Source(30, delay=0.002, backpressure="latest")
    result = Pipeline(src, Bounded(), [CollectingSink()], batch_size=1, stop_is_end=True).run()
    assert result.complete
    assert taken and taken[0] >= 20  # frames 0-19 arrived while the matter was full
    assert taken == sorted(taken)

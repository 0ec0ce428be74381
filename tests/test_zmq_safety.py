"""Data safety of ZeroMQ receivers: streams that change size or time base, receivers
slower than the publisher, lossless (reliable) receivers next to plain ones, frames
that arrive before the consumer is ready. Real sockets on loopback; bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
import torch

from streammat.errors import InputError
from streammat.frames import Batch, MattedBatch
from streammat.pipeline import Pipeline, RunResult
from streammat.sources.zmq import ZmqSource
from streammat.testing import CollectingSink
from streammat.transport.publisher import Publisher
from streammat.transport.subscriber import Subscription

TB = Fraction(1, 30000)
HB = 0.1  # heartbeat of every publisher and receiver here: silence is noticed after 0.3 s


def plane(i: int, w: int = 16, h: int = 12, c: int = 4) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (h, w, c), dtype=np.uint8)


def passthrough(batch: Batch) -> MattedBatch:
    """The matter of a recorder: the received alpha, or opaque."""
    alpha = batch.alphas if batch.alphas is not None else torch.full(batch.images.shape[:3], 255, dtype=torch.uint8)
    return MattedBatch(batch, alpha)


def run_pipeline(
    source: ZmqSource, sink: CollectingSink, feed: Callable[[], None]
) -> tuple[RunResult | None, BaseException | None]:
    """Run the pipeline in a thread while ``feed`` publishes; the run's result or error."""
    out: list = []

    def run() -> None:
        try:
            out.append(Pipeline(source, passthrough, [sink], batch_size=4).run())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        feed()
    finally:
        runner.join(20)
    assert not runner.is_alive(), "the pipeline did not finish"
    got = out[0]
    return (None, got) if isinstance(got, BaseException) else (got, None)


def wait_idle(receiver: ZmqSource | Subscription, timeout: float = 5.0) -> None:
    """Until the publisher's heartbeat arrived (a source reads on its own thread)."""
    deadline = time.monotonic() + timeout
    while receiver.stats["idle"] == 0:
        assert time.monotonic() < deadline, "never connected"
        if isinstance(receiver, Subscription):
            assert receiver.receive(0.02) is None
        else:
            time.sleep(0.02)


# -- a stream that changes size ---------------------------------------------------------------
def test_a_stream_that_changes_size_is_recorded_whole_at_the_first_size() -> None:
    sizes = [(64, 48)] * 10 + [(32, 32)] * 10 + [(64, 48)] * 10
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        source = ZmqSource(pub.endpoint, timeout=10, keep_alpha=True, heartbeat=HB)
        sink = CollectingSink()

        def feed() -> None:
            threading.Thread(target=source.open).start()  # connects now, as a recorder does
            wait_idle(source)
            for i, (w, h) in enumerate(sizes):
                pub.send_frame([plane(i, w, h)], layout="rgba", pts=i * 1001, time_base=TB, index=i)
                time.sleep(0.002)
            pub.close()

        result, error = run_pipeline(source, sink, feed)
    assert error is None and result is not None and result.complete
    assert len(sink.pts) == 30 and sink.pts == [i * 1001 for i in range(30)]
    assert {a.shape for a in sink.alpha} == {(48, 64)} and {c.shape for c in sink.rgb} == {(48, 64, 3)}
    assert source.stats["scaled"] == 10 and sink.closed_with == [True]
    np.testing.assert_array_equal(sink.rgb[3], plane(3, 64, 48)[..., :3])  # same size: untouched
    np.testing.assert_array_equal(sink.alpha[3], plane(3, 64, 48)[..., 3])  # the received alpha
    small = sink.alpha[12]
    assert abs(float(small.mean()) - float(plane(12, 32, 32)[..., 3].mean())) < 8  # scaled, not blank


def test_time_base_changes_are_converted_exactly_or_end_the_run_as_partial() -> None:
    stamps = [(0, TB), (1001, TB), (2, Fraction(1, 30)), (3003, TB), (1, Fraction(1, 7))]  # 1/7 s: not in 1/30000
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        source = ZmqSource(pub.endpoint, timeout=10, heartbeat=HB)
        sink = CollectingSink()

        def feed() -> None:
            threading.Thread(target=source.open).start()
            wait_idle(source)
            for i, (pts, tb) in enumerate(stamps):
                pub.send_frame([plane(i, c=3)], layout="rgb", pts=pts, time_base=tb, index=i)
                time.sleep(0.002)
            pub.close()

        result, error = run_pipeline(source, sink, feed)
    assert sink.pts == [0, 1001, 2000, 3003]  # 2/30 s = 2000/30000
    assert isinstance(error, InputError) and "time base" in str(error) and sink.closed_with == [False]


# -- receivers slower than the publisher ---------------------------------------------------------
def test_a_slow_pipeline_gets_every_frame_and_the_end_of_stream() -> None:
    """The source reads on its own thread, so the pipeline may be slow: 60 frames sent in a
    burst, a sink that takes 10 ms a frame, every frame recorded and the run complete."""
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        source = ZmqSource(pub.endpoint, timeout=10, heartbeat=HB)
        sink = CollectingSink(delay=0.04)

        def feed() -> None:
            threading.Thread(target=source.open).start()
            wait_idle(source)
            for i in range(60):
                pub.send_frame([plane(i, c=3)], layout="rgb", pts=i, time_base=TB, index=i)
                time.sleep(0.001)
            pub.close()

        result, error = run_pipeline(source, sink, feed)
    assert error is None and result is not None and result.complete and len(sink.pts) == 60


def test_frames_lost_at_a_full_buffer_make_the_run_partial_with_the_count() -> None:
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        source = ZmqSource(pub.endpoint, timeout=10, heartbeat=HB, buffer_frames=4)
        sink = CollectingSink(delay=0.08)

        def feed() -> None:
            threading.Thread(target=source.open).start()
            wait_idle(source)
            for i in range(100):  # more than the pipeline's queues and the buffer hold
                pub.send_frame([plane(i, c=3)], layout="rgb", pts=i, time_base=TB, index=i)
                time.sleep(0.001)
            pub.close()

        _, error = run_pipeline(source, sink, feed)
    lost = source.stats["dropped"]
    assert lost > 0 and isinstance(error, InputError) and f": {lost} frames missing" in str(error)
    assert source.stats["decoded"] == 100 - lost and len(sink.pts) <= 100 - lost
    assert sink.closed_with == [False]


def test_a_throttled_subscriber_whose_end_of_stream_was_dropped_ends_by_silence() -> None:
    """Its queues are full when the publisher ends, so the end-of-stream message is
    dropped for it; the publisher's heartbeats told it how many frames there were."""
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=HB, sndhwm=2).open()
    sub = Subscription(pub.endpoint, heartbeat=HB, timeout=10, rcvhwm=2).open()
    got: list[int] = []
    ended_at: list[float] = []

    def read() -> None:
        for f in sub:
            got.append(f.seq)
            time.sleep(0.03)
        ended_at.append(time.monotonic())

    try:
        wait_idle(sub)
        reader = threading.Thread(target=read)
        reader.start()
        big = plane(0, 640, 480)  # 1.2 MB: the kernel's socket buffers hold only a few
        for i in range(60):
            pub.send_frame([big], layout="rgba", pts=i, time_base=TB, index=i)
        time.sleep(4 * HB)  # heartbeats (next_seq 60) reach it once it made room
        pub.close(eos=False)  # gone without a word, like a crash or a dropped end of stream
        stream_end = time.monotonic()
        reader.join(5 + 60 * 0.03)
        assert not reader.is_alive(), "the subscriber waited for ever"
    finally:
        sub.close()
    assert sub.end_reason == "silence" and len(got) < 60
    assert sub.missing == 60 - len(got)
    assert ended_at[0] - stream_end < 5 + len(got) * 0.03


def test_frames_sent_before_the_consumer_starts_are_kept() -> None:
    """``open()`` receives from the first frame on: a consumer that starts late (a model
    loading) still gets what came meanwhile."""
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        source = ZmqSource(pub.endpoint, timeout=10, heartbeat=HB)
        opener = threading.Thread(target=source.open)
        opener.start()
        wait_idle(source)
        # 23 MB in all: more than the sockets' queues and the kernel's buffers hold
        for i in range(100):
            pub.send_frame([plane(i, 320, 240, c=3)], layout="rgb", pts=i, time_base=TB, index=i)
            time.sleep(0.003)  # a camera's pace, not a burst
        opener.join(5)
        time.sleep(0.5)  # "loading the model"
        pub.close()
        frames = list(source)
    assert [f.pts for f in frames] == list(range(100)) and source.end_reason == "eos"


# -- lossless receivers ---------------------------------------------------------------------------
def plain_and_reliable(
    pub: Publisher, frames: int, *, delay: float, hb: float = HB, window: int = 16, pace: float = 0.0
) -> dict[str, tuple[list[int], str | None]]:
    """A fast plain subscriber and a reliable one taking ``delay`` s a frame, both started
    before ``frames`` frames are published; each one's seqs and end reason."""
    got: dict[str, tuple[list[int], str | None]] = {}

    def receive(name: str, reliable: bool, wait: float) -> None:
        with Subscription(pub.endpoint, reliable=reliable, heartbeat=hb, timeout=10, window=window) as sub:
            seqs = []
            for f in sub:
                seqs.append(f.seq)
                time.sleep(wait)
            got[name] = (seqs, sub.end_reason)

    readers = [
        threading.Thread(target=receive, args=("plain", False, 0.0)),
        threading.Thread(target=receive, args=("reliable", True, delay)),
    ]
    for r in readers:
        r.start()
    try:
        assert pub.wait_for_subscribers(2, timeout=10)
        for i in range(frames):
            pub.send_frame([plane(i)], layout="rgba", pts=i, time_base=TB, index=i)
            time.sleep(pace)
    finally:
        pub.close()
        for r in readers:
            r.join(20)
    return got


def test_a_throttled_reliable_receiver_gets_every_frame_next_to_a_fast_plain_one() -> None:
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=HB, reliable=True, reliable_backlog=8).open()
    got = plain_and_reliable(pub, 60, delay=0.01, pace=0.002)
    assert got["reliable"] == (list(range(60)), "eos")
    assert got["plain"][1] == "eos"


def test_a_reliable_source_in_a_slow_pipeline_loses_nothing() -> None:
    """The publisher's backlog for it (4 frames) is far smaller than the stream: the
    publisher waits for it, and every frame arrives."""
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=HB, reliable=True, reliable_backlog=4).open()
    source = ZmqSource(pub.endpoint, timeout=10, heartbeat=HB, reliable=True, buffer_frames=1024)
    sink = CollectingSink(delay=0.02)

    def feed() -> None:
        try:
            threading.Thread(target=source.open).start()
            assert pub.wait_for_subscribers(1, timeout=10)
            for i in range(80):
                pub.send_frame([plane(i, c=3)], layout="rgb", pts=i, time_base=TB, index=i)
        finally:
            pub.close()

    result, error = run_pipeline(source, sink, feed)
    assert error is None and result is not None and result.complete
    assert sink.pts == list(range(80))


def test_a_reliable_receiver_against_a_plain_publisher_is_told_so() -> None:
    with Publisher("tcp://127.0.0.1:*", heartbeat=HB) as pub:
        sub = Subscription(pub.endpoint, reliable=True, heartbeat=HB, timeout=5)
        with pytest.raises(Exception, match="offers no reliable channel"):
            list(sub)
        sub.close()


def test_plain_subscribers_keep_their_heartbeat_while_the_publisher_waits_for_a_reliable_one() -> None:
    """A reliable receiver slower than the silence limit per frame: the publisher waits
    for it for longer than that, and neither receiver takes the wait for a dead publisher."""
    hb = 0.05  # silence limit 0.15 s; the reliable receiver takes 0.2 s a frame
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=hb, reliable=True, reliable_backlog=1).open()
    got = plain_and_reliable(pub, 8, delay=0.2, hb=hb, window=1)
    assert got == {"plain": (list(range(8)), "eos"), "reliable": (list(range(8)), "eos")}


def test_a_receiver_waits_as_long_as_the_publisher_says_its_heartbeat_is() -> None:
    """The receiver assumes 0.05 s heartbeats, the publisher sends one every 0.3 s: the
    interval announced in its idle messages keeps a quiet stream from ending early."""
    with Publisher("tcp://127.0.0.1:*", heartbeat=0.3) as pub, Subscription(pub.endpoint, heartbeat=0.05) as sub:
        wait_idle(sub)
        for i in range(6):
            pub.send_frame([plane(i)], layout="rgba", pts=i, time_base=TB, index=i)
            if i == 2:
                time.sleep(0.7)  # quiet for longer than 3 of the receiver's own intervals
        pub.close()
        got = [f.seq for f in sub]
    assert got == list(range(6)) and sub.end_reason == "eos"

"""Publisher, subscriber and ZmqSource over real sockets (loopback TCP and ipc only).

Every loop is bounded in count and time; frames are small."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from streammat.errors import InputError, TransportError
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.pipeline import Pipeline
from streammat.sinks.publisher import PublisherSink
from streammat.sources import open_source
from streammat.sources.zmq import ZmqSource
from streammat.transport.protocol import decode_message
from streammat.transport.publisher import Publisher
from streammat.transport.subscriber import Subscription

TB = Fraction(1, 30000)
W, H = 16, 12


def image(i: int, w: int = W, h: int = H, c: int = 4) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (h, w, c), dtype=np.uint8)


def send(pub: Publisher, i: int, *, layout: str = "rgba", pts: int | None = None, **kw) -> bool:
    c = {"rgba": 4, "rgb": 3}[layout]
    return pub.send_frame(
        [image(i, c=c, **kw)], layout=layout, pts=i * 1001 if pts is None else pts, time_base=TB, index=i
    )


def wait_connected(sub: Subscription, timeout: float = 5.0) -> None:
    """Until the publisher's idle heartbeat arrived (so the subscription is live)."""
    deadline = time.monotonic() + timeout
    while sub.stats["idle"] == 0:
        assert time.monotonic() < deadline, "subscriber never connected"
        assert sub.receive(0.05) is None


def drain(sub: Subscription, limit: int = 1000) -> list:
    out = []
    for f in sub:
        out.append(f)
        if len(out) >= limit:
            break
    return out


@pytest.fixture
def pub():
    p = Publisher("tcp://127.0.0.1:*", heartbeat=0.05).open()
    yield p
    p.close()


def test_several_subscribers_get_identical_frames(pub: Publisher) -> None:
    subs = [Subscription(pub.endpoint, timeout=5).open() for _ in range(3)]
    try:
        for s in subs:
            wait_connected(s)
        for i in range(20):
            assert send(pub, i)
            time.sleep(0.002)
        pub.close()
        results = [drain(s) for s in subs]
    finally:
        for s in subs:
            s.close()
    for frames, s in zip(results, subs, strict=True):
        assert [f.seq for f in frames] == list(range(20))
        assert s.ended and s.eos_complete is True and s.stats["gaps"] == 0
        for f in frames:
            np.testing.assert_array_equal(f.rgba(), image(f.index))
            assert f.pts == f.index * 1001 and f.time_base == TB
    assert all(f.stream == pub.stream_id for frames in results for f in frames)


def test_ipc_transport(tmp_path: Path) -> None:
    with Publisher(f"ipc://{tmp_path}/s.ipc", heartbeat=0.05) as p, Subscription(p.endpoint, timeout=5) as s:
        wait_connected(s)
        send(p, 3)
        f = s.receive(5)
        assert f is not None and f.seq == 0 and np.array_equal(f.rgba(), image(3))


def test_stalled_subscriber_stalls_neither_publisher_nor_others() -> None:
    big = 128  # 64 KB frames, 400 of them: far more than the stalled peer's buffers hold
    pub = Publisher("tcp://127.0.0.1:*", heartbeat=0.05, sndhwm=16).open()
    ctx = zmq.Context.instance()
    stalled = ctx.socket(zmq.SUB)
    stalled.setsockopt(zmq.RCVHWM, 2)
    stalled.setsockopt(zmq.LINGER, 0)
    stalled.setsockopt(zmq.RCVBUF, 65536)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(pub.endpoint)
    good = Subscription(pub.endpoint, timeout=5).open()
    got: list = []

    def read() -> None:  # appends as frames arrive, so the sender can see the reader's progress
        for f in good:
            got.append(f)
            if len(got) >= 1000:
                break

    reader = threading.Thread(target=read)
    try:
        assert stalled.poll(5000, zmq.POLLIN)  # connected (an idle message waits), never read
        wait_connected(good)
        reader.start()
        frame = image(0, big, big)
        slowest = 0.0
        for i in range(400):
            t = time.perf_counter()
            pub.send_frame([frame], layout="rgba", pts=i, time_base=TB, index=i)
            slowest = max(slowest, time.perf_counter() - t)
            time.sleep(0.001)  # ~1000 frames/s: a reader that keeps up on a loaded CI machine
        # let the reader empty its queue first, so the end-of-stream message is not dropped
        # at a full queue on a busy machine (bounded: at most 5 s)
        settle = time.monotonic() + 5
        while time.monotonic() < settle and (not got or got[-1].seq < 399):
            time.sleep(0.02)
        pub.close()
        reader.join(10)
        assert not reader.is_alive()
        # the publisher never waited for the stalled peer (a blocked send would hang forever)
        assert slowest < 1.0
        assert good.ended
        assert len(got) + good.stats["gaps"] == 400  # every frame accounted for
        assert len(got) >= 200
        # the stalled peer lost frames, and the sequence numbers show it
        seqs = []
        while stalled.poll(100, zmq.POLLIN) and len(seqs) < 500:
            msg = decode_message(stalled.recv_multipart())
            if hasattr(msg, "header"):
                seqs.append(msg.header.seq)
        assert len(seqs) < 400
        assert any(b - a > 1 for a, b in zip(seqs, seqs[1:], strict=False)) or (seqs and seqs[-1] < 399)
    finally:
        good.close()
        stalled.close(linger=0)
        pub.close()


def test_late_joiner_starts_at_the_next_frame(pub: Publisher) -> None:
    early = Subscription(pub.endpoint, timeout=5).open()
    wait_connected(early)
    for i in range(10):
        send(pub, i)
    late = Subscription(pub.endpoint, timeout=5).open()
    try:
        wait_connected(late)
        for i in range(10, 15):
            send(pub, i)
        pub.close()
        frames = drain(late)
        assert [f.seq for f in frames] == list(range(10, 15))
        assert late.stats["gaps"] == 0
        assert len(drain(early)) == 15
    finally:
        early.close()
        late.close()


def test_publisher_restart_subscriber_resumes() -> None:
    first = Publisher("tcp://127.0.0.1:*", heartbeat=0.05).open()
    url = first.endpoint
    sub = Subscription(url, timeout=5, until_eos=False).open()
    try:
        wait_connected(sub)
        send(first, 0)
        send(first, 1)
        assert [sub.receive(5).seq, sub.receive(5).seq] == [0, 1]
        first.close(eos=False)  # a crash: no end-of-stream message
        second = Publisher(url, heartbeat=0.05).open()
        try:
            deadline = time.monotonic() + 10
            frame = None
            while frame is None and time.monotonic() < deadline:  # until the reconnect completes
                if sub.stats["restarts"]:
                    send(second, 7)
                frame = sub.receive(0.05)
            assert frame is not None and frame.stream == second.stream_id and frame.index == 7
            assert sub.stats["restarts"] == 1 and sub.stats["gaps"] == 0
        finally:
            second.close()
        assert sub.receive(0.5) is None and sub.ended
    finally:
        sub.close()


_CRASHING_PUBLISHER = """
import sys, time
from fractions import Fraction
import numpy as np
from streammat.transport.publisher import Publisher
p = Publisher(sys.argv[1], heartbeat=0.05).open()
print("ready", flush=True)
for i in range(2000):  # bounded: ~20 s at most, killed long before
    p.send_frame([np.zeros((12, 16, 4), np.uint8)], layout="rgba", pts=i, time_base=Fraction(1, 30), index=i)
    time.sleep(0.01)
"""


def test_subscriber_survives_a_killed_publisher_process() -> None:
    probe = Publisher("tcp://127.0.0.1:*", heartbeat=None).open()
    url = probe.endpoint
    probe.close(eos=False)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_PUBLISHER, url], cwd=root, stdout=subprocess.PIPE, text=True
    )
    sub = Subscription(url, timeout=10, until_eos=False).open()
    try:
        assert proc.stdout.readline().strip() == "ready"
        first = sub.receive(10)
        assert first is not None
        proc.kill()  # SIGKILL: no end-of-stream message, no clean close
        proc.wait(5)
        with Publisher(url, heartbeat=0.05) as again:
            deadline = time.monotonic() + 10
            frame = None
            while time.monotonic() < deadline:
                send(again, 0)
                frame = sub.receive(0.05)
                if frame is not None and frame.stream == again.stream_id:
                    break
            assert frame is not None and frame.stream == again.stream_id
            assert sub.stats["restarts"] == 1
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


def test_latest_only_keeps_the_newest_frame(pub: Publisher) -> None:
    with Subscription(pub.endpoint, latest_only=True, timeout=5) as sub:
        wait_connected(sub)
        for i in range(10):
            send(pub, i)
        time.sleep(0.3)  # all ten are queued at the subscriber
        f = sub.receive(1)
        assert f is not None and f.seq == 9
        assert sub.stats["skipped"] == 9 and sub.stats["gaps"] == 0


def test_timeout_raises_but_heartbeats_keep_a_quiet_stream_alive(pub: Publisher) -> None:
    with Subscription("tcp://127.0.0.1:9", timeout=0.3) as dead:  # nobody there
        t = time.monotonic()
        with pytest.raises(TransportError, match="no message"):
            next(iter(dead))
        assert time.monotonic() - t < 3
    with Subscription(pub.endpoint, timeout=0.3) as quiet:
        wait_connected(quiet)
        timer = threading.Timer(0.8, lambda: (send(pub, 0), pub.close()))  # quiet for 0.8 s > timeout
        timer.start()
        try:
            frames = drain(quiet)
        finally:
            timer.join()
        assert [f.index for f in frames] == [0] and quiet.stats["idle"] >= 3


def test_malformed_messages_are_counted_and_skipped() -> None:
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    port = raw.bind_to_random_port("tcp://127.0.0.1")
    good = {"v": 1, "kind": "idle", "stream": "x", "next_seq": 0, "time": 1.0}
    frame = {
        "v": 1,
        "kind": "frame",
        "stream": "x",
        "seq": 0,
        "index": 0,
        "pts": 0,
        "time_base": "1/25",
        "capture_time": None,
        "width": 2,
        "height": 2,
        "layout": "a",
        "encoding": "raw",
    }
    bad = [
        [b"only one part"],
        [b"", b"{not json"],
        [b"", json.dumps({**good, "v": 99}).encode()],
        [b"", json.dumps({**frame, "width": -2}).encode(), bytes(4)],
        [b"", json.dumps({**frame, "width": 16000, "height": 16000}).encode(), bytes(4)],
        [b"", json.dumps(frame).encode(), bytes(5)],  # payload disagrees with the header
        [b"", json.dumps(frame).encode()],  # a part missing
    ]
    with Subscription(f"tcp://127.0.0.1:{port}", timeout=5) as sub:
        deadline = time.monotonic() + 5
        while sub.stats["idle"] == 0 and time.monotonic() < deadline:
            raw.send_multipart([b"", json.dumps(good).encode()])
            sub.receive(0.05)
        for parts in bad:
            raw.send_multipart(parts)
        raw.send_multipart([b"", json.dumps({**frame, "seq": 1}).encode(), bytes([1, 2, 3, 4])])
        f = sub.receive(5)
        assert f is not None and f.alpha.tolist() == [[1, 2], [3, 4]] and f.image is None
        assert sub.stats["malformed"] == len(bad)
    raw.close()


def test_oversized_message_is_refused_by_maxmsgsize() -> None:
    with Publisher("tcp://127.0.0.1:*", heartbeat=0.05) as p:
        with Subscription(p.endpoint, timeout=5, max_pixels=64 * 64, heartbeat=0.2) as sub:
            wait_connected(sub)
            big = np.zeros((512, 512, 4), np.uint8)
            p.send_frame([big], layout="rgba", pts=0, time_base=TB, index=0)  # 1 MB > 16 KB limit
            deadline = time.monotonic() + 10
            frame = None
            while frame is None and time.monotonic() < deadline:  # after the forced reconnect
                send(p, 1)
                frame = sub.receive(0.1)
            assert frame is not None and frame.index == 1 and sub.stats["reconnects"] >= 1


# -- the sink --------------------------------------------------------------------------
def matted(n: int, start: int = 0) -> MattedBatch:
    imgs = torch.stack([torch.from_numpy(image(start + i, c=3)) for i in range(n)])
    alpha = torch.stack([torch.from_numpy(image(100 + start + i, c=1)[..., 0]) for i in range(n)])
    pts = tuple((start + i) * 1001 for i in range(n))
    idx = tuple(start + i for i in range(n))
    return MattedBatch(Batch(imgs, pts, TB, idx, (123.0,) * n), alpha)


@pytest.mark.parametrize("layout", ["rgba", "rgb+a", "a"])
@pytest.mark.parametrize("compression", [None, "zstd"])
def test_publisher_sink_sends_every_frame(layout: str, compression: str | None) -> None:
    sink = PublisherSink("tcp://127.0.0.1:*", layout=layout, compression=compression, heartbeat=0.05)
    sink.open(StreamInfo(W, H, TB))
    with Subscription(sink.endpoint, timeout=5) as sub:
        wait_connected(sub)
        mb = matted(5)
        sink.write(mb)
        sink.close(complete=False)
        sink.close()
        frames = drain(sub)
    assert [f.pts for f in frames] == [i * 1001 for i in range(5)]
    assert sub.eos_complete is False
    rgba = mb.rgba().numpy()
    for i, f in enumerate(frames):
        assert f.capture_time == 123.0 and f.layout == layout
        np.testing.assert_array_equal(f.alpha, rgba[i, ..., 3])
        if layout != "a":
            np.testing.assert_array_equal(f.image, rgba[i, ..., :3])
            np.testing.assert_array_equal(f.as_tensor().numpy(), rgba[i])
    assert "5 frames" in sink.description


# -- the source --------------------------------------------------------------------------
class ListSink:
    def __init__(self) -> None:
        self.frames: list[tuple[int, int, np.ndarray]] = []
        self.closed: bool | None = None

    def open(self, info: StreamInfo) -> None:
        self.info = info

    def write(self, batch: MattedBatch) -> None:
        rgba = batch.rgba()
        for i in range(len(batch)):
            self.frames.append((batch.batch.pts[i], batch.batch.indices[i], rgba[i].numpy().copy()))

    def close(self, *, complete: bool = True) -> None:
        self.closed = complete

    @property
    def description(self) -> str:
        return "list"


def _wait_source(source: ZmqSource, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while source.stats["idle"] == 0:
        assert time.monotonic() < deadline, "source never connected"
        time.sleep(0.02)


def test_zmq_source_feeds_a_pipeline_and_keeps_pts(pub: Publisher) -> None:
    source = open_source(f"zmq+{pub.endpoint}", timeout=5)
    assert isinstance(source, ZmqSource) and source.backpressure == "block"
    sink = ListSink()
    pipe = Pipeline(
        source,
        lambda b: MattedBatch(b, torch.full(b.images.shape[:3], 255, dtype=torch.uint8)),
        [sink],
        batch_size=4,
    )
    result: list = []
    runner = threading.Thread(target=lambda: result.append(pipe.run()))
    runner.start()
    vfr = [0, 1001, 3003, 4004, 9009, 10010, 12012]  # variable frame rate
    try:
        _wait_source(source)
        for i, p in enumerate(vfr):
            send(pub, i, layout="rgb", pts=p)
            time.sleep(0.002)
        pub.close()
    finally:
        runner.join(10)
    assert not runner.is_alive() and result
    assert result[0].complete and result[0].frames_out == len(vfr)
    assert sink.info.width == W and sink.info.time_base == TB
    assert [p for p, _, _ in sink.frames] == vfr
    for _, i, rgba in sink.frames:
        np.testing.assert_array_equal(rgba[..., :3], image(i, c=3))
        assert (rgba[..., 3] == 255).all()
    assert sink.closed is True


def test_zmq_source_to_publisher_sink_end_to_end(pub: Publisher) -> None:
    """upstream rgb → ZmqSource → Pipeline → PublisherSink → subscriber: pts survive."""
    source = ZmqSource(pub.endpoint, timeout=5)
    out = PublisherSink("tcp://127.0.0.1:*", heartbeat=0.05)
    out.open(StreamInfo(W, H, TB))  # bind now so the subscriber can connect first
    sub = Subscription(out.endpoint, timeout=5).open()
    pipe = Pipeline(source, lambda b: MattedBatch(b, b.images[..., 0].clone()), [out], batch_size=2)
    runner = threading.Thread(target=pipe.run)
    try:
        wait_connected(sub)
        runner.start()
        _wait_source(source)
        for i in range(5):
            send(pub, i, layout="rgb", pts=i * 7)
            time.sleep(0.002)
        pub.close()
        frames = drain(sub)
    finally:
        runner.join(10)
        sub.close()
    assert [f.pts for f in frames] == [0, 7, 14, 21, 28]
    for f in frames:
        np.testing.assert_array_equal(f.alpha, image(f.index, c=3)[..., 0])


def test_zmq_source_open_times_out_and_close_stops_it(pub: Publisher) -> None:
    src = ZmqSource(pub.endpoint, timeout=0.3)
    with pytest.raises(TransportError):
        src.open()
    src.close()
    # close() from another thread interrupts a waiting open() (no timeout)
    waiting = ZmqSource(pub.endpoint)
    threading.Timer(0.2, waiting.close).start()
    t = time.monotonic()
    with pytest.raises(InputError, match="closed"):
        waiting.open()
    assert time.monotonic() - t < 3


def test_zmq_source_close_from_another_thread_stops_iteration(pub: Publisher) -> None:
    src = ZmqSource(pub.endpoint, backpressure="latest")
    threading.Thread(target=lambda: (_wait_source(src), send(pub, 0, layout="rgb"))).start()
    info = src.open()
    assert (info.width, info.height) == (W, H)
    it = iter(src)
    assert next(it).index == 0
    threading.Timer(0.2, src.close).start()
    t = time.monotonic()
    assert list(it) == []  # ends instead of waiting for frames that never come
    assert time.monotonic() - t < 3


def test_zmq_source_keeps_pts_increasing_across_an_upstream_restart() -> None:
    first = Publisher("tcp://127.0.0.1:*", heartbeat=0.05).open()
    url = first.endpoint
    src = ZmqSource(url, timeout=10)
    threading.Thread(target=lambda: (_wait_source(src), send(first, 0, layout="rgb", pts=0))).start()
    src.open()
    it = iter(src)
    got = [next(it).pts]
    for i in (1, 2):
        send(first, i, layout="rgb", pts=10 * i)
        got.append(next(it).pts)
    first.close(eos=False)  # crash
    watchdog = threading.Timer(15, src.close)  # a lost frame fails the test instead of hanging it
    watchdog.start()
    with Publisher(url, heartbeat=0.05) as second:

        def resend() -> None:
            deadline = time.monotonic() + 10
            while src.stats["restarts"] == 0 and time.monotonic() < deadline:  # the reader saw an idle
                time.sleep(0.02)
            for i in range(3):
                send(second, i, layout="rgb", pts=10 * i)
                time.sleep(0.01)

        sender = threading.Thread(target=resend)
        sender.start()
        got.extend(next(it).pts for _ in range(3))
        sender.join(15)
    watchdog.cancel()
    src.close()
    assert got == [0, 10, 20, 30, 40, 50]


def test_a_slow_reader_keeps_its_queued_frames(pub: Publisher) -> None:
    """The dead-peer watchdog must not mistake a reader that paused for a dead publisher."""
    with Subscription(pub.endpoint, timeout=5, heartbeat=0.1) as sub:
        wait_connected(sub)
        for i in range(5):
            send(pub, i)
        time.sleep(0.5)  # > 3 heartbeat intervals without reading
        got = [sub.receive(1) for _ in range(5)]
        assert [f.seq for f in got if f is not None] == [0, 1, 2, 3, 4]
        assert sub.stats["reconnects"] == 0

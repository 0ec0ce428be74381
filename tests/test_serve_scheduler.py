"""The shared model's scheduler: several streams' frames in one onnxruntime call, each
stream getting back exactly its own rows, in order; a silent stream never holds the others
longer than max_wait."""

from __future__ import annotations

import os
import sys
import threading
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from streammat.frames import Batch
from streammat.matting import create_matter
from streammat.matting.sessions import create_session
from streammat.service.scheduler import ModelScheduler, SharedModel, StreamMatter

FRAMES = 6


def _batch(stream: int, k: int) -> Batch:
    g = torch.Generator().manual_seed(1000 * stream + k)
    images = torch.randint(0, 256, (1, 48, 64, 3), dtype=torch.uint8, generator=g)
    return Batch(images=images, pts=(k,), time_base=Fraction(1, 30), indices=(k,))


def _feed_in_parallel(scheduler: ModelScheduler, inputs: dict[int, list[Any]]) -> dict[int, list[Any]]:
    """Each stream's inputs submitted in order from a thread of its own; the answers per
    stream, in the order they came back. Closes the scheduler."""
    got: dict[int, list[Any]] = {s: [] for s in inputs}

    def feed(stream: int) -> None:
        for x in inputs[stream]:
            got[stream].append(scheduler.submit(stream, x))

    threads = [threading.Thread(target=feed, args=(s,)) for s in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    scheduler.close()
    assert not any(t.is_alive() for t in threads)
    return got


def test_two_streams_share_each_model_call_and_get_their_own_rows_in_order(tiny_home):
    matter = create_matter(create_session("u2netp", device="cpu", threads=1), device="cpu")
    calls: list[int] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return matter.infer(x)

    scheduler = ModelScheduler(run, max_batch=8, max_wait=5.0)  # both streams always wait for each other
    streams = [scheduler.attach(), scheduler.attach()]
    inputs = {s: [matter.prepare(_batch(s, k)) for k in range(FRAMES)] for s in streams}
    got = _feed_in_parallel(scheduler, inputs)
    assert calls == [2] * FRAMES  # every call held one frame of each stream
    assert scheduler.stats.streams_per_call == {2: FRAMES}
    for s in streams:  # each stream's k-th answer is its own k-th frame's, computed alone
        assert len(got[s]) == FRAMES
        for k in range(FRAMES):
            torch.testing.assert_close(got[s][k], matter.infer(inputs[s][k]), atol=1e-5, rtol=1e-4)


def test_a_silent_stream_does_not_hold_a_running_one(tiny_home):
    matter = create_matter(create_session("u2netp", device="cpu", threads=1), device="cpu")
    scheduler = ModelScheduler(matter.infer, max_batch=8, max_wait=0.01)
    running = scheduler.attach()
    scheduler.attach()  # a stalled camera: attached, never submits
    try:
        outs = [scheduler.submit(running, matter.prepare(_batch(1, k))) for k in range(3)]
    finally:
        scheduler.close()
    assert [o.shape[0] for o in outs] == [1, 1, 1]
    assert scheduler.stats.fill == {1: 3}


def test_a_model_error_reaches_every_stream_of_the_call():
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    scheduler = ModelScheduler(broken, max_batch=4, max_wait=0.01)
    stream = scheduler.attach()
    try:
        try:
            scheduler.submit(stream, torch.zeros(1, 3, 8, 8))
        except RuntimeError as exc:
            assert "out of memory" in str(exc)
        else:
            raise AssertionError("the model error was swallowed")
    finally:
        scheduler.close()


def test_two_workers_run_two_calls_at_once_and_each_stream_keeps_its_order(tiny_home):
    """A call of one stream runs while another stream's call does: the model is not held to
    one thread (one core) however many streams share it."""
    matter = create_matter(create_session("u2netp", device="cpu", threads=1), device="cpu")
    both_in_flight = threading.Barrier(2, timeout=30)

    def run(x: torch.Tensor) -> torch.Tensor:
        both_in_flight.wait()  # passes only when a second call is running too
        return matter.infer(x)

    scheduler = ModelScheduler(run, max_batch=1, max_wait=0.0, workers=2)  # one frame per call
    streams = [scheduler.attach(), scheduler.attach()]
    inputs = {s: [matter.prepare(_batch(s, k)) for k in range(FRAMES)] for s in streams}
    got = _feed_in_parallel(scheduler, inputs)
    assert not both_in_flight.broken
    assert scheduler.stats.calls == 2 * FRAMES and scheduler.stats.fill == {1: 2 * FRAMES}
    for s in streams:
        for k in range(FRAMES):
            torch.testing.assert_close(got[s][k], matter.infer(inputs[s][k]), atol=1e-5, rtol=1e-4)


def _rows(x: np.ndarray) -> np.ndarray:
    """A stand-in model: each row's answer is the row plus one, so an answer names its input."""
    return x + 1


def test_a_streams_second_request_joins_while_its_first_waits_and_answers_keep_order():
    """A stream need not wait for one answer before asking again: both requests wait,
    one call takes both (in order), and each future holds its own rows."""
    gate = threading.Event()
    calls: list[int] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape[0])
        assert gate.wait(30)
        return _rows(x)

    scheduler = ModelScheduler(run, max_batch=8, max_wait=5.0, workers=1)
    a, b = scheduler.attach(), scheduler.attach()
    try:
        first = scheduler.request(a, np.full((1, 2), 10.0))  # b has nothing waiting: held up to max_wait
        second = scheduler.request(a, np.full((1, 2), 20.0))
        other = scheduler.request(b, np.full((1, 2), 30.0))  # every stream waits now: one call of 3
        gate.set()
        answers = [f.result(timeout=30)[0, 0] for f in (first, second, other)]
    finally:
        scheduler.close()
    assert calls == [3]
    assert answers == [11.0, 21.0, 31.0]
    assert scheduler.stats.streams_per_call == {3: 1}


def test_two_calls_of_one_stream_may_end_out_of_order_yet_each_future_gets_its_rows():
    """With two call threads, a stream's later request can be answered first; the asker
    takes the futures in its own order, so its frames keep their order."""
    first_started = threading.Event()
    release_first = threading.Event()

    def run(x: np.ndarray) -> np.ndarray:
        if x[0, 0] == 1.0:  # the first request's call: held until the second one has ended
            first_started.set()
            assert release_first.wait(30)
        return _rows(x)

    scheduler = ModelScheduler(run, max_batch=1, max_wait=0.0, workers=2)
    stream = scheduler.attach()
    try:
        first = scheduler.request(stream, np.full((1, 2), 1.0))
        assert first_started.wait(30)
        second = scheduler.request(stream, np.full((1, 2), 2.0))
        assert second.result(timeout=30)[0, 0] == 3.0  # answered while the first still runs
        assert not first.done()
        release_first.set()
        assert first.result(timeout=30)[0, 0] == 2.0
    finally:
        release_first.set()
        scheduler.close()


def test_a_stream_in_a_call_does_not_hold_the_next_call_of_another():
    """While one stream's request runs, another stream's request starts at once on the
    second call thread, without waiting max_wait for the busy stream."""
    running = threading.Event()
    release = threading.Event()

    def run(x: np.ndarray) -> np.ndarray:
        if x[0, 0] == 1.0:
            running.set()
            assert release.wait(30)
        return _rows(x)

    scheduler = ModelScheduler(run, max_batch=8, max_wait=60.0, workers=2)  # a wait would outlast the test
    busy, other = scheduler.attach(), scheduler.attach()
    try:
        slow = scheduler.request(busy, np.full((1, 2), 1.0))
        scheduler.request(other, np.full((1, 2), 5.0))  # both streams waiting: the first call goes
        assert running.wait(30)
        fast = scheduler.request(other, np.full((1, 2), 7.0))  # busy is in a call: not waited for
        assert fast.result(timeout=30)[0, 0] == 8.0
        assert not slow.done()
    finally:
        release.set()
        scheduler.close()
    assert slow.result(timeout=30)[0, 0] == 2.0


def test_a_served_stream_sends_up_to_its_bound_of_requests_and_finishes_them_in_order(tiny_home):
    """``infer`` hands back a future without waiting for the model; a stream finds no room
    for one more request than its bound until an answer came; every frame's matte is its
    own."""
    session = create_session("u2netp", device="cpu", threads=1)
    matter = create_matter(session, device="cpu")
    gate = threading.Event()

    def run(x: Any) -> Any:
        assert gate.wait(30)
        return matter.infer(x)

    shared = SharedModel(("u2netp", "cpu"), session, matter, ModelScheduler(run, max_wait=0.0), "CPUExecutionProvider")
    two, one = StreamMatter(shared, in_flight=2), StreamMatter(shared)
    batches = [_batch(1, k) for k in range(3)]
    try:
        assert two.reserve(1.0)
        pending = [two.infer(two.prepare(b)) for b in batches[:2]]  # neither waits for the model
        assert not any(f.done() for f in pending)
        assert not two.reserve(0.05)  # two requests out: no room for a third
        alone = one.infer(one.prepare(batches[2]))
        assert not one.reserve(0.05)  # the default bound is one request
        gate.set()
        assert two.reserve(30.0) and one.reserve(30.0)  # the answers made room
        got = [two.finish(b, f) for b, f in zip(batches[:2], pending, strict=True)]
        got.append(one.finish(batches[2], alone))
    finally:
        gate.set()
        for stream in (two, one):
            stream.detach()
        shared.close()
    for b, matted in zip(batches, got, strict=True):
        torch.testing.assert_close(matted.alpha, matter(b).alpha)


def _nice(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])  # field 19, after the name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_a_cpu_model_runs_one_request_a_call_at_a_lower_priority_unless_told(tiny_home):
    """onnxruntime on the CPU: calls take one stream's request each, on as many threads as
    fill the cores, and those threads run `nice` lower than the streams' own; an explicit
    `max_batch` (a config reload too) gathers the streams' frames again."""
    from streammat.matting.threads import plan_threads
    from streammat.service.config import ServePipeline
    from streammat.service.pool import ModelLimits, ModelPool

    settings = ServePipeline(source="0", model="u2netp", device="cpu", threads=1)
    pool = ModelPool(ModelLimits(nice=7))
    try:
        shared = pool.acquire(settings)
        scheduler = shared.scheduler
        assert shared.cpu_calls and scheduler.max_batch == 1
        plan = plan_threads()
        *niced, relief = scheduler._threads
        assert len(niced) == plan.cores // plan.onnx_intra_op  # their threads fill the cores
        base = os.getpriority(os.PRIO_PROCESS, 0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_nice(t.native_id) != min(19, base + 7) for t in niced):
            time.sleep(0.01)
        assert [_nice(t.native_id) for t in niced] == [min(19, base + 7)] * len(niced)
        assert _nice(relief.native_id) == base
        assert _nice(threading.get_native_id()) == base  # the caller's own thread is untouched
        a, b = StreamMatter(shared), StreamMatter(shared)
        x = shared.matter.prepare(_batch(1, 0))
        fa, fb = scheduler.request(a._stream, x), scheduler.request(b._stream, x)
        fa.result(timeout=30), fb.result(timeout=30)
        assert scheduler.stats.streams_per_call == {1: scheduler.stats.calls}  # never two streams in one call
        pool.configure(ModelLimits(max_batch=8))
        assert scheduler.max_batch == 8
    finally:
        pool.close()
    assert ModelLimits(max_batch=None).batch_for(False) == 8  # a GPU runner batches by default


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities are Linux's")
def test_a_request_the_niced_threads_leave_waiting_runs_at_normal_priority() -> None:
    """Beside CPU-bound programs the niced call threads get a tenth of their share: a
    request they leave waiting `relief_after` goes to the one thread at the service's own
    priority; requests they take in time never do."""
    base = os.getpriority(os.PRIO_PROCESS, 0)
    gate, running = threading.Event(), threading.Event()
    seen: list[tuple[float, int]] = []

    def run(x: np.ndarray) -> np.ndarray:
        seen.append((float(x[0, 0]), _nice(threading.get_native_id())))
        if x[0, 0] == 1.0:
            running.set()
            assert gate.wait(30)
        return x

    scheduler = ModelScheduler(run, max_batch=1, max_wait=0.0, workers=1, nice=5, relief_after=0.5)
    a, b = scheduler.attach(), scheduler.attach()
    try:
        stuck = scheduler.request(a, np.full((1, 2), 1.0))  # holds the only niced thread
        assert running.wait(30)
        t0 = time.monotonic()
        assert scheduler.request(b, np.full((1, 2), 2.0)).result(timeout=30)[0, 0] == 2.0
        assert time.monotonic() - t0 >= 0.5  # it waited its turn first
        gate.set()
        stuck.result(timeout=30)
        for k in range(3, 8):  # the niced thread is free: it takes each at once
            scheduler.request(a, np.full((1, 2), float(k))).result(timeout=30)
    finally:
        gate.set()
        scheduler.close()
    niced = min(19, base + 5)
    assert seen == [(1.0, niced), (2.0, base)] + [(float(k), niced) for k in range(3, 8)]

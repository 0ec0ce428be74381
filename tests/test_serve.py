"""A real ``streammat serve`` process on loopback with three pipelines sharing one model:

- ``a``: a file camera (looped, real time) → published;
- ``b``: a ZeroMQ upstream (a publisher process of the test) → published and recorded;
- ``c``: a file camera → recorded.

The tests run in order against the one process: metrics over HTTP, shared model calls,
an upstream lost and back (only ``b`` restarts; ``a``'s subscriber sees no gap), SIGHUP
with one changed pipeline, and SIGTERM leaving every recording playable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from streammat.readback import read_rgba
from streammat.testing import camera_clip
from streammat.transport.subscriber import Subscription

pytestmark = pytest.mark.slow

READY_TIMEOUT = 180.0  # the service loads torch, onnxruntime and the model (slow on a busy CI machine)
WAIT = 60.0

UPSTREAM = """
import signal, sys, time
from fractions import Fraction
import numpy as np
from streammat.transport.publisher import Publisher

stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
pub = Publisher(sys.argv[1]).open()
k = 0
while not stop:
    image = np.full((48, 64, 3), k % 256, np.uint8)
    pub.send_frame([image], layout="rgb", pts=k, time_base=Fraction(1, 30), index=k, capture_time=time.time())
    k += 1
    time.sleep(1 / 30)
pub.close(eos=True)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.http = _port()
        self.ports = {name: _port() for name in ("a", "b", "up")}
        self.clip = camera_clip(tmp / "clip.mp4", frames=30)
        self.config = tmp / "serve.yaml"
        self.write_config(smoothing_c=0.5)
        self.upstream: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None

    def write_config(self, *, smoothing_c: float) -> None:
        p = self.ports
        self.config.write_text(
            f"""
http: 127.0.0.1:{self.http}
max_batch: 8
max_wait_ms: 30
backoff_min: 0.2
backoff_max: 1.0
pipelines:
  a:
    source: {self.clip}
    loop: true
    model: u2netp
    publish: tcp://127.0.0.1:{p["a"]}
  b:
    source: zmq+tcp://127.0.0.1:{p["up"]}
    source_timeout: 3
    model: u2netp
    publish: tcp://127.0.0.1:{p["b"]}
    output: {self.tmp / "rec_b.mkv"}
  c:
    source: {self.clip}
    loop: true
    model: u2netp
    smoothing: {smoothing_c}
    output: {self.tmp / "rec_c.mkv"}
"""
        )

    def start_upstream(self) -> None:
        url = f"tcp://127.0.0.1:{self.ports['up']}"
        self.upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, url], env=self.env)

    def stop_upstream(self) -> None:
        assert self.upstream is not None
        self.upstream.send_signal(signal.SIGTERM)
        self.upstream.wait(timeout=20)
        self.upstream = None

    def start(self) -> None:
        self.log = open(self.tmp / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streammat", "serve", str(self.config)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metrics(self) -> dict[str, float]:
        _, text = self.get("/metrics")
        values = {}
        for line in text.splitlines():
            if line.startswith("streammat_"):
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
        return values

    def metric(self, name: str, **labels: str) -> float:
        tags = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for key, value in self.metrics().items():
            if key.split("{")[0] == name and _labels(key) == tags:
                return value
        return 0.0

    def until(self, check, what: str, timeout: float = WAIT):  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"serve exited: {self.tail()}"
            try:
                result = check()
            except (OSError, urllib.error.URLError):
                result = None
            if result:
                return result
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; log: {self.tail()}")

    def tail(self) -> str:
        return (self.tmp / "serve.log").read_text()[-3000:]

    def stop(self) -> None:
        for p in (self.proc, self.upstream):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        self.log.close()


def _labels(key: str) -> str:
    m = re.search(r"\{(.*)\}", key)
    if not m:
        return ""
    pairs = sorted(m.group(1).split(","))
    return ",".join(pairs)


class Watcher:
    """A subscriber thread: every frame's stream id and index."""

    def __init__(self, url: str) -> None:
        self.frames: list[tuple[str, int, float]] = []
        self.sub = Subscription(url, until_eos=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            f = self.sub.receive(0.2)
            if f is not None:
                self.frames.append((f.stream, f.index, time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sub.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_home_module: Path):
    tmp = tmp_path_factory.mktemp("serve")
    env = dict(os.environ)
    env["REMBG_HOME"] = str(tiny_home_module)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    s = Server(tmp, env)
    try:
        s.start_upstream()
        s.start()
        s.until(lambda: s.get("/readyz")[0] == 200, "every pipeline running", READY_TIMEOUT)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def tiny_home_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from streammat.testing import install_model, tiny_u2net_model

    home = tmp_path_factory.mktemp("rembg-home")
    install_model(home, "u2netp", tiny_u2net_model())
    return home


def test_metrics_over_http_show_frames_moving_per_pipeline(server: Server) -> None:
    assert server.get("/healthz") == (200, '{"status":"ok"}')
    status, body = server.get("/readyz")
    assert status == 200 and json.loads(body)["pipelines"] == {"a": "running", "b": "running", "c": "running"}
    first = {n: server.metric("streammat_frames_out_total", pipeline=n) for n in "abc"}
    server.until(
        lambda: all(server.metric("streammat_frames_out_total", pipeline=n) > first[n] + 10 for n in "abc"),
        "frames through every pipeline",
    )
    for n in "abc":
        assert server.metric("streammat_frames_in_total", pipeline=n) > 0
        assert server.metric("streammat_latency_seconds_count", pipeline=n) > 0
        assert server.metric("streammat_pipeline_up", pipeline=n) == 1.0
    assert server.metric("streammat_model_provider", model="u2netp@auto", provider="CPUExecutionProvider") == 1.0


def test_streams_share_model_calls_and_keep_their_order(server: Server) -> None:
    watcher = Watcher(f"tcp://127.0.0.1:{server.ports['a']}")
    try:
        server.until(lambda: len(watcher.frames) >= 20, "frames of pipeline a")
    finally:
        watcher.close()
    assert server.metric("streammat_model_streams", model="u2netp@auto") == 3.0
    calls = server.metric("streammat_model_calls_total", model="u2netp@auto")
    frames = server.metric("streammat_model_frames_total", model="u2netp@auto")
    assert frames > calls > 0  # some calls held frames of several streams
    assert (
        server.metric("streammat_model_stream_calls_total", model="u2netp@auto", streams="2")
        + server.metric("streammat_model_stream_calls_total", model="u2netp@auto", streams="3")
        > 0
    )
    indices = [i for _, i, _ in watcher.frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)  # in order, none twice


def test_a_lost_upstream_restarts_only_its_pipeline(server: Server) -> None:
    watcher = Watcher(f"tcp://127.0.0.1:{server.ports['a']}")
    try:
        server.until(lambda: len(watcher.frames) >= 5, "frames of pipeline a")
        server.stop_upstream()
        server.until(lambda: server.metric("streammat_pipeline_restarts_total", pipeline="b") >= 1, "b restarting")
        assert server.get("/readyz")[0] == 503  # b waits for its upstream
        seen = len(watcher.frames)
        server.until(lambda: len(watcher.frames) >= seen + 10, "pipeline a carrying on")
        server.start_upstream()
        server.until(lambda: server.get("/readyz")[0] == 200, "b running again")
    finally:
        watcher.close()
    assert server.metric("streammat_pipeline_restarts_total", pipeline="a") == 0
    assert server.metric("streammat_pipeline_errors_total", pipeline="b", kind="source_ended") >= 1
    streams = {s for s, _, _ in watcher.frames}
    assert len(streams) == 1  # a's publisher never restarted
    assert watcher.sub.stats["gaps"] == 0  # and its subscriber missed no frame


def test_sighup_restarts_only_the_changed_pipeline(server: Server) -> None:
    before = {n: server.metric("streammat_pipeline_restarts_total", pipeline=n) for n in "abc"}
    assert server.proc is not None
    good = server.config.read_text()
    server.config.write_text(good.replace("smoothing: 0.5", "smoothing: 5"))  # refused: the running config stays
    server.proc.send_signal(signal.SIGHUP)
    server.until(lambda: "reload refused" in server.tail(), "the refused reload logged")
    assert "pipelines.c.smoothing" in server.tail()
    server.write_config(smoothing_c=0.25)
    server.proc.send_signal(signal.SIGHUP)
    server.until(
        lambda: server.metric("streammat_pipeline_restarts_total", pipeline="c") == before["c"] + 1,
        "c restarted",
    )
    server.until(lambda: server.get("/readyz")[0] == 200, "every pipeline running after the reload")
    after = {n: server.metric("streammat_pipeline_restarts_total", pipeline=n) for n in "ab"}
    assert after == {n: before[n] for n in "ab"}


def test_sigterm_finalizes_every_recording(server: Server) -> None:
    assert server.proc is not None
    frames_c = server.metric("streammat_frames_out_total", pipeline="c")
    server.until(lambda: server.metric("streammat_frames_out_total", pipeline="c") > frames_c + 5, "c recording again")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0, server.tail()
    recordings = sorted(server.tmp.glob("rec_*.mkv"))
    names = {p.name for p in recordings}
    assert {"rec_b.mkv", "rec_c.mkv", "rec_c.1.mkv"} <= names, names  # c's segment before and after the reload
    assert not any(".partial" in n for n in names), names
    for path in recordings:
        frames = list(read_rgba(path))
        assert frames, path
        assert frames[0].image.shape == (48, 64, 4)

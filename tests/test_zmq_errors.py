"""Clear errors on the ZeroMQ side: wrong settings fail at construction with one line
naming them; refused keys, silent publishers and closed sinks say what happened."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import stat
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import zmq

from streammat.cli import main
from streammat.cli._publish import add_publish_arguments
from streammat.errors import ConfigError, OutputError, TransportError
from streammat.frames import Batch, MattedBatch, StreamInfo
from streammat.sinks.publisher import PublisherSink
from streammat.sources.zmq import ZmqSource
from streammat.transport import subscriber as subscriber_module
from streammat.transport.publisher import Publisher
from streammat.transport.security import ClientSecurity, ServerSecurity, generate_keys
from streammat.transport.subscriber import Subscription

RECEIVERS = {
    "Publisher": lambda url, **kw: Publisher(url, **kw),
    "Subscription": lambda url, **kw: Subscription(url, **kw),
    "ZmqSource": lambda url, **kw: ZmqSource(url, **kw),
    "PublisherSink": lambda url, **kw: PublisherSink(url, **kw),
}


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:99999",  # libzmq would listen on another port and report this one
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1",
        "tcp://:5555",
        "tcp://127.0.0.1:55a",
        "udp://127.0.0.1:5555",
        "127.0.0.1:5555",
        "ipc://",
        "ipc:///tmp/" + "x" * 200,
        "inproc://",
        5555,
    ],
)
def test_bad_endpoints_are_config_errors_naming_them(make, url) -> None:
    with pytest.raises(ConfigError, match="endpoint") as info:
        make(url)
    assert repr(url) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
def test_good_endpoints_are_accepted(make, tmp_path: Path) -> None:
    for url in ("tcp://127.0.0.1:5555", "tcp://*:*", "tcp://localhost:1", "ipc:///tmp/mat", "inproc://mat"):
        make(url)


@pytest.mark.parametrize("make", RECEIVERS.values(), ids=RECEIVERS.keys())
@pytest.mark.parametrize("topic, match", [("é" * 128, "at most 255"), (b"cam", "expected a string"), (None, "string")])
def test_bad_topics_are_config_errors(make, topic, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make("tcp://127.0.0.1:5555", topic=topic)
    make("tcp://127.0.0.1:5555", topic="é" * 127)  # 254 bytes: fine


@pytest.mark.parametrize(
    "make, options",
    [
        (Publisher, {"compression": "lz4"}),
        (Publisher, {"sndhwm": 0}),
        (Publisher, {"heartbeat": -1}),
        (Publisher, {"linger": -0.5}),
        (Publisher, {"reliable_backlog": 0}),
        (PublisherSink, {"layout": "bgr"}),
        (PublisherSink, {"compression": "gzip"}),
        (PublisherSink, {"wait_subscribers": -1}),
        (Subscription, {"timeout": 0}),
        (Subscription, {"rcvhwm": 0}),
        (Subscription, {"window": 0}),
        (Subscription, {"reliable": True, "latest_only": True}),
        (ZmqSource, {"backpressure": "drop"}),
        (ZmqSource, {"buffer_frames": 0}),
        (ZmqSource, {"reliable": True, "backpressure": "latest"}),
        (ZmqSource, {"heartbeat": "1s"}),
    ],
)
def test_bad_options_are_config_errors_at_construction(make, options: dict) -> None:
    with pytest.raises(ConfigError) as info:
        make("tcp://127.0.0.1:5555", **options)
    assert any(name in str(info.value) for name in options)


def test_malformed_timestamps_from_the_network_are_counted_not_raised() -> None:
    with Publisher("tcp://127.0.0.1:*", heartbeat=0.05) as pub, Subscription(pub.endpoint, timeout=5) as sub:
        deadline = time.monotonic() + 5
        while sub.stats["idle"] == 0:
            assert time.monotonic() < deadline and sub.receive(0.05) is None
        raw = pub._sock  # the same socket, bypassing the publisher's own checks
        assert raw is not None
        for tb, pts in (("1/9999999999", 0), ("1000000000/1", 10**10)):
            fields = {"v": 1, "kind": "frame", "stream": "s", "seq": 0, "index": 0, "pts": pts, "time_base": tb}
            fields.update(capture_time=None, width=1, height=1, layout="a", encoding="raw")
            header = json.dumps(fields)
            raw.send_multipart([b"", header.encode(), b"\x00"])
        while sub.stats["malformed"] < 2:
            assert time.monotonic() < deadline and sub.receive(0.05) is None


# -- the publisher sink's lifecycle ------------------------------------------------------------
def _batch() -> MattedBatch:
    images = torch.zeros((2, 6, 8, 3), dtype=torch.uint8)
    return MattedBatch(Batch(images, (0, 1), Fraction(1, 25), (0, 1)), torch.zeros((2, 6, 8), dtype=torch.uint8))


def test_publisher_sink_writes_one_stream() -> None:
    sink = PublisherSink("tcp://127.0.0.1:*", heartbeat=None)
    info = StreamInfo(8, 6, Fraction(1, 25))
    with pytest.raises(OutputError, match="not open"):
        sink.write(_batch())
    sink.open(info)
    sink.open(info)  # while open: nothing happens
    sink.write(_batch())
    sink.close()
    for again in (lambda: sink.write(_batch()), lambda: sink.open(info)):
        with pytest.raises(OutputError, match="the sink is closed; a sink writes one stream, create a new one"):
            again()
    sink.close()  # idempotent


# -- keys ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_keys_get_safe_modes_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        generate_keys(tmp_path / "keys")
    finally:
        os.umask(old)
    d = tmp_path / "keys"
    modes = {p.relative_to(d).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [d, *d.rglob("*")]}
    assert modes == {
        ".": 0o700,
        "authorized_clients": 0o700,
        "authorized_clients/client.key": 0o644,
        "server.key": 0o644,
        "client.key": 0o644,
        "server.key_secret": 0o600,
        "client.key_secret": 0o600,
    }


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_keys_generate_on_existing_keys_speaks_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "keys"
    assert main(["keys", "generate", str(d)]) == 0
    capsys.readouterr()
    assert main(["keys", "generate", str(d)]) == 1
    err = capsys.readouterr().err
    assert "use --force to replace them" in err and "overwrite=True" not in err
    with pytest.raises(TransportError, match="overwrite=True"):
        generate_keys(d)


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_a_source_with_a_refused_key_fails_at_open(tmp_path: Path) -> None:
    generate_keys(tmp_path / "a")
    generate_keys(tmp_path / "b")
    wrong = ClientSecurity(tmp_path / "b" / "client.key_secret", tmp_path / "a" / "server.key")
    with Publisher("tcp://127.0.0.1:*", security=ServerSecurity.from_dir(tmp_path / "a"), heartbeat=0.05) as pub:
        source = ZmqSource(pub.endpoint, security=wrong)  # no timeout: it must not wait for ever
        t = time.monotonic()
        with pytest.raises(TransportError, match="refused our CURVE key"):
            source.open()
        assert time.monotonic() - t < 10
        source.close()


def test_waiting_for_an_absent_publisher_says_so(monkeypatch, caplog) -> None:
    monkeypatch.setattr(subscriber_module, "_WAIT_NOTICE", 0.2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    with caplog.at_level(logging.WARNING), Subscription(url) as sub:
        assert sub.receive(0.6) is None
    assert [r.getMessage() for r in caplog.records] == [f"waiting for {url} (no publisher answered yet)"]


def test_publish_help_has_no_markup() -> None:
    parser = argparse.ArgumentParser()
    add_publish_arguments(parser)
    text = parser.format_help()
    assert "`" not in text and "--publish-reliable" in text

"""CURVE encryption and ZAP client authentication over real loopback sockets."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from streammat.cli import main
from streammat.errors import TransportError
from streammat.frames import StreamInfo
from streammat.sinks.publisher import PublisherSink
from streammat.transport import sockets
from streammat.transport.publisher import Publisher
from streammat.transport.security import ClientSecurity, ServerSecurity, apply_server, generate_keys
from streammat.transport.subscriber import Subscription

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    assert main(["keys", "generate", str(d)]) == 0
    return d


def test_keys_generate_layout_and_no_silent_overwrite(keys: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("server.key", "server.key_secret", "client.key", "client.key_secret"):
        assert (keys / name).is_file()
    assert (keys / "authorized_clients" / "client.key").read_bytes() == (keys / "client.key").read_bytes()
    assert (keys / "client.key_secret").stat().st_mode & 0o077 == 0
    before = (keys / "server.key").read_bytes()
    capsys.readouterr()
    assert main(["keys", "generate", str(keys)]) == 1  # refuses, one line, no traceback
    assert "already holds keys" in capsys.readouterr().err
    assert (keys / "server.key").read_bytes() == before
    assert main(["keys", "generate", str(keys), "--force"]) == 0
    assert (keys / "server.key").read_bytes() != before


def test_only_the_authorized_client_receives_and_the_others_are_told_why(keys: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    generate_keys(other)  # a second, unknown set: client and server keys nobody authorized
    sink = PublisherSink("tcp://127.0.0.1:*", security=ServerSecurity.from_dir(keys), heartbeat=0.05)
    sink.open(StreamInfo(8, 6, Fraction(1, 25)))
    url = sink.endpoint
    pub = sink._pub
    assert pub is not None
    refused = {  # what each wrong client is told, instead of waiting in silence
        "unknown key": (ClientSecurity(other / "client.key_secret", keys / "server.key"), "refused our CURVE key"),
        "null": (None, "handshake fails"),
        "wrong server key": (ClientSecurity(keys / "client.key_secret", other / "server.key"), "handshake fails"),
    }
    good = Subscription(url, security=ClientSecurity.from_dir(keys))
    bad = {name: Subscription(url, security=sec) for name, (sec, _) in refused.items()}
    errors: dict[str, str] = {}
    got = 0
    try:
        for c in (good, *bad.values()):
            c.open()
        plane = np.full((6, 8, 4), 7, np.uint8)
        deadline = time.monotonic() + 5
        sent = 0
        while time.monotonic() < deadline and (got < 5 or len(errors) < len(bad)):  # bounded by time
            pub.send_frame([plane], layout="rgba", pts=sent, time_base=Fraction(1, 25), index=sent)
            sent += 1
            f = good.receive(0.01)
            if f is not None:
                got += 1
                assert int(f.rgba()[0, 0, 0]) == 7
            for name, c in bad.items():
                if name not in errors:
                    try:
                        assert c.receive(0.01) is None
                    except TransportError as exc:
                        errors[name] = str(exc)
        assert got >= 5
        for name, (_, message) in refused.items():
            assert message in errors.get(name, "no error"), name
            assert url in errors[name] and bad[name].stats["idle"] == 0  # not even a heartbeat leaked
    finally:
        for c in (good, *bad.values()):
            c.close()
        sink.close()


def test_refuses_secure_mode_without_curve(keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_has = zmq.has
    monkeypatch.setattr(zmq, "has", lambda cap: False if cap == "curve" else real_has(cap))
    with pytest.raises(TransportError, match="CURVE"):
        Publisher("tcp://127.0.0.1:*", security=ServerSecurity.from_dir(keys)).open()
    with pytest.raises(TransportError, match="CURVE"):
        Subscription("tcp://127.0.0.1:9", security=ClientSecurity.from_dir(keys)).open()


def test_refuses_secure_mode_without_a_running_authenticator(keys: Path) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUB)
    try:
        with pytest.raises(TransportError, match="authenticator"):
            apply_server(sock, ServerSecurity.from_dir(keys), None)
    finally:
        sock.close(linger=0)
    with pytest.raises(TransportError, match="authenticator is not running"):
        sockets.pub_socket(ctx, "tcp://127.0.0.1:*", security=ServerSecurity.from_dir(keys), authenticator=None)


def test_bad_key_files_are_transport_errors(keys: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "authorized_clients").mkdir(parents=True)
    with pytest.raises(TransportError, match="no client public keys"):
        Publisher("tcp://127.0.0.1:*", security=ServerSecurity.from_dir(empty)).open()
    with pytest.raises(TransportError, match="cannot load"):
        Subscription("tcp://127.0.0.1:9", security=ClientSecurity.from_dir(empty)).open()
    # a public key where a secret key is needed
    with pytest.raises(TransportError):
        Subscription("tcp://127.0.0.1:9", security=ClientSecurity(keys / "client.key", keys / "server.key")).open()

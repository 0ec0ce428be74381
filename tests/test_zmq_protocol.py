"""The wire format: round trips, validation, fuzzing, and the documented example client."""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streammat.errors import TransportError
from streammat.transport.protocol import (
    LAYOUTS,
    ControlHeader,
    Credit,
    DecodedFrame,
    FrameHeader,
    MalformedMessage,
    decode_message,
    encode_control,
    encode_credit,
    encode_frame,
    parse_credit,
    parse_header,
    plane_shapes,
)
from streammat.transport.publisher import Publisher

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _header(**kw) -> FrameHeader:
    base = dict(
        stream="abc123",
        seq=5,
        index=7,
        pts=-3,
        time_base=Fraction(1, 30000),
        capture_time=1.5,
        width=6,
        height=4,
        layout="rgba",
        encoding="raw",
    )
    base.update(kw)
    return FrameHeader(**base)


def _planes(layout: str, w: int = 6, h: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, s, dtype=np.uint8) for s in plane_shapes(layout, w, h)]


def _wire(parts: list) -> list[bytes]:
    """What a receiver gets: plain bytes for every part."""
    return [p.tobytes() if isinstance(p, np.ndarray) else bytes(p) for p in parts]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("encoding", ["raw", "zstd", "zlib"])
def test_frame_round_trip(layout: str, encoding: str) -> None:
    h = _header(layout=layout, encoding=encoding)
    planes = _planes(layout)
    msg = decode_message(_wire(encode_frame(b"cam", h, planes)))
    assert isinstance(msg, DecodedFrame)
    assert msg.topic == b"cam" and msg.header == h
    for got, want in zip(msg.planes, planes, strict=True):
        np.testing.assert_array_equal(got, want)


def test_raw_planes_are_sent_as_arrays_for_zero_copy() -> None:
    parts = encode_frame(b"", _header(), _planes("rgba"))
    assert isinstance(parts[2], np.ndarray) and parts[2].flags.c_contiguous


def test_control_round_trip() -> None:
    for kind in ("idle", "eos"):
        c = ControlHeader(kind, "s1", 12, 3.25, complete=False if kind == "eos" else True)
        topic, got = decode_message(encode_control(b"t", c))
        assert topic == b"t" and got == c


def _raw_header(**kw) -> bytes:
    d = _header().to_json()
    d.update(kw)
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"v": True},
        {"kind": "frames"},
        {"seq": -1},
        {"index": -5},
        {"seq": True},
        {"width": 0},
        {"width": 100000},
        {"height": -4},
        {"width": 16384, "height": 16384},
        {"time_base": "1/0"},
        {"time_base": "-1/30"},
        {"time_base": 0.033},
        {"capture_time": -1.0},
        {"capture_time": "now"},
        {"layout": "bgra"},
        {"encoding": "jpeg"},
        {"stream": ""},
        {"stream": "../../x"},
        {"pts": 1.5},
        {"time_base": "1/9999999999"},  # terms above 2**31-1 overflow encoders
        {"time_base": "2147483648/2147483648"},  # even when the fraction reduces
        {"time_base": "1000000000/1", "pts": 10**10},  # 10^19 s
        {"pts": -(2**63)},
        {"kind": "idle", "next_seq": 0, "time": 1.0, "reliable": "http://x"},
        {"kind": "idle", "next_seq": 0, "time": 1.0, "reliable": 5},
        {"kind": "idle", "next_seq": 0, "time": 1.0, "heartbeat": 0},
        {"kind": "idle", "next_seq": 0, "time": 1.0, "heartbeat": 1e9},
        {"kind": "eos", "next_seq": 0, "time": 1.0, "heartbeat": "1s"},
    ],
)
def test_bad_header_fields_are_malformed(change: dict) -> None:
    with pytest.raises(MalformedMessage):
        parse_header(_raw_header(**change))


def test_payload_size_must_match_header() -> None:
    parts = _wire(encode_frame(b"", _header(), _planes("rgba")))
    with pytest.raises(MalformedMessage, match="payload"):
        decode_message(parts[:2] + [parts[2][:-1]])
    with pytest.raises(MalformedMessage, match="parts"):
        decode_message(parts + [b"extra"])
    with pytest.raises(MalformedMessage, match="parts"):
        decode_message(parts[:1])


def test_decompression_is_bounded_by_the_header() -> None:
    h = _header(encoding="zstd")
    bomb = zstandard.ZstdCompressor().compress(bytes(10_000_000))  # claims 10 MB for a 96-byte frame
    with pytest.raises(MalformedMessage):
        decode_message([b"", json.dumps(h.to_json()).encode(), bomb])
    # a zstd frame without a stated size still cannot expand beyond the header's size
    cctx = zstandard.ZstdCompressor(write_content_size=False)
    with pytest.raises(MalformedMessage):
        decode_message([b"", json.dumps(h.to_json()).encode(), cctx.compress(bytes(10_000_000))])
    hz = _header(encoding="zlib")
    with pytest.raises(MalformedMessage):
        decode_message([b"", json.dumps(hz.to_json()).encode(), zlib.compress(bytes(10_000_000))])
    with pytest.raises(MalformedMessage):
        decode_message([b"", json.dumps(hz.to_json()).encode(), b"not zlib at all"])


# -- fuzzing ---------------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
_FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=200))
def test_fuzz_header_bytes(data: bytes) -> None:
    try:
        parse_header(data)
    except MalformedMessage:
        pass


@_FUZZ
@given(_json)
def test_fuzz_header_json(value) -> None:
    try:
        parse_header(json.dumps(value).encode())
    except MalformedMessage:
        pass


_VALUES = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=12)
)


@_FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(_header().to_json())), _VALUES, max_size=4),
    st.lists(st.sampled_from(sorted(_header().to_json())), max_size=3),
    st.sampled_from(list(LAYOUTS)),
    st.sampled_from(["raw", "zstd", "zlib"]),
)
def test_fuzz_mutated_valid_headers(changes: dict, removed: list, layout: str, encoding: str) -> None:
    """A valid message whose header fields were replaced or deleted: decoded or malformed."""
    parts = _wire(encode_frame(b"", _header(layout=layout, encoding=encoding), _planes(layout)))
    d = json.loads(parts[1])
    d.update(changes)
    for k in removed:
        d.pop(k, None)
    try:
        header = json.dumps(d).encode()
    except ValueError:
        return
    try:
        msg = decode_message([parts[0], header, *parts[2:]])
    except MalformedMessage:
        return
    if isinstance(msg, DecodedFrame):  # accepted: then it must be self-consistent
        for p, s in zip(msg.planes, plane_shapes(msg.header.layout, msg.header.width, msg.header.height), strict=True):
            assert p.shape == s


@_FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
def test_fuzz_whole_messages(parts: list, with_header: bool) -> None:
    if with_header and len(parts) >= 2:
        parts[1] = _raw_header(width=2, height=2, layout="a")
    try:
        decode_message(parts)
    except MalformedMessage:
        pass


_TERM = 2**31 - 1


@_FUZZ
@given(
    st.integers(min_value=1, max_value=10**10),
    st.integers(min_value=1, max_value=10**10),
    st.integers(min_value=-(2**64), max_value=2**64),
)
def test_fuzz_extreme_timestamps_are_decoded_in_range_or_malformed(num: int, den: int, pts: int) -> None:
    """Whatever the numbers, a receiver gets a frame whose time is within the protocol's
    bounds (so its arithmetic and its encoders cannot overflow), or a malformed message."""
    parts = _wire(encode_frame(b"", _header(), _planes("rgba")))
    d = json.loads(parts[1])
    d.update(pts=pts, time_base=f"{num}/{den}")
    try:
        msg = decode_message([parts[0], json.dumps(d).encode(), *parts[2:]])
    except MalformedMessage:
        assert num > _TERM or den > _TERM or abs(Fraction(pts * num, den)) > 10**9 or abs(pts) >= 2**63
        return
    assert isinstance(msg, DecodedFrame)
    tb = msg.header.time_base
    assert tb.numerator <= _TERM and tb.denominator <= _TERM and abs(msg.header.pts * tb) <= 10**9


def test_a_publisher_refuses_timestamps_outside_the_protocol() -> None:
    with Publisher("tcp://127.0.0.1:*", heartbeat=None) as pub:
        for pts, tb in ((0, Fraction(1, 9_999_999_999)), (10**10, Fraction(10**9, 1))):
            with pytest.raises(TransportError, match="cannot send frame"):
                pub.send_frame(_planes("rgba"), layout="rgba", pts=pts, time_base=tb, index=0)


def test_credit_round_trip_and_validation() -> None:
    credit = Credit("cam", 16, 40, "abc123")
    assert parse_credit(encode_credit(credit)) == credit
    assert parse_credit(encode_credit(Credit("", 1, 0, None))).stream is None
    for bad in ({"window": 0}, {"window": 5000}, {"consumed": -1}, {"stream": "../x"}, {"kind": "frame"}, {"v": 2}):
        d = {**credit.to_json(), **bad}
        with pytest.raises(MalformedMessage):
            parse_credit([json.dumps(d).encode()])
    with pytest.raises(MalformedMessage):
        parse_credit([b"{", b"x"])


# -- the documented example client ------------------------------------------------------
def _doc_example() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- client-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/protocol.md lost its client example"
    return m.group(1)


def test_doc_example_reads_a_real_publisher() -> None:
    code = _doc_example()
    assert "streammat" not in code
    ns: dict = {"__name__": "doc_example"}
    exec(compile(code, str(DOC), "exec"), ns)  # noqa: S102 - the documented code, verbatim

    pub = Publisher("tcp://127.0.0.1:*", heartbeat=0.05).open()
    url = pub.endpoint
    stop = threading.Event()

    def produce() -> None:
        for i in range(200):  # bounded: 200 frames x 5 ms
            if stop.is_set():
                break
            (plane,) = _planes("rgba", 8, 6, seed=i)
            pub.send_frame([plane], layout="rgba", pts=i * 1001, time_base=Fraction(1, 30000), index=i)
            time.sleep(0.005)
        pub.close()

    got = []
    t = threading.Thread(target=produce)
    t.start()
    try:
        for header, planes in ns["receive"](url, timeout_ms=3000):  # ends at EOS
            got.append((header, planes))
    finally:
        stop.set()
        t.join(5)
    assert len(got) >= 10
    for header, (rgba,) in got:
        np.testing.assert_array_equal(rgba, _planes("rgba", 8, 6, seed=header["index"])[0])
        assert header["seconds"] == pytest.approx(header["pts"] / 30000)
    seqs = [h["seq"] for h, _ in got]
    assert seqs == sorted(seqs) and got[-1][0]["lost_so_far"] == 0

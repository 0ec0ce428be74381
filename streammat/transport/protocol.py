"""The streammat ZeroMQ wire format, version 1 (the contract is ``docs/protocol.md``).

Every message is multipart: ``[topic, header, *payload]``. The header is UTF-8 JSON with
``"v": 1`` and a ``"kind"``:

- ``"frame"``: one picture; the payload parts hold its planes (see ``LAYOUTS``), raw or
  each part compressed on its own (``ENCODINGS``).
- ``"idle"``: sent by a publisher that had nothing to send for a heartbeat interval, so a
  subscriber can tell a quiet stream from a dead one.
- ``"eos"``: end of stream; recorders finalize.

Decoding never trusts the header: every field is type- and range-checked, the payload
sizes must match the header exactly, and decompression is bounded by the size the
(already checked) header implies. Anything else raises ``MalformedMessage``.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, TransportError
from ..limits import MAX_PIXELS

__all__ = [
    "PROTOCOL_VERSION",
    "LAYOUTS",
    "ENCODINGS",
    "MAX_DIMENSION",
    "MAX_PIXELS",
    "MAX_HEADER_BYTES",
    "MAX_TOPIC_BYTES",
    "MalformedMessage",
    "FrameHeader",
    "ControlHeader",
    "Credit",
    "MAX_WINDOW",
    "RELIABLE_MARKER",
    "DecodedFrame",
    "Layout",
    "Encoding",
    "MAX_TIME_BASE_TERM",
    "MAX_SECONDS",
    "plane_shapes",
    "check_time",
    "check_topic",
    "max_message_size",
    "encode_frame",
    "encode_control",
    "parse_header",
    "decode_message",
    "encode_credit",
    "parse_credit",
]

PROTOCOL_VERSION = 1
Layout = Literal["rgba", "rgb+a", "rgb", "a"]
Encoding = Literal["raw", "zstd", "zlib"]
#: payload planes per layout: channels of each part, in order
LAYOUTS: dict[str, tuple[int, ...]] = {"rgba": (4,), "rgb+a": (3, 1), "rgb": (3,), "a": (1,)}
ENCODINGS = ("raw", "zstd", "zlib")
MAX_DIMENSION = 16384
MAX_HEADER_BYTES = 4096
MAX_TOPIC_BYTES = 255
#: numerator and denominator of a time base: 1 .. 2**31-1 (what containers and codecs store)
MAX_TIME_BASE_TERM = 2**31 - 1
#: a frame's time, ``pts * time_base``, lies within ± this many seconds (about 31 years)
MAX_SECONDS = 10**9
_MAX_INT = 2**63 - 1
_STREAM_RE = re.compile(r"[0-9A-Za-z_-]{1,64}")
_TB_RE = re.compile(r"([1-9][0-9]{0,9})/([1-9][0-9]{0,9})")
_RELIABLE_RE = re.compile(r"(tcp|ipc|inproc)://[^\s]{1,255}")
#: the most frames a reliable receiver may ask to have in flight
MAX_WINDOW = 4096
#: a reliable receiver's discovery socket subscribes to this prefix too, so a publisher
#: can tell it from a plain subscriber (no UTF-8 topic starts with byte 0xff)
RELIABLE_MARKER = b"\xffreliable"
#: the longest heartbeat interval a publisher may announce, seconds
MAX_HEARTBEAT = 3600.0


class MalformedMessage(TransportError):
    """A message that does not follow the protocol; receivers count and skip it."""


@dataclass(frozen=True)
class FrameHeader:
    stream: str
    seq: int
    index: int
    pts: int
    time_base: Fraction
    capture_time: float | None
    width: int
    height: int
    layout: str = "rgba"
    encoding: str = "raw"

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "kind": "frame",
            "stream": self.stream,
            "seq": self.seq,
            "index": self.index,
            "pts": self.pts,
            "time_base": f"{self.time_base.numerator}/{self.time_base.denominator}",
            "capture_time": self.capture_time,
            "width": self.width,
            "height": self.height,
            "layout": self.layout,
            "encoding": self.encoding,
        }


@dataclass(frozen=True)
class ControlHeader:
    """An ``idle`` or ``eos`` message. ``next_seq`` is the seq the next frame would have
    (= frames sent so far), so a receiver can count frames lost before it."""

    kind: str
    stream: str
    next_seq: int
    time: float
    #: eos only: False when the publisher stopped early (error, Ctrl-C)
    complete: bool = True
    #: the endpoint of the publisher's reliable channel, when it offers one
    reliable: str | None = None
    #: the publisher's heartbeat interval, seconds (receivers scale their silence limit)
    heartbeat: float | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "kind": self.kind,
            "stream": self.stream,
            "next_seq": self.next_seq,
            "time": self.time,
        }
        if self.kind == "eos":
            d["complete"] = self.complete
        if self.reliable is not None:
            d["reliable"] = self.reliable
        if self.heartbeat is not None:
            d["heartbeat"] = self.heartbeat
        return d


@dataclass(frozen=True)
class Credit:
    """A reliable receiver's flow-control message (receiver → publisher).

    The publisher may have at most ``window`` frames of ``stream`` sent to this receiver
    and not yet ``consumed`` (counted from the receiver's first frame of that stream).
    Absolute counts make the message idempotent: repeats and keepalives are harmless."""

    topic: str
    window: int
    consumed: int
    #: the stream the count refers to (None before the first frame)
    stream: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "kind": "credit",
            "stream": self.stream,
            "topic": self.topic,
            "window": self.window,
            "consumed": self.consumed,
        }


@dataclass(frozen=True)
class DecodedFrame:
    topic: bytes
    header: FrameHeader
    #: one array per payload part: (H,W,C) for C > 1, (H,W) for alpha
    planes: tuple[np.ndarray, ...]


def plane_shapes(layout: str, width: int, height: int) -> list[tuple[int, ...]]:
    return [(height, width, c) if c > 1 else (height, width) for c in LAYOUTS[layout]]


def check_time(pts: int, time_base: Fraction) -> str | None:
    """Why ``pts``/``time_base`` is outside the protocol's range, or None when it is inside.

    The bounds keep every receiver's arithmetic (and the encoders it feeds) in range: a
    time base of 1/9999999999 or a time of 10^19 s overflows PyAV and most containers."""
    if not (0 < time_base.numerator <= MAX_TIME_BASE_TERM and 0 < time_base.denominator <= MAX_TIME_BASE_TERM):
        return f"time_base {time_base}: numerator and denominator must be in 1..{MAX_TIME_BASE_TERM}"
    if not -_MAX_INT <= pts <= _MAX_INT:
        return f"pts {pts} is outside the 64-bit range"
    if abs(pts * time_base) > MAX_SECONDS:
        return f"pts {pts} at time_base {time_base} is more than {MAX_SECONDS} s from zero"
    return None


def check_topic(topic: object) -> bytes:
    """A topic as its wire bytes; ``ConfigError`` unless it is a str of at most
    ``MAX_TOPIC_BYTES`` UTF-8 bytes (longer ones make every message malformed)."""
    if not isinstance(topic, str):
        raise ConfigError(f"topic: expected a string, got {type(topic).__name__} {topic!r}")
    raw = topic.encode("utf-8")
    if len(raw) > MAX_TOPIC_BYTES:
        raise ConfigError(f"topic: {len(raw)} bytes in UTF-8; the protocol allows at most {MAX_TOPIC_BYTES}")
    return raw


def max_message_size(max_pixels: int = MAX_PIXELS) -> int:
    """A MAXMSGSIZE for receiving sockets: the largest raw RGBA frame plus headers."""
    return max_pixels * 4 + MAX_HEADER_BYTES + MAX_TOPIC_BYTES + 1024


# -- encoding ------------------------------------------------------------------------
def _compress(encoding: str, plane: np.ndarray, level: int | None) -> bytes:
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1 if level is None else level).compress(plane.data)
    if encoding == "zlib":
        return zlib.compress(plane.data, 1 if level is None else level)
    raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")


def encode_frame(
    topic: bytes, header: FrameHeader, planes: Sequence[np.ndarray], *, level: int | None = None
) -> list[Any]:
    """The parts of a frame message. Raw planes are returned as the (contiguous) arrays
    themselves, for a zero-copy ``send_multipart(parts, copy=False)``."""
    shapes = plane_shapes(header.layout, header.width, header.height)
    if len(planes) != len(shapes):
        raise ValueError(f"layout {header.layout!r} needs {len(shapes)} planes, got {len(planes)}")
    out: list[Any] = [topic, json.dumps(header.to_json(), separators=(",", ":")).encode()]
    for plane, shape in zip(planes, shapes, strict=True):
        if tuple(plane.shape) != shape or plane.dtype != np.uint8:
            raise ValueError(f"expected plane {shape} uint8, got {tuple(plane.shape)} {plane.dtype}")
        plane = np.ascontiguousarray(plane)
        out.append(plane if header.encoding == "raw" else _compress(header.encoding, plane, level))
    return out


def encode_control(topic: bytes, header: ControlHeader) -> list[bytes]:
    return [topic, json.dumps(header.to_json(), separators=(",", ":")).encode()]


# -- decoding ------------------------------------------------------------------------
def _buffer(part: Any) -> memoryview:
    buf = getattr(part, "buffer", None)  # zmq.Frame
    mv = memoryview(buf if buf is not None else part)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def _int(d: dict[str, Any], key: str, *, lo: int = 0, hi: int = _MAX_INT) -> int:
    v = d.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise MalformedMessage(f"header field {key!r}: expected an integer in [{lo}, {hi}], got {v!r}")
    return v


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise MalformedMessage(f"header field {key!r}: expected a string, got {v!r}")
    return v


def _time(v: Any, key: str, *, optional: bool) -> float | None:
    if v is None and optional:
        return None
    if type(v) not in (int, float) or not math.isfinite(v) or v < 0:
        raise MalformedMessage(f"header field {key!r}: expected a finite number >= 0, got {v!r}")
    return float(v)


def parse_header(data: bytes | memoryview, *, max_pixels: int = MAX_PIXELS) -> FrameHeader | ControlHeader:
    """Parse and validate a header part. Raises ``MalformedMessage``."""
    if len(data) > MAX_HEADER_BYTES:
        raise MalformedMessage(f"header of {len(data)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        d = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise MalformedMessage(f"header is not a JSON object: {type(d).__name__}")
    if d.get("v") != PROTOCOL_VERSION or type(d.get("v")) is not int:
        raise MalformedMessage(f"unsupported protocol version {d.get('v')!r} (this receiver speaks 1)")
    stream = _str(d, "stream")
    if not _STREAM_RE.fullmatch(stream):
        raise MalformedMessage(f"header field 'stream': expected 1-64 of [0-9A-Za-z_-], got {stream!r}")
    kind = d.get("kind")
    if kind in ("idle", "eos"):
        complete = d.get("complete", True)
        if not isinstance(complete, bool):
            raise MalformedMessage(f"header field 'complete': expected a boolean, got {complete!r}")
        reliable = d.get("reliable")
        if reliable is not None and not (isinstance(reliable, str) and _RELIABLE_RE.fullmatch(reliable)):
            raise MalformedMessage(f"header field 'reliable': expected an endpoint, got {reliable!r}")
        heartbeat = d.get("heartbeat")
        if heartbeat is not None and (_time(heartbeat, "heartbeat", optional=False) == 0 or heartbeat > MAX_HEARTBEAT):
            raise MalformedMessage(
                f"header field 'heartbeat': expected seconds in (0, {MAX_HEARTBEAT}], got {heartbeat!r}"
            )
        return ControlHeader(
            kind=kind,
            stream=stream,
            next_seq=_int(d, "next_seq"),
            time=_time(d.get("time"), "time", optional=False),  # type: ignore[arg-type]
            complete=complete,
            reliable=reliable,
            heartbeat=None if heartbeat is None else float(heartbeat),
        )
    if kind != "frame":
        raise MalformedMessage(f"unknown message kind {kind!r}")
    width = _int(d, "width", lo=1, hi=MAX_DIMENSION)
    height = _int(d, "height", lo=1, hi=MAX_DIMENSION)
    if width * height > max_pixels:
        raise MalformedMessage(f"frame {width}x{height} exceeds the limit of {max_pixels} pixels")
    layout, encoding = _str(d, "layout"), _str(d, "encoding")
    if layout not in LAYOUTS:
        raise MalformedMessage(f"unknown layout {layout!r}; expected one of {tuple(LAYOUTS)}")
    if encoding not in ENCODINGS:
        raise MalformedMessage(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
    m = _TB_RE.fullmatch(_str(d, "time_base"))
    if not m or max(int(m.group(1)), int(m.group(2))) > MAX_TIME_BASE_TERM:
        raise MalformedMessage(
            f"header field 'time_base': expected 'num/den' with both in 1..{MAX_TIME_BASE_TERM}, "
            f"got {d.get('time_base')!r}"
        )
    pts, time_base = _int(d, "pts", lo=-_MAX_INT), Fraction(int(m.group(1)), int(m.group(2)))
    if (problem := check_time(pts, time_base)) is not None:
        raise MalformedMessage(f"header fields 'pts'/'time_base': {problem}")
    return FrameHeader(
        stream=stream,
        seq=_int(d, "seq"),
        index=_int(d, "index"),
        pts=pts,
        time_base=time_base,
        capture_time=_time(d.get("capture_time"), "capture_time", optional=True),
        width=width,
        height=height,
        layout=layout,
        encoding=encoding,
    )


def _decompress(encoding: str, data: memoryview, expected: int) -> bytes:
    """Decompress at most ``expected`` bytes; anything else is malformed."""
    try:
        if encoding == "zstd":
            import zstandard

            size = zstandard.frame_content_size(data)
            if size not in (-1, expected):  # -1: size not stated in the frame
                raise MalformedMessage(f"zstd frame states {size} bytes, header implies {expected}")
            with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False) as r:
                out = r.read(expected + 1)
        else:  # zlib
            d = zlib.decompressobj()
            out = d.decompress(data, expected + 1)
    except MalformedMessage:
        raise
    except Exception as exc:  # zstd.ZstdError, zlib.error, ValueError
        raise MalformedMessage(f"{encoding} payload does not decompress: {exc}") from exc
    if len(out) != expected:
        raise MalformedMessage(f"{encoding} payload decompresses to {len(out)}+ bytes, expected {expected}")
    return out


def decode_message(parts: Sequence[Any], *, max_pixels: int = MAX_PIXELS) -> DecodedFrame | tuple[bytes, ControlHeader]:
    """Decode a received multipart message (``bytes`` or ``zmq.Frame`` parts).

    Raw planes are zero-copy views of the received buffers. Raises ``MalformedMessage``."""
    if len(parts) < 2:
        raise MalformedMessage(f"expected at least 2 parts (topic, header), got {len(parts)}")
    topic = bytes(_buffer(parts[0]))
    if len(topic) > MAX_TOPIC_BYTES:
        raise MalformedMessage(f"topic of {len(topic)} bytes exceeds {MAX_TOPIC_BYTES}")
    header = parse_header(_buffer(parts[1]), max_pixels=max_pixels)
    if isinstance(header, ControlHeader):
        if len(parts) != 2:
            raise MalformedMessage(f"{header.kind} message: expected 2 parts, got {len(parts)}")
        return topic, header
    shapes = plane_shapes(header.layout, header.width, header.height)
    if len(parts) != 2 + len(shapes):
        raise MalformedMessage(f"layout {header.layout!r}: expected {2 + len(shapes)} parts, got {len(parts)}")
    planes = []
    for part, shape in zip(parts[2:], shapes, strict=True):
        expected = math.prod(shape)
        buf = _buffer(part)
        if header.encoding != "raw":
            buf = memoryview(_decompress(header.encoding, buf, expected))
        elif len(buf) != expected:
            raise MalformedMessage(f"payload of {len(buf)} bytes, header implies {expected} ({shape})")
        planes.append(np.frombuffer(buf, dtype=np.uint8).reshape(shape))
    return DecodedFrame(topic, header, tuple(planes))


# -- the reliable channel's flow control -----------------------------------------------
def encode_credit(credit: Credit) -> list[bytes]:
    return [json.dumps(credit.to_json(), separators=(",", ":")).encode()]


def parse_credit(parts: Sequence[Any]) -> Credit:
    """Validate a receiver's credit message (one JSON part). Raises ``MalformedMessage``."""
    if len(parts) != 1:
        raise MalformedMessage(f"credit message: expected 1 part, got {len(parts)}")
    data = _buffer(parts[0])
    if len(data) > MAX_HEADER_BYTES:
        raise MalformedMessage(f"credit message of {len(data)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        d = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedMessage(f"credit message is not UTF-8 JSON: {exc}") from exc
    if not isinstance(d, dict) or d.get("kind") != "credit" or d.get("v") != PROTOCOL_VERSION:
        raise MalformedMessage(f"not a version {PROTOCOL_VERSION} credit message: {str(d)[:80]}")
    stream = d.get("stream")
    if stream is not None and not (isinstance(stream, str) and _STREAM_RE.fullmatch(stream)):
        raise MalformedMessage(f"credit field 'stream': expected null or a stream id, got {stream!r}")
    topic = _str(d, "topic")
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        raise MalformedMessage(f"credit field 'topic' exceeds {MAX_TOPIC_BYTES} bytes")
    return Credit(topic, _int(d, "window", lo=1, hi=MAX_WINDOW), _int(d, "consumed"), stream)

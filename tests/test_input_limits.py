"""Inputs that could hang or exhaust the machine: stalled HTTP servers (timeouts, signals
during open) and frames above the pixel limit."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from streammat.errors import InputError
from streammat.frames import MAX_PIXELS
from streammat.sources.camera import CameraSource
from streammat.sources.file import FileSource
from streammat.testing import SyntheticCamera


class StallingServer:
    """An HTTP server on 127.0.0.1 that answers with headers, sends ``body`` and then
    stalls (keeps the connection open, sends nothing more)."""

    def __init__(self, body: bytes = b"", total: int = 1_000_000) -> None:
        self.body, self.total = body, total
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # accept() wakes up to notice close()
        self._stop = threading.Event()
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, name: str = "x.mp4") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            self._conns.append(conn)
            try:
                conn.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\nContent-Length: {self.total}\r\n\r\n"
                conn.sendall(head.encode() + self.body)
            except OSError:
                pass
            self.accepted.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def stalling():
    servers: list[StallingServer] = []

    def make(**kwargs) -> StallingServer:
        servers.append(StallingServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def run_bounded(fn, limit: float = 30.0):
    """``fn()`` on a thread; (finished, error). A hang shows as finished=False."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    return not t.is_alive(), box.get("error")


def test_a_stalled_http_open_times_out_with_the_url(stalling):
    server = stalling()
    url = server.url()
    finished, error = run_bounded(lambda: FileSource(url, timeout=1).open())
    assert finished, "open() did not return"
    assert isinstance(error, InputError) and str(error) == f"{url}: no answer within 1 s (timeout)"


def test_close_from_another_thread_ends_a_stalled_open(stalling):
    server = stalling()
    src = FileSource(server.url(), timeout=60)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            src.open()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            errors.append(exc)

    opening = threading.Thread(target=open_it, daemon=True)
    opening.start()
    assert server.accepted.wait(30), "open() never connected"
    src.close()
    opening.join(30)
    assert not opening.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], InputError)
    assert str(errors[0]) == f"{server.url()}: closed while opening"


def test_a_stalled_http_read_times_out_after_some_frames(stalling, clip):
    data = clip("long.mkv", frames=200, width=64, height=48).read_bytes()
    server = stalling(body=data[: len(data) // 2], total=len(data))
    got: list[int] = []

    def read() -> None:
        with FileSource(server.url("long.mkv"), timeout=1) as src:
            for frame in src:
                got.append(frame.index)

    finished, error = run_bounded(read)
    assert finished, "iteration did not end"
    assert isinstance(error, InputError) and "no data for 1 s (timeout)" in str(error)
    assert 0 < len(got) < 200


def test_close_from_another_thread_ends_a_stalled_read(stalling, clip):
    data = clip("long.mkv", frames=200, width=64, height=48).read_bytes()
    server = stalling(body=data[: len(data) // 2], total=len(data))
    src = FileSource(server.url("long.mkv"), timeout=3)
    src.open()
    first = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in src:
                first.set()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            errors.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(30), "no frame arrived"
        src.close()  # the reader sits in a read of the stalled stream: it closes the container after it
        reader.join(30)
        assert not reader.is_alive() and errors == []
    finally:
        src.close()


@pytest.mark.slow
def test_sigterm_stops_a_run_stalled_in_open(stalling, tmp_path, cli_env):
    server = stalling()
    out = tmp_path / "out.mkv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammat", "process", server.url(), "-o", str(out), "--model", "u2netp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
    )
    try:
        assert server.accepted.wait(60), "the process never connected"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    # interrupted, not the open timeout's error a few seconds later
    assert proc.returncode == 130 and err.decode().strip() == "streammat: interrupted"


def test_frames_above_max_pixels_are_refused(clip):
    with pytest.raises(InputError) as err:
        FileSource(clip(frames=3), max_pixels=100).open()
    message = str(err.value)
    assert "64x48" in message and "limit of 100 pixels" in message and "--max-pixels" in message
    assert "\n" not in message


def test_a_camera_above_max_pixels_is_refused():
    cam = SyntheticCamera(width=64, height=48)
    try:
        with pytest.raises(InputError, match=r"64x48 .*limit of 100 pixels.*--max-pixels"):
            CameraSource(0, opener=cam, max_pixels=100).open()
    finally:
        cam.close()


def write_black_png(path: Path, width: int, height: int, *, pixels: bool = True) -> Path:
    """A real greyscale PNG, written row by row: a few hundred KB on disk, ``width*height``
    bytes once decoded. ``pixels=False`` writes the header and an empty image body only."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(1), bytes(width + 1)
    body = b"".join(z.compress(row) for _ in range(height if pixels else 0)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_the_size_of_a_huge_image_is_read_from_its_header(tmp_path):
    # 16000x16000 is beyond Pillow's own decompression-bomb limit, which must not hide the size
    path = write_black_png(tmp_path / "huge.png", 16000, 16000, pixels=False)
    with pytest.raises(InputError, match=r"huge\.png: frame size 16000x16000 \(256000000 pixels\)"):
        FileSource(path).open()


# The child limits its address space, so a regression fails instead of eating the machine,
# and reports how much its resident memory grew while opening.
_OPEN_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
from streammat.errors import InputError
from streammat.sources.file import FileSource
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    FileSource(sys.argv[1]).open()
    print("opened")
except InputError as exc:
    print(exc)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.slow
def test_an_oversized_image_is_refused_before_it_is_decoded(tmp_path, cli_env):
    path = write_black_png(tmp_path / "big.png", 10000, 10000)  # 100 MB of pixels, 100 KB of file
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN_LIMITED, str(path)], capture_output=True, env=cli_env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    message, grown_kb = proc.stdout.decode().strip().splitlines()
    assert message == (
        f"{path}: frame size 10000x10000 (100000000 pixels) is above the limit of {MAX_PIXELS} pixels "
        f"(7680x4320 = {MAX_PIXELS} by default); allow more with --max-pixels"
    )
    assert int(grown_kb) < 50_000  # the 100 MB picture was never allocated

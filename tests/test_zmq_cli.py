"""``streammat process --publish`` → ``streammat subscribe -o`` end to end, and the
subscribe command's own behaviour (stats mode, timeout, Ctrl-C)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from streammat.cli import main
from streammat.readback import read_rgba
from streammat.transport.publisher import Publisher

MODEL = ["--model", "u2netp", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subscriber(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streammat", "subscribe", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_thread(argv: list[str]) -> tuple[threading.Thread, list[int]]:
    """``streammat ARGV`` in a thread of this process (cheaper than a subprocess)."""
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(main(argv)), daemon=True)
    t.start()
    return t, codes


def test_process_publishes_and_subscribe_records_the_same_frames(tiny_home, clip, tmp_path, capsys):
    src = clip("in.mp4", width=96, height=64, frames=14)
    url = f"tcp://127.0.0.1:{free_port()}"
    direct, recorded = tmp_path / "direct.mov", tmp_path / "rec.mov"
    t, codes = in_thread(["subscribe", url, "-o", str(recorded), "--timeout", "60"])
    code = main(["process", str(src), "-o", str(direct), "--publish", url, "--publish-wait", "1", *MODEL])
    t.join(60)
    assert not t.is_alive() and code == 0 and codes == [0]
    assert "total 14" in capsys.readouterr().out
    a, b = list(read_rgba(direct)), list(read_rgba(recorded))
    assert len(a) == len(b) == 14
    for fa, fb in zip(a, b, strict=True):
        assert fa.pts * fa.time_base == fb.pts * fb.time_base
        np.testing.assert_array_equal(fa.image, fb.image)


def test_subscribe_stats_mode_and_timeout(capsys):
    url = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(url, heartbeat=0.05) as pub:
        t, codes = in_thread(["subscribe", url, "--frames", "5", "--stats", "--timeout", "30"])
        assert pub.wait_for_subscribers(1, timeout=30)
        for i in range(5):
            plane = np.zeros((8, 8, 4), np.uint8)
            pub.send_frame([plane], layout="rgba", pts=i, time_base=Fraction(1, 25), index=i, capture_time=time.time())
        t.join(30)
    assert codes == [0]
    out = capsys.readouterr().out
    assert "total 5" in out and "latency" in out and "dropped 0" in out
    # nobody publishing: the timeout is one error line and exit code 1
    assert main(["subscribe", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.3"]) == 1
    assert "no message from" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_subscribe_ctrl_c_finalizes_a_partial_recording(tiny_home, cli_env, tmp_path):
    url = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "rec.mov"
    with Publisher(url, heartbeat=0.05) as pub:
        sub = subscriber([url, "-o", str(out)], cli_env)
        try:
            assert pub.wait_for_subscribers(1, timeout=30)
            for i in range(6):
                pub.send_frame(
                    [np.full((16, 16, 4), 9 * i, np.uint8)], layout="rgba", pts=i, time_base=Fraction(1, 25), index=i
                )
                time.sleep(0.02)
            time.sleep(1.0)  # let it write
            sub.send_signal(signal.SIGINT)
            _, err = sub.communicate(timeout=30)
        finally:
            if sub.poll() is None:
                sub.kill()
                sub.communicate()
    assert sub.returncode == 130, err
    partial = sorted(tmp_path.glob("rec*.mov"))
    assert [p.name for p in partial] == ["rec.partial.mov"], "a Ctrl-C recording is named partial"
    frames = list(read_rgba(partial[0]))
    assert len(frames) == 6


def test_process_mattes_an_upstream_zeromq_stream(tiny_home, tmp_path):
    """streammat in the middle of a chain: plain RGB frames in over ZeroMQ, alpha video out."""
    url = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "chain.mkv"
    pts = [0, 3, 4, 9, 10, 11, 20]
    with Publisher(url, heartbeat=0.05) as pub:
        t, codes = in_thread(["process", f"zmq+{url}", "-o", str(out), "--source-timeout", "30", *MODEL])
        assert pub.wait_for_subscribers(1, timeout=30)
        time.sleep(0.2)
        for i, p in enumerate(pts):
            rgb = np.zeros((24, 32, 3), np.uint8)
            rgb[:, : 4 * (i + 1)] = (250, 40, 40)
            pub.send_frame([rgb], layout="rgb", pts=p, time_base=Fraction(1, 30), index=i)
            time.sleep(0.02)
        pub.close(eos=True)
        t.join(60)
    assert codes == [0]
    frames = list(read_rgba(out))
    assert [round(float(f.pts * f.time_base) * 30) for f in frames] == pts
    assert frames[-1].image[..., 3].std() > 0  # a real matte of the red band


def test_process_from_a_silent_zeromq_source_times_out_with_one_line(tiny_home, tmp_path, capsys):
    url = f"tcp://127.0.0.1:{free_port()}"
    code = main(["process", f"zmq+{url}", "-o", str(tmp_path / "o.mkv"), "--source-timeout", "0.5", *MODEL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and url in err[0], err

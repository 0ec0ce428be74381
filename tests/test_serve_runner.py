"""The runner's rules that need no process: where a restarted recording goes, which
sources end by themselves, and the JSON log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from streammat.service.config import ServePipeline
from streammat.service.logs import JsonFormatter
from streammat.service.runner import ends_by_itself, segment_name


def test_a_restart_never_writes_over_an_earlier_segment(tmp_path: Path) -> None:
    out = tmp_path / "rec.mov"
    assert segment_name(str(out), 0) == str(out)
    out.write_bytes(b"first run")
    assert segment_name(str(out), 0) == str(tmp_path / "rec.1.mov")  # an earlier run's file stays
    assert segment_name(str(out), 0, overwrite=True) == str(out)
    (tmp_path / "rec.1.partial.mov").write_bytes(b"a failed attempt")
    assert segment_name(str(out), 1) == str(tmp_path / "rec.2.mov")


def test_only_a_file_that_is_not_looped_ends_by_itself() -> None:
    def settings(source: str, **extra: object) -> ServePipeline:
        return ServePipeline(source=source, publish="tcp://127.0.0.1:5601", **extra)

    assert ends_by_itself(settings("clip.mp4"))
    assert not ends_by_itself(settings("clip.mp4", loop=True))
    assert not ends_by_itself(settings("0"))
    assert not ends_by_itself(settings("rtsp://10.0.0.1/stream"))
    assert not ends_by_itself(settings("zmq+tcp://127.0.0.1:5700"))


def test_json_log_lines_are_one_object_each() -> None:
    args = ("b", "lost")
    record = logging.LogRecord("streammat.service", logging.WARNING, __file__, 1, "pipeline %s: %s", args, None)
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "warning" and data["message"] == "pipeline b: lost"
    assert data["logger"] == "streammat.service" and data["time"].endswith("Z")


def test_a_source_missing_at_start_is_retried_until_it_appears(tmp_path: Path, tiny_home: Path) -> None:
    import time

    from streammat.service.config import ServeConfig
    from streammat.service.supervisor import Service
    from streammat.testing import camera_clip

    clip = tmp_path / "late.mp4"
    pipeline = {"source": str(clip), "loop": True, "model": "u2netp", "output": str(tmp_path / "rec.mkv")}
    service = Service(ServeConfig(backoff_min=0.1, backoff_max=0.5, pipelines={"late": ServePipeline(**pipeline)}))
    service.start()
    try:
        deadline = time.monotonic() + 60
        while service.pipeline("late").errors.get("input", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = service.pipeline("late")
        assert status.errors.get("input", 0) >= 2 and status.state in ("starting", "backoff")
        assert "late.mp4" in (status.last_error or "")
        camera_clip(clip, frames=30)
        while service.pipeline("late").frames_out < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.pipeline("late").state == "running"
        assert service.latest_frame("late") is not None
    finally:
        assert service.stop()
    rgb, alpha = service.latest_frame("late")
    assert rgb.shape == (48, 64, 3) and alpha.shape == (48, 64)
    assert (tmp_path / "rec.mkv").exists()  # the first segment, finalized


def test_a_file_that_ended_leaves_the_service_ready(tmp_path: Path, tiny_home: Path) -> None:
    import time

    import httpx

    from streammat.service.app import HttpServer, create_app
    from streammat.service.config import ServeConfig
    from streammat.service.supervisor import Service
    from streammat.testing import camera_clip

    clip = camera_clip(tmp_path / "clip.mp4", frames=15)
    pipelines = {
        "once": ServePipeline(source=str(clip), model="u2netp", output=str(tmp_path / "once.mkv")),
        "loop": ServePipeline(source=str(clip), loop=True, model="u2netp", output=str(tmp_path / "loop.mkv")),
    }
    service = Service(ServeConfig(pipelines=pipelines))
    http = HttpServer(create_app(service), "127.0.0.1", 0)
    url = http.start()
    service.start()
    try:
        deadline = time.monotonic() + 60
        while service.pipeline("once").state != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        while service.pipeline("loop").state != "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        once = service.pipeline("once")
        assert once.state == "completed" and once.frames_out > 0 and once.restarts == 0 and not once.errors
        reply = httpx.get(f"{url}/readyz", timeout=10)
        assert reply.status_code == 200
        assert reply.json() == {"ready": True, "pipelines": {"once": "completed", "loop": "running"}}
        assert service.ready
        assert 'streammat_pipeline_state{pipeline="once",state="completed"} 1.0' in httpx.get(f"{url}/metrics").text
    finally:
        assert service.stop()
        http.stop()
    assert service.pipeline("once").state == "completed"  # a stop does not undo a finished file
    assert service.pipeline("loop").state == "stopped" and not service.ready
    assert (tmp_path / "once.mkv").exists()

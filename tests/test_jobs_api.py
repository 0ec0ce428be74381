"""The control API end to end, through a real uvicorn server on loopback, with real
pipelines (PyAV clips, the tiny onnxruntime model) behind the job routes."""

from __future__ import annotations

import os
from pathlib import Path

from service_helpers import FakeService, finished, running_server

from streammat.readback import read_rgba
from streammat.testing import make_clip


def _frames(path: str | Path) -> int:
    return sum(1 for _ in read_rgba(path))


def test_job_runs_to_done_with_progress(tmp_path: Path, tiny_home: Path) -> None:
    clip = make_clip(tmp_path / "in.mp4", frames=12)
    with running_server(tmp_path) as srv:
        r = srv.client.post("/jobs", json={"input": "in.mp4", "output": "out.mkv", "options": {"model": "u2netp"}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = srv.wait_job(job_id, finished)
        assert job["state"] == "done", job
        assert (job["frames_done"], job["frames_total"], job["progress"]) == (12, 12, 1.0)
        assert job["output_path"] == str(tmp_path / "out.mkv") and not job["partial"]
        assert job["input"] == str(clip) and job["error"] is None
        assert _frames(tmp_path / "out.mkv") == 12
        listed = srv.client.get("/jobs").json()["jobs"]
        assert [j["id"] for j in listed] == [job_id]
        # the same output again is refused unless overwrite is asked for
        again = srv.client.post("/jobs", json={"input": "in.mp4", "output": "out.mkv"})
        assert again.status_code == 409 and "overwrite" in again.json()["error"]


def test_cancel_finalizes_a_playable_partial_and_the_queue_moves_on(tmp_path: Path, tiny_home: Path) -> None:
    make_clip(tmp_path / "long.mp4", width=160, height=120, frames=300)
    make_clip(tmp_path / "short.mp4", frames=6)
    with running_server(tmp_path, max_jobs=1) as srv:
        opts = {"model": "u2netp", "batch_size": 2}
        first = srv.client.post("/jobs", json={"input": "long.mp4", "output": "long.mkv", "options": opts}).json()["id"]
        second = srv.client.post("/jobs", json={"input": "short.mp4", "output": "short.mkv", "options": opts}).json()
        running = srv.wait_job(first, lambda j: j["frames_done"] >= 4 or finished(j))
        assert running["state"] == "running", running
        assert running["frames_total"] == 300 and running["fps"] and running["eta"] is not None
        # one job at a time: the second waits its turn
        assert srv.client.get(f"/jobs/{second['id']}").json()["state"] == "queued"
        r = srv.client.delete(f"/jobs/{first}")
        assert r.status_code == 200
        job = r.json()
        assert job["state"] == "cancelled", job
        assert job["partial"] and job["output_path"] == str(tmp_path / "long.partial.mkv")
        assert "partial output" in job["error"]
        assert 0 < _frames(job["output_path"]) < 300
        assert not (tmp_path / "long.mkv").exists()
        done = srv.wait_job(second["id"], finished)
        assert done["state"] == "done" and _frames(tmp_path / "short.mkv") == 6
        # a cancelled job can be queued again
        retried = srv.client.post(f"/jobs/{first}/retry")
        assert retried.status_code == 200 and retried.json()["state"] in ("queued", "running")
        srv.client.delete(f"/jobs/{first}")


def test_cancel_a_queued_job_and_refused_retries(tmp_path: Path, tiny_home: Path) -> None:
    make_clip(tmp_path / "long.mp4", width=160, height=120, frames=300)
    with running_server(tmp_path, max_jobs=1) as srv:
        a = srv.client.post("/jobs", json={"input": "long.mp4", "output": "a.mkv", "options": {"model": "u2netp"}})
        b = srv.client.post("/jobs", json={"input": "long.mp4", "output": "b.mkv", "options": {"model": "u2netp"}})
        queued = srv.client.delete(f"/jobs/{b.json()['id']}").json()
        assert queued["state"] == "cancelled" and queued["output_path"] is None
        busy = srv.client.post(f"/jobs/{a.json()['id']}/retry")
        assert busy.status_code == 409 and "can be retried" in busy.json()["error"]
        srv.client.delete(f"/jobs/{a.json()['id']}")
        assert srv.client.get("/jobs/999").status_code == 404
        assert srv.client.get("/jobs/999").json() == {"error": "no job with id 999"}


BAD_OPTIONS = [
    ({"bach_size": 4}, 422, "did you mean 'batch_size'"),
    ({"batch_size": "8"}, 422, "batch_size"),
    ({"batch_size": 100000}, 422, "batch_size"),
    ({"publish": "tcp://*:5555"}, 422, "cannot be set for a job"),
    ({"source": "/etc/passwd"}, 422, "cannot be set for a job"),
    ({"model": "/etc/hostname"}, 403, "outside the allowed folders"),
    ({f"k{i}": 1 for i in range(40)}, 422, "options"),
    ({"codec": "x" * 1000}, 422, "options.codec"),
]


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    make_clip(tmp_path / "in.mp4", frames=2)
    with running_server(tmp_path) as srv:
        for options, status, words in BAD_OPTIONS:
            r = srv.client.post("/jobs", json={"input": "in.mp4", "output": "o.mkv", "options": options})
            assert r.status_code == status, r.text
            assert words in r.json()["error"] and "\n" not in r.json()["error"]
        assert srv.client.get("/jobs").json()["jobs"] == []


def test_paths_outside_the_roots_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    make_clip(outside / "secret.mp4", frames=2)
    make_clip(root / "in.mp4", frames=2)
    (root / "escape.mp4").symlink_to(outside / "secret.mp4")
    (root / "out-link").symlink_to(outside)
    (root / "dev").symlink_to("/dev/zero")
    (root / "o.mkv").symlink_to(outside / "o.mkv")
    os.mkfifo(root / "fifo.mp4")
    attempts = [
        ({"input": "../outside/secret.mp4", "output": "o1.mkv"}, 403, "'..' is not allowed"),
        ({"input": "sub/../in.mp4", "output": "o1.mkv"}, 403, "'..' is not allowed"),
        ({"input": str(outside / "secret.mp4"), "output": "o1.mkv"}, 403, "outside the allowed folders"),
        ({"input": "escape.mp4", "output": "o1.mkv"}, 403, "outside the allowed folders"),
        ({"input": "/dev/zero", "output": "o1.mkv"}, 403, "outside the allowed folders"),
        ({"input": "dev", "output": "o1.mkv"}, 403, "outside the allowed folders"),
        ({"input": "fifo.mp4", "output": "o1.mkv"}, 403, "not a regular file"),
        ({"input": "in.mp4", "output": "out-link/o.mkv"}, 403, "outside the allowed folders"),
        ({"input": "in.mp4", "output": str(outside / "o.mkv")}, 403, "outside the allowed folders"),
        ({"input": "in.mp4", "output": "o.mkv"}, 403, "symlink"),
        ({"input": "in.mp4", "output": "missing/o.mkv"}, 422, "does not exist"),
        ({"input": "http://example.com/a.mp4", "output": "o1.mkv"}, 403, "not URLs"),
        ({"input": "in.mp4\x00", "output": "o1.mkv"}, 422, "NUL"),
    ]
    with running_server(root) as srv:
        for body, status, words in attempts:
            r = srv.client.post("/jobs", json=body)
            assert r.status_code == status, (body, r.text)
            assert words in r.json()["error"], (body, r.json())
        assert srv.client.get("/jobs").json()["jobs"] == []
        assert not (outside / "o.mkv").exists()


def test_token_is_required_when_configured(tmp_path: Path) -> None:
    token = "t0ken-for-the-tests-0123456789"
    with running_server(tmp_path, token=token, service=FakeService()) as srv:
        for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {token}"}):
            r = srv.client.get("/jobs", headers=headers)
            assert r.status_code == 401 and "token" in r.json()["error"]
            assert r.headers["www-authenticate"] == "Bearer"
        ok = {"Authorization": f"Bearer {token}"}
        assert srv.client.get("/jobs", headers=ok).status_code == 200
        assert srv.client.post("/jobs", json={"input": "x", "output": "y"}).status_code == 401
        # a cookie is enough for reading (the dashboard's images) but not for changes
        srv.client.cookies.set("streammat_token", token)
        assert srv.client.get("/pipelines").status_code == 200
        assert srv.client.delete("/pipelines/cam1").status_code == 401
        assert srv.client.get("/").status_code == 200  # the page itself holds no data


def test_a_service_bound_beyond_loopback_makes_its_own_token(tmp_path: Path) -> None:
    with running_server(tmp_path, host="0.0.0.0") as srv:
        assert srv.control.token_generated and srv.control.token
        assert srv.client.get("/jobs").status_code == 401
        ok = {"Authorization": f"Bearer {srv.control.token}"}
        assert srv.client.get("/jobs", headers=ok).status_code == 200
    with running_server(tmp_path, host="0.0.0.0") as again:  # the same token after a restart
        assert again.control.token == srv.control.token and not again.control.token_generated


def test_errors_are_json_lines(tmp_path: Path) -> None:
    with running_server(tmp_path) as srv:
        as_json = {"Content-Type": "application/json"}
        big = srv.client.post("/jobs", content=b"{" + b" " * 100_000 + b"}", headers=as_json)
        assert big.status_code == 413 and "larger than" in big.json()["error"]
        chunked = srv.client.post("/jobs", content=(b" " * 1024 for _ in range(100)), headers=as_json)
        assert chunked.status_code == 413 and "larger than" in chunked.json()["error"]
        bad = srv.client.post("/jobs", content=b"{not json", headers=as_json)
        assert bad.status_code == 422 and "error" in bad.json()
        missing = srv.client.post("/jobs", json={"output": "o.mkv"})
        assert missing.status_code == 422 and missing.json()["error"].startswith("input:")
        assert srv.client.get("/nowhere").json() == {"error": "Not Found"}
        assert srv.client.get("/pipelines").json() == {"pipelines": []}
        assert srv.client.post("/pipelines", json={"name": "c", "settings": {}}).status_code == 409
        assert srv.client.get("/openapi.json").json()["paths"]["/jobs"]


def test_pipelines_and_their_preview(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    with running_server(tmp_path, service=FakeService()) as srv:
        names = [p["name"] for p in srv.client.get("/pipelines").json()["pipelines"]]
        assert names == ["cam1"]
        added = srv.client.post("/pipelines", json={"name": "cam2", "settings": {"source": "1"}})
        assert added.status_code == 201, added.text
        assert srv.client.post("/pipelines", json={"name": "cam2", "settings": {}}).status_code == 409
        assert srv.client.post("/pipelines", json={"name": "../x", "settings": {}}).status_code == 422
        outside = (
            {"source": "/etc/hostname"},
            {"source": "1", "output": "/tmp/rec.mkv"},
            {"source": "1", "model": "/etc/hostname"},
            {"source": "1", "background": "/etc/hostname"},
        )
        for settings in outside:
            refused = srv.client.post("/pipelines", json={"name": "cam3", "settings": settings})
            assert refused.status_code == 403 and "outside the allowed folders" in refused.json()["error"]
        assert srv.client.post("/pipelines/cam2/restart").status_code == 200
        cam2 = [p for p in srv.client.get("/pipelines").json()["pipelines"] if p["name"] == "cam2"][0]
        assert cam2["restarts"] == 1 and cam2["settings"] == {"source": "1"}
        cam1 = srv.client.get("/pipelines").json()["pipelines"][0]
        assert cam1["frames"] > 0 and cam1["drops"] == 0 and cam1["latency_p95"] == 0.020
        assert srv.client.delete("/pipelines/cam2").status_code == 200
        assert srv.client.delete("/pipelines/cam2").status_code == 404
        # colours and blurs are not files; an image inside the roots is taken as its full path
        (tmp_path / "plate.png").write_bytes(b"")
        for background, taken in (("blur:2.5", "blur:2.5"), ("#00ff00", "#00ff00"), ("plate.png", None)):
            added = srv.client.post(
                "/pipelines", json={"name": "cam4", "settings": {"source": "1", "background": background}}
            )
            assert added.status_code == 201, added.text
            cam4 = [p for p in srv.client.get("/pipelines").json()["pipelines"] if p["name"] == "cam4"][0]
            assert cam4["settings"]["background"] == (taken or str((tmp_path / background).resolve()))
            assert srv.client.delete("/pipelines/cam4").status_code == 200
        jpeg = srv.client.get("/pipelines/cam1/preview.jpg")
        image = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (120, 320, 3)  # foreground and matte side by side
        assert image[:, 160:].max() > 200 and image[:, 160:].min() < 50  # the matte: disc and background
        parts = []
        with srv.client.stream("GET", "/pipelines/cam1/preview.mjpg") as r:
            assert r.headers["content-type"].startswith("multipart/x-mixed-replace")
            buffer = b""
            for chunk in r.iter_bytes():
                buffer += chunk
                parts = [p for p in buffer.split(b"--streammat-frame") if b"\xff\xd8" in p]
                if len(parts) >= 3:
                    break
        assert len(parts) >= 3
        assert srv.client.get("/pipelines/nope/preview.mjpg").status_code == 404

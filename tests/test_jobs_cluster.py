"""Service file jobs on Ray: the job API and runner with a real local Ray (2 CPUs, one for
the module): a job that names a cluster, or every job of a service with a ``cluster:``
section, runs through the cluster runner with the usual states, progress and errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install 'streammat[cluster]')")
# Ray starts its processes and the model actors in new interpreters: slow on a busy 2-core machine
pytestmark = pytest.mark.timeout(300)

from cluster_helpers import start_local_ray  # noqa: E402
from service_helpers import finished, running_server  # noqa: E402

from streammat.compose import build_pipeline  # noqa: E402
from streammat.config import ClusterSettings, ProcessConfig  # noqa: E402
from streammat.readback import read_rgba  # noqa: E402
from streammat.testing import make_clip  # noqa: E402

local_ray = pytest.fixture(scope="module")(start_local_ray)


def test_a_job_with_the_cluster_option_runs_on_ray_and_matches_one_process(local_ray, tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=20, gop=4, audio="aac")
    single = tmp_path / "single.mkv"
    settings = ProcessConfig(model="u2netp", batch_size=4)
    build_pipeline(settings.model_copy(update={"source": str(clip), "output": str(single)})).run()
    with running_server(tmp_path) as srv:  # no cluster: section; the job's option sends it to Ray
        opts = {"model": "u2netp", "batch_size": 4, "cluster": "auto"}
        r = srv.client.post("/jobs", json={"input": "in.mp4", "output": "out.mkv", "options": opts})
        assert r.status_code == 201, r.text
        job = srv.wait_job(r.json()["id"], finished, timeout=240)
    assert job["state"] == "done", job
    assert (job["frames_done"], job["frames_total"], job["progress"]) == (20, 20, 1.0)
    assert job["output_path"] == str(tmp_path / "out.mkv") and job["error"] is None
    a, b = list(read_rgba(single)), list(read_rgba(tmp_path / "out.mkv"))
    assert [f.pts for f in a] == [f.pts for f in b] and len(b) == 20
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)  # FFV1: RGB and alpha exact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no segments left


def test_a_cluster_service_runs_every_job_on_ray_and_reports_a_bad_file_as_one_line(local_ray, tmp_path):
    make_clip(tmp_path / "in.mp4", frames=20, gop=4)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with running_server(tmp_path, cluster=ClusterSettings(address="auto", chunk_frames=8)) as srv:
        opts = {"model": "u2netp", "batch_size": 4}
        good = srv.client.post("/jobs", json={"input": "in.mp4", "output": "out.mkv", "options": opts}).json()["id"]
        job = srv.wait_job(good, finished, timeout=240)
        assert job["state"] == "done" and job["frames_done"] == 20, job
        assert len(list(read_rgba(tmp_path / "out.mkv"))) == 20
        r = srv.client.post("/jobs", json={"input": "bad.mp4", "output": "bad.mkv", "options": {"model": "u2netp"}})
        assert r.status_code == 201, r.text
        job = srv.wait_job(r.json()["id"], finished, timeout=240)
        assert job["state"] == "failed", job
        assert job["error"].startswith(f"{bad}: ") and "\n" not in job["error"] and "Traceback" not in job["error"]
        assert not (tmp_path / "bad.mkv").exists()
        wrong = srv.client.post(
            "/jobs", json={"input": "bad.mp4", "output": "x.mkv", "options": {"cluster": "ray://nowhere"}}
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"] == (
            "options: 'cluster' expected local, auto or ray://HOST:10001, got 'ray://nowhere'"
        )
        # a format whose segments cannot be joined fails at once, as one line
        mp4 = srv.client.post("/jobs", json={"input": "bad.mp4", "output": "x.mp4", "options": {"model": "u2netp"}})
        job = srv.wait_job(mp4.json()["id"], finished, timeout=60)
        assert job["state"] == "failed" and "cannot be joined from segments" in job["error"], job


def test_cancelling_a_cluster_job_stops_its_chunks_and_leaves_no_segments(local_ray, tmp_path):
    make_clip(tmp_path / "long.mp4", width=160, height=120, frames=400, gop=10)
    with running_server(tmp_path, cluster=ClusterSettings(address="auto", chunk_frames=10)) as srv:
        opts = {"model": "u2netp", "batch_size": 4}
        job_id = srv.client.post("/jobs", json={"input": "long.mp4", "output": "long.mkv", "options": opts}).json()[
            "id"
        ]
        running = srv.wait_job(job_id, lambda j: j["frames_done"] > 0 or finished(j), timeout=240)
        assert running["state"] == "running" and running["frames_total"] == 400, running
        assert srv.client.delete(f"/jobs/{job_id}").status_code == 200
        job = srv.wait_job(job_id, finished, timeout=60)
    assert job["state"] == "cancelled", job
    assert job["error"].startswith("cancelled after ") and not job["partial"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mkv" or p.name.startswith(".")) == []


def test_where_a_job_runs_comes_from_its_option_or_the_serve_configs_cluster_section(tmp_path):
    from streammat.errors import ConfigError
    from streammat.service.cluster_jobs import job_cluster
    from streammat.service.config import load_serve_config

    path = tmp_path / "serve.yaml"
    path.write_text("cluster:\n  address: auto\n  chunk_frames: 30\n")
    section = load_serve_config(path).cluster
    assert section == ClusterSettings(address="auto", chunk_frames=30)
    assert job_cluster({"model": "u2netp"}, None) is None  # in the service's own process
    assert job_cluster({}, section) == section
    assert job_cluster({"cluster": "local"}, section) == ClusterSettings(address="local", chunk_frames=30)
    assert job_cluster({"cluster": "ray://head:10001"}, None) == ClusterSettings(address="ray://head:10001")
    with pytest.raises(ConfigError, match=r"^options: 'cluster' expected local, auto or ray://HOST:10001, got 3$"):
        job_cluster({"cluster": 3}, None)
    path.write_text("cluster:\n  chunk_frame: 30\n")
    with pytest.raises(ConfigError, match="chunk_frame"):
        load_serve_config(path)

"""Two Ray nodes on this machine (``ray.cluster_utils.Cluster``): chunks of one video run
on both, and the joined output is identical to a single-process run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'streammat[cluster]')")
# Ray starts its processes and the model actors in new interpreters: slow on a busy 2-core machine
pytestmark = pytest.mark.timeout(300)

from ray.cluster_utils import Cluster  # noqa: E402

from streammat.cluster import run_cluster  # noqa: E402
from streammat.compose import build_pipeline  # noqa: E402
from streammat.config import ClusterSettings, ProcessConfig  # noqa: E402
from streammat.readback import read_rgba  # noqa: E402
from streammat.testing import install_model, make_clip, tiny_u2net_model  # noqa: E402


@pytest.fixture
def two_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "rembg-home"
    install_model(home, "u2netp", tiny_u2net_model())
    monkeypatch.setenv("REMBG_HOME", str(home))  # before the nodes start: their workers inherit it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_chunks_run_on_two_nodes_and_join_into_the_single_process_output(two_nodes, tmp_path):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    clip = make_clip(tmp_path / "two.mp4", frames=20, gop=4, audio="aac")
    settings = ProcessConfig(model="u2netp", format="ffv1", batch_size=4)
    single = tmp_path / "single.mkv"
    build_pipeline(settings.model_copy(update={"source": str(clip), "output": str(single)})).run()
    nodes = tmp_path / "nodes"
    nodes.mkdir()

    def hook(path: str, index: int, actor) -> None:
        import ray

        (nodes / f"{index}-{ray.get_runtime_context().get_node_id()}").touch()

    # one CPU per node and none reserved for the actors: one chunk task per node at a time
    cluster = ClusterSettings(chunk_frames=4, actors=2, actor_cpus=0)
    result = run_cluster([str(clip)], tmp_path / "out", settings, cluster, chunk_hook=hook)
    assert result.ok, result.failed
    assert result.files[0].chunks == 5
    assert len({p.name.split("-", 1)[1] for p in nodes.iterdir()}) == 2, sorted(os.listdir(nodes))
    a, b = list(read_rgba(single)), list(read_rgba(tmp_path / "out" / "two.mkv"))
    assert [f.pts for f in a] == [f.pts for f in b] and len(a) == 20
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)

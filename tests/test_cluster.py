"""The Ray runner on a local Ray (2 CPUs, one instance for the module): outputs identical
to a single-process run, chunk order under shuffled completion, retries, bad files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'streammat[cluster]')")
# Ray starts its processes and the model actors in new interpreters: slow on a busy 2-core machine
pytestmark = pytest.mark.timeout(300)

from cluster_helpers import start_local_ray  # noqa: E402

from streammat.cli import main  # noqa: E402
from streammat.cluster import run_cluster  # noqa: E402
from streammat.compose import build_pipeline  # noqa: E402
from streammat.config import ClusterSettings, ProcessConfig  # noqa: E402
from streammat.readback import read_rgba  # noqa: E402
from streammat.testing import make_clip  # noqa: E402

local_ray = pytest.fixture(scope="module")(start_local_ray)

# variable frame rate: gaps of 1 to 3 ticks of 1/50 s
VFR_PTS = [0, 2, 3, 5, 8, 9, 11, 14, 15, 17, 20, 21, 22, 25, 27, 30, 31, 33, 36, 37, 40, 41, 44, 45, 47]
SETTINGS = ProcessConfig(model="u2netp", format="ffv1", batch_size=4)


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    return make_clip(
        folder / "vfr.mp4", frames=len(VFR_PTS), pts=VFR_PTS, time_base=Fraction(1, 50), audio="aac", gop=5
    )


def _single(clip: Path, out: Path, settings: ProcessConfig = SETTINGS) -> Path:
    build_pipeline(settings.model_copy(update={"source": str(clip), "output": str(out)})).run()
    return out


def _frames(path: Path) -> list:
    return list(read_rgba(path))


def _audio_packets(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(c.streams.audio[0]) if p.size)


def test_clustered_vfr_clip_with_audio_is_identical_despite_shuffled_completion_and_a_retry(
    local_ray, vfr_clip, tmp_path
):
    marker = tmp_path / "chunk-1-failed-once"

    def hook(path: str, index: int, actor) -> None:
        import time

        if index == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("injected failure of chunk 1")
        time.sleep(0.5 * (2 - index))  # earlier chunks finish later

    single = _frames(_single(vfr_clip, tmp_path / "single.mkv"))
    # no CPU reserved for the actor: two chunk tasks run at once on the 2 CPUs
    cluster = ClusterSettings(chunk_frames=6, actor_cpus=0, retries=1)
    result = run_cluster([str(vfr_clip)], tmp_path / "out", SETTINGS, cluster, chunk_hook=hook)
    assert marker.exists(), "the injected failure did not happen"
    assert result.ok, result.failed
    assert result.files[0].chunks == 3  # keyframes every 5 frames, chunks of at least 6: 10 + 10 + 5
    joined = tmp_path / "out" / "vfr.mkv"
    clustered = _frames(joined)
    assert [f.time for f in clustered] == [Fraction(p, 50) for p in VFR_PTS] == [f.time for f in single]
    for a, b in zip(single, clustered, strict=True):
        np.testing.assert_array_equal(a.image, b.image)  # FFV1: RGB and alpha exact
    assert _audio_packets(joined) == _audio_packets(tmp_path / "single.mkv") > 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["vfr.mkv"]  # no segments, no partials


def test_smoothing_with_warm_up_matches_one_process_and_a_chunk_that_keeps_failing_is_reported(
    local_ray, vfr_clip, tmp_path
):
    import shutil

    doomed = tmp_path / "doomed.mp4"
    shutil.copy(vfr_clip, doomed)

    def hook(path: str, index: int, actor) -> None:
        if path.endswith("doomed.mp4") and index == 1:
            raise RuntimeError("chunk 1 of doomed keeps failing")

    smooth = SETTINGS.model_copy(update={"smoothing": 0.5, "every": 2})
    single = _frames(_single(vfr_clip, tmp_path / "single.mkv", smooth))
    cluster = ClusterSettings(chunk_frames=6, warmup=12, retries=1)
    result = run_cluster([str(vfr_clip), str(doomed)], tmp_path / "out", smooth, cluster, chunk_hook=hook)
    assert [f.ok for f in result.files] == [True, False]
    assert result.failed[0].error == "RuntimeError: chunk 1 of doomed keeps failing"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["vfr.mkv"]
    clustered = _frames(tmp_path / "out" / "vfr.mkv")
    assert [f.pts for f in clustered] == [f.pts for f in single]
    for a, b in zip(single, clustered, strict=True):
        diff = np.abs(a.image[..., 3].astype(int) - b.image[..., 3].astype(int)).max()
        assert diff <= 1  # 12 warm-up frames leave 0.5**12 of the cold start: below one level


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "split"])
def test_a_lost_model_actor_is_replaced(local_ray, vfr_clip, tmp_path, fused):
    import signal

    marker = tmp_path / "actor-killed"

    def hook(path: str, index: int, actor) -> None:
        if index == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            # fused: the hook runs in the actor itself; split: in a task that asks the actor
            os.kill(os.getpid() if fused else ray.get(actor.pid.remote()), signal.SIGKILL)

    single = _frames(_single(vfr_clip, tmp_path / "single.mkv"))
    cluster = ClusterSettings(chunk_frames=6, fused=fused)
    result = run_cluster([str(vfr_clip)], tmp_path / "out", SETTINGS, cluster, chunk_hook=hook)
    assert marker.exists(), "the actor was not ended"
    assert result.ok, result.failed
    clustered = _frames(tmp_path / "out" / "vfr.mkv")
    assert [f.pts for f in clustered] == [f.pts for f in single]
    for a, b in zip(single, clustered, strict=True):
        np.testing.assert_array_equal(a.image, b.image)


def test_a_corrupt_file_is_reported_and_the_others_complete(local_ray, tmp_path, capsys):
    good = make_clip(tmp_path / "good.mp4", frames=10, gop=4)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    out = tmp_path / "out"
    code = main(["process", str(good), str(bad), "-o", f"{out}/", "--cluster", "auto", "--model", "u2netp",
                 "--format", "ffv1", "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    text = captured.out
    assert code == 1
    assert str(bad) not in captured.err  # reported once, in the summary
    assert f"FAILED {bad}: not a video" in text and f"{bad}: {bad}" not in text
    assert f"ok     {good} -> {out / 'good.mkv'}" in text
    assert "1 of 2 files done, 1 failed" in text
    assert len(_frames(out / "good.mkv")) == 10
    assert sorted(p.name for p in out.iterdir()) == ["good.mkv"]


def test_cluster_rejects_formats_that_cannot_be_joined(local_ray, vfr_clip, tmp_path):
    from streammat.errors import ConfigError

    with pytest.raises(ConfigError, match="--cluster: format 'vp9'"):
        run_cluster([str(vfr_clip)], tmp_path, SETTINGS.model_copy(update={"format": "vp9"}), ClusterSettings())

"""Several inputs into a folder without a cluster, the ``cluster:`` config section, and
the chunk plan (none of these needs Ray)."""

from __future__ import annotations

import pytest

from streammat.cli import main
from streammat.cluster.plan import plan_video, split
from streammat.config import ClusterSettings, ProcessConfig, merge
from streammat.errors import ConfigError
from streammat.readback import read_rgba


def test_several_inputs_go_into_a_folder_and_a_bad_one_is_reported(tiny_home, clip, tmp_path, capsys):
    a, b = clip("a.mp4", frames=5), clip("b.mp4", frames=7)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    code = main(["process", str(a), str(bad), str(b), "-o", f"{out}/", "--model", "u2netp", "--format", "ffv1"])
    text = capsys.readouterr().out
    assert code == 1
    assert f"FAILED {bad}: not a video" in text and f"{bad}: {bad}" not in text
    assert "2 of 3 files done, 1 failed" in text
    assert len(list(read_rgba(out / "a.mkv"))) == 5 and len(list(read_rgba(out / "b.mkv"))) == 7
    assert sorted(p.name for p in out.iterdir()) == ["a.mkv", "b.mkv"]


def test_several_inputs_need_a_folder(tiny_home, clip, tmp_path, capsys):
    a, b = clip("a.mp4", frames=2), clip("b.mp4", frames=2)
    assert main(["process", str(a), str(b), "-o", str(tmp_path / "x.mov")]) == 2
    assert "--output: several inputs need a folder" in capsys.readouterr().err
    assert main(["process", str(a), "--cluster", "nowhere:1", "-o", f"{tmp_path}/"]) == 2
    assert "--cluster: expected local, auto or ray://HOST:10001, got 'nowhere:1'" in capsys.readouterr().err


def test_cluster_section_of_a_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("process:\n  batch_size: 4\ncluster:\n  chunk_frames: 30\n  actors: 2\n")
    assert merge(ClusterSettings, cfg, {"address": "ray://head:10001"}) == ClusterSettings(
        address="ray://head:10001", chunk_frames=30, actors=2
    )
    assert merge(ProcessConfig, cfg, {}).batch_size == 4
    flat = tmp_path / "flat.yaml"
    flat.write_text("batch_size: 4\n")  # a file without sections holds stream settings only
    assert merge(ClusterSettings, flat, {}) == ClusterSettings()
    cfg.write_text("cluster:\n  chunk_frame: 30\n")
    with pytest.raises(ConfigError, match="unknown setting 'chunk_frame' \\(did you mean 'chunk_frames'\\?\\)"):
        merge(ClusterSettings, cfg, {})


def test_chunks_start_at_keyframes_cover_every_frame_and_align_warm_up():
    pts = list(range(0, 100, 2))  # 50 frames
    keys = pts[::5]  # a keyframe every 5 frames
    chunks = split(pts, keys, chunk_frames=12, warmup=4, every=3)
    assert [c.start for c in chunks] == [0, 30, 60, 90]  # the first keyframe 12+ frames on
    assert [c.frames for c in chunks] == [15, 15, 15, 5] and sum(c.frames for c in chunks) == len(pts)
    assert all(c.start in keys and c.seek in keys and c.seek <= c.warm for c in chunks)
    for c in chunks[1:]:
        first_warm = pts.index(c.warm)
        assert 4 <= c.warmup_frames == c.first_frame - first_warm < 4 + 3 and first_warm % 3 == 0
    assert chunks[0].warmup_frames == 0 and chunks[0].end == 30 and chunks[-1].end is None


def test_plan_of_a_file_and_of_a_damaged_one(clip, tmp_path):
    plan = plan_video(str(clip("g.mp4", frames=20, gop=4)), chunk_frames=8)
    assert [c.frames for c in plan.chunks] == [8, 8, 4] and plan.frames == 20
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    from streammat.errors import InputError

    with pytest.raises(InputError, match="bad.mp4: not a video"):
        plan_video(str(bad), chunk_frames=8)

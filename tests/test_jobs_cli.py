"""``streammat jobs`` against a real server on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service_helpers import finished, running_server

from streammat.cli import main
from streammat.testing import make_clip


def test_submit_list_show_cancel(tmp_path: Path, tiny_home: Path, capsys) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "a.mp4", frames=4)
    make_clip(clips / "b.mp4", frames=4)
    (tmp_path / "out").mkdir()
    with running_server(tmp_path) as srv:
        server = ["jobs", "--server", srv.url]
        assert (
            main(
                [
                    *server,
                    "submit",
                    str(clips),
                    "-o",
                    str(tmp_path / "out"),
                    "--format",
                    "mkv",
                    "--option",
                    "model=u2netp",
                    "--option",
                    "batch-size=2",
                ]
            )
            == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[:3] for line in lines] == [["job", "1", "queued:"], ["job", "2", "queued:"]]
        for job_id in (1, 2):
            assert srv.wait_job(job_id, finished)["state"] == "done"
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.mkv"]
        assert main([*server, "list"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:4] == ["ID", "STATE", "PROGRESS", "FPS"]
        assert [row.split()[1] for row in table[1:]] == ["done", "done"]
        assert main([*server, "show", "1"]) == 0
        shown = capsys.readouterr().out
        assert "job 1: done" in shown and "100.0 % (4/4)" in shown and '"batch_size": 2' in shown
        assert main([*server, "cancel", "1"]) == 0
        assert capsys.readouterr().out.strip() == "job 1 done"
        # errors are one line and exit code 1, from a real subprocess
        bad = subprocess.run(
            [sys.executable, "-m", "streammat", *server, "show", "42"], capture_output=True, text=True, timeout=60
        )
        assert (
            bad.returncode == 1 and bad.stderr.strip() == f"streammat: error: {srv.url}: no job with id 42 (HTTP 404)"
        )
    assert main(["jobs", "--server", srv.url, "list"]) == 1
    assert "cannot reach" in capsys.readouterr().err

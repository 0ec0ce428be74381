"""The ``Service`` as the control API drives it: add, restart and remove pipelines, with
one-line errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streammat.errors import ConfigError
from streammat.service.config import ServeConfig
from streammat.service.supervisor import PipelineNotFound, Service
from streammat.testing import camera_clip


def _until(check, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_add_restart_and_remove_a_pipeline(tmp_path: Path, tiny_home: Path) -> None:
    clip = camera_clip(tmp_path / "clip.mp4", frames=30)
    service = Service(ServeConfig())
    service.start()
    try:
        settings = {"source": str(clip), "loop": True, "model": "u2netp", "output": str(tmp_path / "x.mkv")}
        assert service.add_pipeline("x", settings).name == "x"
        _until(lambda: service.pipeline("x").frames_out > 3, "frames of x")
        assert "x" in service.config.pipelines
        with pytest.raises(ConfigError, match="already exists"):
            service.add_pipeline("x", settings)
        with pytest.raises(ConfigError, match=r"^pipeline: pipelines\.y\.batch_size: expected"):
            service.add_pipeline("y", {**settings, "batch_size": 0})
        with pytest.raises(ConfigError, match="already used by pipeline 'x'"):
            service.add_pipeline("y", settings)

        service.restart_pipeline("x")
        assert service.pipeline("x").restarts == 1
        _until(lambda: service.pipeline("x").state == "running", "x running again")
        status = service.pipeline("x").as_dict()
        assert status["settings"]["source"] == str(clip) and status["frames"] == status["frames_out"]

        service.remove_pipeline("x")
        assert service.pipelines() == [] and "x" not in service.config.pipelines
        with pytest.raises(PipelineNotFound, match="no pipeline 'x'"):
            service.remove_pipeline("x")
    finally:
        assert service.stop()
    assert (tmp_path / "x.mkv").exists() and (tmp_path / "x.1.mkv").exists()  # before and after the restart

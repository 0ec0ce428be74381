"""Shared fixtures: tiny models in a temporary rembg model home, small generated clips."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from streammat.testing import install_model, make_clip, tiny_u2net_model

# Keep the suite from oversubscribing the 2 CI cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rembg model home holding a tiny model under the name ``u2netp``."""
    home = tmp_path / "rembg-home"
    install_model(home, "u2netp", tiny_u2net_model())
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return home


@pytest.fixture
def clip(tmp_path: Path):
    """Factory: ``clip(name="in.mp4", **make_clip options)`` → path of a generated clip."""

    def make(name: str = "in.mp4", **options) -> Path:
        return make_clip(tmp_path / name, **options)

    return make


@pytest.fixture
def cli_env(tiny_home: Path) -> dict[str, str]:
    """Environment for running ``python -m streammat`` in a subprocess with the tiny model."""
    env = dict(os.environ)
    env["REMBG_HOME"] = str(tiny_home)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


PYTHON = sys.executable


# -- the built-in selfie models (issue 3) -------------------------------------------------
@pytest.fixture(scope="session")
def selfie_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rembg model home holding both selfie models, pulled once per test session the way
    users get them (``store.pull`` -> pip download of the pinned mediapipe wheel). A failed
    pull fails the tests that need it. The pull's scratch folder is checked by the tests."""
    import tempfile

    from streammat.models import store

    home = tmp_path_factory.mktemp("selfie-home")
    scratch = tmp_path_factory.mktemp("selfie-pull-scratch")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REMBG_HOME", str(home))
        mp.delenv("U2NET_HOME", raising=False)
        mp.setattr(tempfile, "tempdir", str(scratch))  # where the wheel goes while pulling
        store.pull("selfie")
    return home


@pytest.fixture
def selfie_env(selfie_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """REMBG_HOME pointed at ``selfie_home`` for one test."""
    monkeypatch.setenv("REMBG_HOME", str(selfie_home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return selfie_home

"""One local Ray per test module (Ray starts slowly on 2 cores); a module declares
``local_ray = pytest.fixture(scope="module")(start_local_ray)``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streammat.testing import install_model, tiny_u2net_model


def start_local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A local Ray with 2 CPUs; its workers find the tiny model through REMBG_HOME."""
    import ray

    home = tmp_path_factory.mktemp("rembg-home")
    install_model(home, "u2netp", tiny_u2net_model())
    saved = os.environ.get("REMBG_HOME")
    os.environ["REMBG_HOME"] = str(home)  # before ray.init: the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield home
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("REMBG_HOME", None)
        else:
            os.environ["REMBG_HOME"] = saved

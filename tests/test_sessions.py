"""The session registry: rembg's own loading code, explicit providers, loud CPU fallback."""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import pytest
import torch

from streammat.errors import ConfigError, ModelError
from streammat.frames import Batch
from streammat.matting.providers import providers_for
from streammat.matting.reference import RembgMatter
from streammat.matting.sessions import create_session, known_model_names


def test_rembg_names_and_built_ins_are_known(tiny_home):
    names = known_model_names()
    assert {"u2net", "u2netp", "isnet-general-use", "selfie", "selfie-landscape"} <= set(names)


def test_unknown_model_lists_the_known_ones(tiny_home):
    with pytest.raises(ModelError, match="unknown model 'nope'.*u2netp"):
        create_session("nope")


def test_missing_custom_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        create_session(str(tmp_path / "missing.onnx"))


def test_cuda_requested_without_a_gpu_warns_loudly_and_runs_on_cpu(tiny_home, caplog):
    caplog.set_level(logging.WARNING)
    session = create_session("u2netp", device="cuda")
    assert session.inner_session.get_providers() == ["CPUExecutionProvider"]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("CUDAExecutionProvider" in m and "CPU" in m for m in warning), warning


def test_cpu_device_asks_for_cpu_only_and_unknown_devices_are_rejected():
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("tensorrt")[0] == "TensorrtExecutionProvider"
    with pytest.raises(ConfigError, match="device: unknown value 'npu'; choose one of auto, cpu, cuda, tensorrt"):
        providers_for("npu")


def test_exact_path_is_rembg_remove_per_frame(tiny_home):
    """Tolerance 0: the exact path *is* ``rembg.remove(frame, session, only_mask=True)``."""
    from rembg import remove

    session = create_session("u2netp", device="cpu")
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8))
    batch = Batch(images, (0, 1, 2), Fraction(1, 25), (0, 1, 2))
    matted = RembgMatter(session)(batch)
    for i in range(3):
        expected = np.asarray(remove(images[i].numpy(), session=session, only_mask=True))
        assert np.array_equal(matted.alpha[i].numpy(), expected)


def test_a_rembg_model_that_cannot_be_downloaded_says_where_to_put_it(tiny_home, monkeypatch):
    import pooch

    def offline(*args, **kwargs):
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(ModelError, match=r"u2net: not in .*u2net\.onnx and rembg could not download it") as err:
        create_session("u2net", device="cpu")
    assert "\n" not in str(err.value)

"""Where the model runs: device + backend -> runner and reason, the fallback lines, the
one 'onnxruntime is not installed' message. Runs without a GPU: CUDA's presence is what
``torch.cuda.is_available`` and the session's granted providers say."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from streammat.errors import ConfigError, ModelError
from streammat.matting import create_matter
from streammat.matting.providers import ORT_MISSING, check_granted, providers_for, select_runner
from streammat.matting.runners import OrtCpuRunner, TorchRunner
from streammat.matting.sessions import create_session


class _Inner:
    def __init__(self, providers: list[str]) -> None:
        self._providers = providers

    def get_providers(self) -> list[str]:
        return self._providers

    def get_provider_options(self) -> dict:
        return {"CUDAExecutionProvider": {"device_id": "1"}}


class _Session:
    def __init__(self, *providers: str) -> None:
        self.inner_session = _Inner(list(providers))


ORT_CPU = _Session("CPUExecutionProvider")
ORT_CUDA = _Session("CUDAExecutionProvider", "CPUExecutionProvider")
ORT_TRT = _Session("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

CASES = [
    # session, device, backend, torch has CUDA -> runner, device
    (ORT_CPU, "cpu", "auto", True, "ort-cpu", "cpu"),
    (ORT_CPU, "cpu", "torch", True, "torch", "cpu"),
    (ORT_CPU, "auto", "auto", False, "ort-cpu", "cpu"),
    (ORT_CPU, "cuda", "auto", False, "ort-cpu", "cpu"),
    (ORT_CPU, "auto", "auto", True, "torch", "cuda:0"),
    (ORT_CPU, "cuda", "auto", True, "torch", "cuda:0"),
    (ORT_CPU, "cuda", "ort", True, "ort-cpu", "cpu"),
    (ORT_CPU, "cuda", "torch", False, "torch", "cpu"),
    (ORT_CUDA, "auto", "auto", True, "ort-cuda", "cuda:1"),
    (ORT_CUDA, "cuda", "torch", True, "torch", "cuda:0"),
    (ORT_CUDA, "cuda", "auto", False, "ort-cpu", "cpu"),
    (ORT_TRT, "tensorrt", "auto", True, "ort-cuda", "cuda:1"),
]


@pytest.mark.parametrize(("session", "device", "backend", "torch_cuda", "runner", "where"), CASES)
def test_device_and_backend_pick_one_runner(
    monkeypatch: pytest.MonkeyPatch, session, device, backend, torch_cuda, runner, where
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_cuda)
    choice = select_runner(session, device, backend)
    assert (choice.runner, choice.device) == (runner, where), choice
    assert choice.reason and "\n" not in choice.reason


def test_reasons_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_runner(ORT_CPU, "cpu").reason == "device=cpu was requested"
    assert "torch has no CUDA" in select_runner(ORT_CUDA, "cuda").reason
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "granted CUDAExecutionProvider" in select_runner(ORT_CUDA, "auto").reason
    assert "onnxruntime runs on CPUExecutionProvider only; torch has CUDA" in select_runner(ORT_CPU, "auto").reason


def test_unknown_values_list_the_allowed_ones(tiny_home) -> None:
    with pytest.raises(ConfigError, match=r"^backend: unknown value 'tensorflow'; choose one of auto, ort, torch$"):
        select_runner(ORT_CPU, "cpu", "tensorflow")
    with pytest.raises(ConfigError, match=r"^device: unknown value 'npu'; choose one of auto, cpu, cuda, tensorrt$"):
        providers_for("npu")
    session = create_session("u2netp", device="cpu")
    with pytest.raises(ConfigError, match="backend: unknown value 'trt'"):
        create_matter(session, backend="trt")
    with pytest.raises(ConfigError, match="device: unknown value 'gpu'"):
        create_matter(session, device="gpu")


def test_cuda_without_any_cuda_falls_back_with_one_warning(tiny_home, caplog) -> None:
    """This machine has neither onnxruntime-gpu nor a CUDA torch: the session warns once;
    the matter's line says where it runs, at INFO."""
    caplog.set_level(logging.INFO)
    session = create_session("u2netp", device="cuda")
    matter = create_matter(session, device="cuda")
    assert isinstance(matter._runner, OrtCpuRunner) and matter.backend == "cpu"
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "streammat.matting.providers" and "torch has no CUDA either" in warning.getMessage()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "streammat.matting.runners"]
    assert "u2netp: device=cuda backend=auto runs ort-cpu on cpu" in line and "torch has no CUDA" in line
    assert create_matter(session, device="auto").choice.runner == "ort-cpu"


def test_a_gpu_the_runner_does_not_use_is_a_warning(monkeypatch: pytest.MonkeyPatch, tiny_home, caplog) -> None:
    """onnxruntime granted CUDA but torch cannot hold device tensors: every batch makes a
    host round trip, which deserves the one warning."""
    session = create_session("u2netp", device="cpu")
    monkeypatch.setattr(session.inner_session, "get_providers", lambda: ["CUDAExecutionProvider"])
    caplog.set_level(logging.INFO, logger="streammat.matting.runners")
    matter = create_matter(session, device="cuda")
    assert matter.choice.runner == "ort-cpu"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "granted CUDAExecutionProvider but torch has no CUDA" in warning


def test_the_torch_backend_on_the_cpu_is_logged_once(tiny_home, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streammat.matting.runners")
    matter = create_matter(create_session("u2netp", device="cpu"), device="cpu", backend="torch")
    assert isinstance(matter._runner, TorchRunner) and matter._runner.dtype == torch.float32
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "runs torch on cpu (backend=torch and device=cpu were requested" in lines[0]


def test_cuda_granted_to_torch_only_is_not_a_warning(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="streammat.matting.providers")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not check_granted(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], device="cuda")
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert check_granted(["CUDAExecutionProvider"], ["CUDAExecutionProvider"], device="cuda")


def test_onnxruntime_missing_is_one_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ModelError) as err:
        providers_for("cpu")
    assert str(err.value) == ORT_MISSING
    with pytest.raises(ModelError) as err:
        create_session("u2netp")
    assert str(err.value) == ORT_MISSING

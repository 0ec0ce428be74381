"""Where the model runs: ``device`` and ``backend`` turned into providers, a runner and a reason.

Two questions, answered here only:

- which onnxruntime execution providers a session asks for (``providers_for(device)``),
  and whether it got them (``check_granted``): ``onnxruntime.get_available_providers()``
  lists CUDA whenever onnxruntime-gpu is installed, even when the CUDA/cuDNN libraries it
  needs are missing, and the session then silently runs on the CPU — so the *granted*
  providers are what counts;
- which runner runs the graph of the batched path (``select_runner``): onnxruntime on the
  CPU (``ort-cpu``), onnxruntime's CUDA provider on device tensors (``ort-cuda``), or the
  graph converted to a torch module (``torch``, on CUDA or the CPU). ``--device cuda``
  takes onnxruntime's CUDA provider when it was granted and the torch backend otherwise
  (an onnxruntime without CUDA next to a CUDA build of torch is common: onnxruntime-gpu
  is a large, separate install). ``backend="ort"|"torch"`` overrides the choice.

The runners themselves live side by side in ``runners.py``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import BACKENDS, DEVICES  # the settings define the allowed values
from ..errors import ConfigError, ModelError

__all__ = [
    "BACKENDS",
    "DEVICES",
    "ORT_MISSING",
    "RunnerChoice",
    "check_backend",
    "check_device",
    "check_granted",
    "import_onnxruntime",
    "providers_for",
    "select_runner",
    "torch_has_cuda",
]

log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
#: providers whose sessions run on CUDA memory (IOBinding on torch device tensors works)
GPU_PROVIDERS: tuple[str, ...] = (CUDA_PROVIDER, TENSORRT_PROVIDER)

ORT_MISSING = "onnxruntime is not installed: pip install 'streammat[cpu]' (or 'streammat[gpu]')"

Runner = Literal["ort-cpu", "ort-cuda", "torch"]


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"device: unknown value {device!r}; choose one of {', '.join(DEVICES)}")
    return device


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend: unknown value {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def import_onnxruntime() -> Any:
    """The onnxruntime module, or a ``ModelError`` saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(ORT_MISSING) from exc
    return onnxruntime


def _available() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def providers_for(device: str) -> list[str]:
    """The provider list to request for ``device``. ``auto`` prefers CUDA when listed."""
    check_device(device)
    available = _available()
    if device == "cpu":
        return [CPU_PROVIDER]
    if device == "tensorrt":
        return [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]
    if device == "cuda":
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]


#: a GPU build of torch names its CUDA or ROCm version in ``torch/version.py``
_GPU_BUILD = re.compile(r"^(cuda|hip)\b[^=]*=\s*['\"]", re.MULTILINE)


def _torch_gpu_build() -> bool:
    """Whether the installed torch is a CUDA or ROCm build, read from its version file: a
    CPU build then answers without the 2 s import of torch itself."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return True  # cannot tell: torch itself must answer
    return _GPU_BUILD.search(text) is not None


def torch_has_cuda() -> bool:
    """Whether torch can run on a CUDA device (imports torch only for a GPU build)."""
    if "torch" not in sys.modules and not _torch_gpu_build():
        return False
    import torch

    return bool(torch.cuda.is_available())


def check_granted(requested: list[str], granted: list[str], *, device: str) -> bool:
    """Say so when an accelerator was requested but onnxruntime did not grant it.

    A warning when nothing else can use the GPU either (torch has no CUDA); when torch has
    CUDA, the batched path's torch backend will run the model there (``select_runner``).
    Returns True when the session runs on an accelerator."""
    on_gpu = any(p in GPU_PROVIDERS for p in granted)
    if any(p != CPU_PROVIDER for p in requested) and not on_gpu:
        asked = ", ".join(p for p in requested if p != CPU_PROVIDER)
        if torch_has_cuda():
            log.info("device=%s asked for %s; onnxruntime runs this model on the CPU only", device, asked)
        else:
            log.warning(
                "device=%s asked for %s but onnxruntime runs this model on the CPU only (available "
                "providers: %s) and torch has no CUDA either; inference will be much slower. "
                "Install a CUDA build of torch (or 'streammat[gpu]' with matching CUDA/cuDNN libraries).",
                device,
                asked,
                ", ".join(_available()),
            )
    return on_gpu


@dataclass(frozen=True)
class RunnerChoice:
    """Which runner runs the graph, on which device, and why."""

    runner: Runner
    #: "cpu" or "cuda:N" (a torch device string)
    device: str
    reason: str

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def describe(self) -> str:
        return f"{self.runner} on {self.device} ({self.reason})"


def _device_id(inner: Any) -> int:
    try:
        opts = inner.get_provider_options()
    except Exception:  # noqa: BLE001 - older/foreign sessions
        return 0
    for p in GPU_PROVIDERS:
        value = opts.get(p, {}).get("device_id")
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


def select_runner(session: Any, device: str = "auto", backend: str = "auto") -> RunnerChoice:
    """The runner for ``session``'s graph (see the module docstring). Pure: logs nothing;
    the caller logs the choice once, when the runner is built."""
    check_device(device)
    check_backend(backend)
    if device == "cpu":
        if backend == "torch":
            return RunnerChoice("torch", "cpu", "backend=torch and device=cpu were requested")
        return RunnerChoice("ort-cpu", "cpu", "device=cpu was requested")
    granted = list(session.inner_session.get_providers())
    ort_gpu = next((p for p in granted if p in GPU_PROVIDERS), None)
    torch_cuda = torch_has_cuda()
    if backend == "torch":
        if torch_cuda:
            return RunnerChoice("torch", "cuda:0", "backend=torch was requested and torch has CUDA")
        return RunnerChoice("torch", "cpu", "backend=torch was requested but torch has no CUDA")
    if ort_gpu and torch_cuda:
        dev = _device_id(session.inner_session)
        return RunnerChoice("ort-cuda", f"cuda:{dev}", f"onnxruntime granted {ort_gpu} and torch has CUDA")
    if ort_gpu:
        # onnxruntime copies host arrays to the GPU and back on every run: a host round trip
        return RunnerChoice("ort-cpu", "cpu", f"onnxruntime granted {ort_gpu} but torch has no CUDA")
    if backend == "auto" and torch_cuda:
        return RunnerChoice("torch", "cuda:0", f"onnxruntime runs on {', '.join(granted)} only; torch has CUDA")
    why = "backend=ort was requested" if backend == "ort" else "torch has no CUDA"
    return RunnerChoice("ort-cpu", "cpu", f"onnxruntime runs on {', '.join(granted)}; {why}")

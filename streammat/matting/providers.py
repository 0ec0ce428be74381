"""Execution providers for ``--device cpu|cuda|auto`` and a loud check of what was granted.

``onnxruntime.get_available_providers()`` lists CUDA whenever onnxruntime-gpu is installed,
even when the CUDA/cuDNN libraries it needs are missing; the session then silently runs
on the CPU. We compare what was asked for with what the session actually got.
"""

from __future__ import annotations

import logging
from typing import Literal

from ..errors import ConfigError, ModelError

log = logging.getLogger(__name__)

Device = Literal["cpu", "cuda", "tensorrt", "auto"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt")

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TRT = "TensorrtExecutionProvider"


def _available() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError("onnxruntime is not installed: pip install 'streammat[cpu]' (or 'streammat[gpu]')") from exc
    return list(ort.get_available_providers())


def providers_for(device: str) -> list[str]:
    """The provider list to request for ``device``. ``auto`` prefers CUDA when listed."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    available = _available()
    if device == "cpu":
        return [_CPU]
    if device == "tensorrt":
        return [_TRT, _CUDA, _CPU]
    if device == "cuda":
        return [_CUDA, _CPU]
    return [_CUDA, _CPU] if _CUDA in available else [_CPU]


def wants_accelerator(providers: list[str]) -> bool:
    return any(p != _CPU for p in providers)


def check_granted(requested: list[str], granted: list[str], *, device: str) -> bool:
    """Log a loud warning when an accelerator was requested but not granted.

    Returns True when the session runs on an accelerator."""
    on_accel = any(p in (_CUDA, _TRT) for p in granted)
    if wants_accelerator(requested) and not on_accel:
        log.warning(
            "device=%s asked for %s but onnxruntime runs this model on the CPU only "
            "(available providers: %s). Install 'streammat[gpu]' with matching CUDA/cuDNN "
            "libraries; inference will be much slower.",
            device,
            ", ".join(p for p in requested if p != _CPU),
            ", ".join(_available()),
        )
    return on_accel

"""The CUDA path of the batched matter: device tensors end to end, ONNX through IOBinding.

With CUDA, a batch is uploaded once as a torch tensor; resizing and normalisation run on
the device (``streammat.matting.batched`` does them with torch ops on whatever device the
tensor is on); the ONNX graph reads its input from, and writes its output into, torch
device memory bound with ``IOBinding``; only the final ``(B,H,W)`` uint8 alpha comes back.

The path is chosen only when both hold (``select_backend``):

- the onnxruntime session really got ``CUDAExecutionProvider`` (or TensorRT, which runs on
  CUDA memory too) — onnxruntime silently falls back to the CPU when the CUDA libraries
  are missing, so the *granted* providers are checked, not the requested ones;
- ``torch.cuda.is_available()`` (a CPU-only torch build cannot hold device tensors).

Otherwise the CPU path runs, and the reason is logged (a warning when CUDA was asked for).
This module cannot be exercised on a machine without a GPU; it is kept small on purpose.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["BackendChoice", "select_backend", "CudaRunner"]

log = logging.getLogger(__name__)

_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


@dataclass(frozen=True)
class BackendChoice:
    """Where the batched matter runs, and why."""

    backend: Literal["cpu", "cuda"]
    reason: str
    device_id: int = 0


def _device_id(inner: Any) -> int:
    try:
        opts = inner.get_provider_options()
    except Exception:  # noqa: BLE001 - older/foreign sessions
        return 0
    for p in _GPU_PROVIDERS:
        value = opts.get(p, {}).get("device_id")
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


def select_backend(session: Any, device: str = "auto") -> BackendChoice:
    """Pick ``cuda`` only when the session runs on CUDA *and* torch has CUDA; say why."""
    if device == "cpu":
        return BackendChoice("cpu", "device=cpu was requested")
    asked = device in ("cuda", "tensorrt")
    granted = list(session.inner_session.get_providers())
    if not any(p in granted for p in _GPU_PROVIDERS):
        reason = f"the onnxruntime session runs on {', '.join(granted)}"
        if asked:  # create_session already warned loudly about the provider fallback
            log.info("device=%s: %s, not CUDA; the batched matter runs on the CPU", device, reason)
        return BackendChoice("cpu", reason)
    if not torch.cuda.is_available():
        reason = f"torch.cuda.is_available() is False (torch {torch.__version__})"
        log.warning(
            "onnxruntime runs on CUDA but %s: pre/post-processing runs on the CPU and every "
            "batch makes a host round trip. Install a CUDA build of torch.",
            reason,
        )
        return BackendChoice("cpu", reason)
    dev = _device_id(session.inner_session)
    return BackendChoice("cuda", f"onnxruntime granted {granted[0]} and torch has CUDA device {dev}", dev)


class CudaRunner:
    """Run the first output of an ONNX session on CUDA tensors through IOBinding.

    ``__call__(x)`` takes a contiguous float32 CUDA tensor (the whole batch) and returns
    the first graph output as a CUDA tensor. A graph with a fixed batch dimension runs
    once per chunk. Symbolic output dimensions other than the batch are taken from the
    input's spatial size (every supported family returns a mask at its input size)."""

    def __init__(self, inner: Any, *, device_id: int = 0, layout: str = "NCHW") -> None:
        self.inner = inner
        self.device_id = device_id
        self.device = torch.device("cuda", device_id)
        self.layout = layout
        inp, out = inner.get_inputs()[0], inner.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.output_dims = list(out.shape)

    def _out_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        n = x.shape[0]
        hw = x.shape[2:4] if self.layout == "NCHW" else x.shape[1:3]
        dims = list(self.output_dims)
        if len(dims) != 4:
            raise ValueError(f"expected a 4-d model output, got {dims}")
        guess = [n, 1, hw[0], hw[1]] if self.layout == "NCHW" else [n, hw[0], hw[1], 1]
        pairs = enumerate(zip(dims, guess, strict=True))
        return tuple(d if isinstance(d, int) and i > 0 else g for i, (d, g) in pairs)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        y = torch.empty(self._out_shape(x), dtype=torch.float32, device=self.device)
        binding = self.inner.io_binding()
        binding.bind_input(
            self.input_name,
            device_type="cuda",
            device_id=self.device_id,
            element_type=np.float32,
            shape=tuple(x.shape),
            buffer_ptr=x.data_ptr(),
        )
        binding.bind_output(
            self.output_name,
            device_type="cuda",
            device_id=self.device_id,
            element_type=np.float32,
            shape=tuple(y.shape),
            buffer_ptr=y.data_ptr(),
        )
        # torch wrote x on its current stream; onnxruntime uses its own: order them
        torch.cuda.current_stream(self.device).synchronize()
        self.inner.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed_batch is None or x.shape[0] == self.fixed_batch:
            return self._run(x)
        parts = []
        for i in range(0, x.shape[0], self.fixed_batch):
            chunk = x[i : i + self.fixed_batch]
            short = self.fixed_batch - chunk.shape[0]
            if short:  # the last chunk: pad with its last entry, drop the result
                chunk = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])])
            parts.append(self._run(chunk)[: self.fixed_batch - short])
        return torch.cat(parts)

"""The runners that run a model graph, side by side: ``runner(x) -> first graph output``.

Each takes the batch's model input as float32 and returns the graph's first output as
float32 in the same kind of memory:

- ``OrtCpuRunner``: onnxruntime on host (numpy) arrays; one run per batch when the batch
  dimension is dynamic, one run per fixed-size chunk otherwise. It needs no torch;
- ``OrtCudaRunner``: onnxruntime's CUDA provider reading and writing torch device memory
  through IOBinding, so the tensors never leave the GPU;
- ``TorchRunner``: the graph imported as a torch module (``models.onnx_torch``), on CUDA
  in half precision where the masks stay within ``MAX_MEAN_LEVELS``/``MAX_LEVELS`` of
  float32 (checked once on a probe image, else float32), optionally replayed as CUDA graphs;
  on the CPU it takes and returns host arrays, as ``OrtCpuRunner`` does.

torch is imported by the torch and CUDA runners only.

``build_runner`` turns ``device``/``backend`` into one of them through
``providers.select_runner``, falls back to onnxruntime when the torch importer cannot
take the graph, and logs the choice and its reason once.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from .providers import GPU_PROVIDERS, RunnerChoice, select_runner, torch_has_cuda

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_LEVELS",
    "MAX_MEAN_LEVELS",
    "mask_difference",
    "OrtCpuRunner",
    "OrtCudaRunner",
    "TorchRunner",
    "build_runner",
    "pick_dtype",
    "probe_frame",
]

log = logging.getLogger(__name__)

#: how far a half-precision run's uint8 masks may stray from float32's (mean and max |Δ|)
MAX_MEAN_LEVELS = 1.0
MAX_LEVELS = 8
#: half-precision formats tried on CUDA, best first (torch dtype names)
_HALF_DTYPES = ("float16", "bfloat16")
#: distinct input shapes for which a TorchRunner keeps a captured CUDA graph
_MAX_GRAPHS = 4


class OrtCpuRunner:
    """First output of an onnxruntime session on host arrays."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        inp = inner.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = inner.get_outputs()[0].name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._buf: np.ndarray | None = None

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None or arr.shape[0] == self.fixed_batch:
            return self.inner.run([self.output_name], {self.input_name: arr})[0]
        k = self.fixed_batch
        shape = (k, *arr.shape[1:])
        if self._buf is None or self._buf.shape != shape:
            self._buf = np.empty(shape, dtype=np.float32)
        parts = []
        for i in range(0, arr.shape[0], k):
            m = min(k, arr.shape[0] - i)
            self._buf[:m] = arr[i : i + m]
            if m < k:  # the graph's batch is fixed: fill the chunk, drop the extra results
                self._buf[m:] = arr[i + m - 1]
            parts.append(self.inner.run([self.output_name], {self.input_name: self._buf})[0][:m])
        return np.concatenate(parts)


class OrtCudaRunner:
    """First output of an onnxruntime CUDA session on torch CUDA tensors, through IOBinding.

    Symbolic output dimensions other than the batch are taken from the input's spatial
    size (every supported family returns a mask at its input size)."""

    def __init__(self, inner: Any, *, device_id: int = 0, layout: str = "NCHW") -> None:
        import torch

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
        import torch

        x = x.contiguous()
        y = torch.empty(self._out_shape(x), dtype=torch.float32, device=self.device)
        binding = self.inner.io_binding()
        for bind, name, t in ((binding.bind_input, self.input_name, x), (binding.bind_output, self.output_name, y)):
            bind(
                name,
                device_type="cuda",
                device_id=self.device_id,
                element_type=np.float32,
                shape=tuple(t.shape),
                buffer_ptr=t.data_ptr(),
            )
        # torch wrote x on its current stream; onnxruntime uses its own: order them
        torch.cuda.current_stream(self.device).synchronize()
        self.inner.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.fixed_batch is None or x.shape[0] == self.fixed_batch:
            return self._run(x)
        parts = []
        for i in range(0, x.shape[0], self.fixed_batch):
            chunk = x[i : i + self.fixed_batch]
            short = self.fixed_batch - chunk.shape[0]
            if short:  # the graph's batch is fixed: fill the chunk, drop the extra results
                chunk = torch.cat([chunk, chunk[-1:].expand(short, *chunk.shape[1:])])
            parts.append(self._run(chunk)[: self.fixed_batch - short])
        return torch.cat(parts)


class TorchRunner:
    """The graph as a torch module on ``device`` in ``dtype``; float32 out, as a host array
    when the input was one.

    ``cuda_graphs``: capture one CUDA graph per input shape (up to ``_MAX_GRAPHS``) and
    replay it, which removes the per-operator launch cost of the interpreted module. A
    capture that fails is logged once and the module runs eagerly from then on."""

    def __init__(
        self, module: torch.nn.Module, *, device: torch.device, dtype: torch.dtype, cuda_graphs: bool = False
    ) -> None:
        self.device, self.dtype = device, dtype
        self.module = module.eval().to(device=device, dtype=dtype)
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: Any) -> Any:
        import torch

        host = isinstance(x, np.ndarray)
        with torch.no_grad():
            x = (torch.from_numpy(x) if host else x).to(self.device, self.dtype, non_blocking=True)
            y = (self._replay(x) if self.cuda_graphs else self.module(x)).to(torch.float32)
        return y.cpu().numpy() if host else y

    def _replay(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= _MAX_GRAPHS:
                return self.module(x)
            try:
                entry = self._graphs[key] = self._capture(x)
            except Exception as exc:  # noqa: BLE001 - capture limits differ per build
                log.warning("CUDA graph capture failed (%s); running the model eagerly", exc)
                self.cuda_graphs = False
                return self.module(x)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()  # the next replay overwrites static_out

    def _capture(self, x: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor]:
        import torch

        static_in = x.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up runs off the capture, as torch asks
            for _ in range(2):
                self.module(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(static_in)
        return graph, static_in, static_out


def probe_frame(height: int, width: int) -> torch.Tensor:
    """A deterministic ``(1,H,W,3)`` uint8 image (gradient, a bright disc, noise) for the
    one-off precision check: smooth areas and edges, like a frame with a person."""
    import torch

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 1.0 - xx / width], axis=-1) * 160.0
    disc = (yy - 0.55 * height) ** 2 + (xx - 0.5 * width) ** 2 < (0.3 * min(height, width)) ** 2
    img[disc] += 80.0
    img += np.random.default_rng(0).normal(0.0, 6.0, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)[None])


def mask_difference(a: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    """The mean and the largest difference, in levels, between two uint8 masks."""
    import torch

    diff = (a.to(torch.int16) - b.to(torch.int16)).abs()
    return diff.float().mean().item(), int(diff.max().item())


def pick_dtype(
    module: torch.nn.Module,
    device: torch.device,
    probe: torch.Tensor,
    judge: Callable[[torch.Tensor], torch.Tensor],
    candidates: tuple[torch.dtype, ...] | None = None,
) -> tuple[torch.dtype, str]:
    """The first of ``candidates`` (default: float16, bfloat16) whose masks of ``probe`` stay
    within ``MAX_MEAN_LEVELS`` and ``MAX_LEVELS`` of float32's, else float32; and a note
    saying how it went."""
    import torch

    if candidates is None:
        candidates = tuple(getattr(torch, name) for name in _HALF_DTYPES)
    probe = probe.to(device)
    reference = judge(TorchRunner(module, device=device, dtype=torch.float32)(probe))
    for dtype in candidates:  # on copies: casting the module itself down would lose its weights
        masks = judge(TorchRunner(copy.deepcopy(module), device=device, dtype=dtype)(probe))
        mean, worst = mask_difference(masks, reference)
        if mean <= MAX_MEAN_LEVELS and worst <= MAX_LEVELS:
            return dtype, f"{dtype} (probe: mean {mean:.2f}, max {worst} levels from float32)"
    return torch.float32, "float32 (half precision moved the probe's mask too far)"


def _graph_source(inner: Any) -> Any:
    """The ONNX graph an onnxruntime session was created from (its path or bytes)."""
    source = getattr(inner, "_model_path", None) or getattr(inner, "_model_bytes", None)
    if source is None:
        raise ModelError("the onnxruntime session does not say which ONNX graph it runs")
    return source


def _torch_runner(
    session: Any, choice: RunnerChoice, probe: Any, judge: Any, cuda_graphs: bool
) -> tuple[TorchRunner, RunnerChoice]:
    import torch

    try:
        from ..models.onnx_torch import load_onnx_module
    except ImportError as exc:  # pragma: no cover - onnx is a dependency
        raise ModelError(f"the ONNX importer needs the onnx package ({exc})") from exc
    module = load_onnx_module(_graph_source(session.inner_session))
    device = torch.device(choice.device)
    if device.type != "cuda":  # half precision is slower than float32 on CPUs
        dtype, why = torch.float32, "float32 on the CPU"
    elif probe is None or judge is None:
        dtype, why = torch.float32, "float32 (no probe to check half precision with)"
    else:
        dtype, why = pick_dtype(module, device, probe(), judge)
    runner = TorchRunner(module, device=device, dtype=dtype, cuda_graphs=cuda_graphs)
    return runner, replace(choice, reason=f"{choice.reason}; {why}")


def build_runner(
    session: Any,
    *,
    device: str = "auto",
    backend: str = "auto",
    layout: str = "NCHW",
    probe: Callable[[], torch.Tensor] | None = None,
    judge: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cuda_graphs: bool = False,
    name: str = "model",
) -> tuple[Any, RunnerChoice]:
    """The runner for ``session``'s graph and why it was chosen (logged once, here).

    ``probe`` (a function that makes a model input) and ``judge`` (raw output -> uint8
    masks) let the torch backend check half precision on CUDA. When the torch importer cannot take the graph,
    onnxruntime runs it, with a warning that names the reason."""
    choice = select_runner(session, device, backend)
    runner: Any = None
    warned = False
    if choice.runner == "torch":
        try:
            runner, choice = _torch_runner(session, choice, probe, judge, cuda_graphs)
        except ModelError as exc:
            fallback = select_runner(session, device, "ort")
            log.warning("%s: the torch backend cannot run this graph (%s); using %s", name, exc, fallback.runner)
            choice, warned = replace(fallback, reason="the torch backend cannot run this graph"), True
    if runner is None and choice.runner == "ort-cuda":
        device_id = int(choice.device.partition(":")[2] or 0)
        runner = OrtCudaRunner(session.inner_session, device_id=device_id, layout=layout)
    elif runner is None:
        runner = OrtCpuRunner(session.inner_session)
    # a warning when a GPU is there but this runner does not use it; when there is none at
    # all, create_session has already warned
    granted = session.inner_session.get_providers()
    gpu_present = any(p in GPU_PROVIDERS for p in granted) or torch_has_cuda()
    missed = device in ("cuda", "tensorrt") and not choice.on_cuda and gpu_present and not warned
    log.log(
        logging.WARNING if missed else logging.INFO,
        "%s: device=%s backend=%s runs %s",
        name,
        device,
        backend,
        choice.describe(),
    )
    return runner, choice

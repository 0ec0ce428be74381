"""Import an ONNX graph as a torch module (the model's torch execution backend).

Why our own importer: the maintained converter (onnx2torch) imports torchvision, and
torchvision wheels do not import beside every torch build (the CPU build pinned here, the
CUDA builds of GPU machines), so depending on it would make the backend fail exactly
where it is needed. The graphs streammat runs (the selfie graph its TfLite importer
writes, rembg's u2net/isnet families) need a few dozen operators (``OPS``: ``_torch_ops`` and ``_torch_layers``).

``OnnxModule(model)`` keeps the graph as a list of steps and interprets it in ``forward``;
the float initializers are buffers, so ``module.to(device, dtype)`` moves and casts the
weights. Values computed from shapes only (``Shape`` → ``Gather`` → ``Concat`` → a Resize
size) stay on the host as small CPU tensors, so the run never waits on the device to read
a shape: between the input and the output no value makes a host round trip. Only the
graph's first output is computed (nodes that do not feed it are dropped). An operator
without an implementation is a ``ModelError`` naming it, raised when the module is built.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError
from ._torch_layers import LAYER_OPS
from ._torch_ops import HOST_INPUTS, TENSOR_OPS, OpContext

__all__ = ["OnnxModule", "load_onnx_module", "supported_onnx_ops"]

log = logging.getLogger(__name__)

OPS = {**TENSOR_OPS, **LAYER_OPS}

# where a step reads one input from
_COMPUTED, _WEIGHT, _HOST, _NONE = 0, 1, 2, 3


@dataclass
class _Step:
    op_type: str
    inputs: list[tuple[int, str]]
    outputs: list[str]
    attrs: dict[str, Any]
    #: True when the node depends on the graph input (runs on the device, in the run's dtype)
    data: bool
    #: computed values whose last use is this step (freed after it)
    free: list[str]


def supported_onnx_ops() -> list[str]:
    return sorted(OPS)


def _attr(attr: Any) -> Any:
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if hasattr(value, "data_type"):  # a TensorProto
        return torch.from_numpy(np.array(numpy_helper.to_array(value)))
    if isinstance(value, bytes):
        return value.decode()
    return value


def _needed(nodes: list[Any], output: str) -> list[Any]:
    """The nodes that the value ``output`` depends on, in graph order."""
    wanted, keep = {output}, []
    for node in reversed(nodes):
        if any(o in wanted for o in node.output):
            keep.append(node)
            wanted.update(i for i in node.input if i)
    return keep[::-1]


class OnnxModule(torch.nn.Module):
    """The first output of an ONNX graph as a torch module: ``forward(x) -> tensor``."""

    def __init__(self, model: Any, *, name: str = "onnx") -> None:
        super().__init__()
        from onnx import numpy_helper

        graph = model.graph
        self.name = name
        self.opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
        consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        nodes = []
        for node in graph.node:
            if node.op_type == "Constant":  # folded: a constant is a weight like any other
                (attr,) = node.attribute
                value = _attr(attr)
                consts[node.output[0]] = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
            else:
                nodes.append(node)
        inputs = [i.name for i in graph.input if i.name not in consts]
        if len(inputs) != 1:
            raise ModelError(f"{name}: expected a graph with one input, got {inputs}")
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        nodes = _needed(nodes, self.output_name)
        missing = sorted({n.op_type for n in nodes if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
        if missing:
            raise ModelError(f"{name}: no torch implementation of ONNX operator(s) {', '.join(missing)}")
        self._host: dict[str, torch.Tensor] = {k: torch.from_numpy(np.array(v)) for k, v in consts.items()}
        self._weights: dict[str, str] = {}  # ONNX name -> buffer attribute
        data = {self.input_name}
        self.steps: list[_Step] = []
        for node in nodes:
            is_data = node.op_type != "Shape" and any(i in data for i in node.input)
            if is_data:
                data.update(node.output)
            host_positions = HOST_INPUTS.get(node.op_type, ())
            refs = [self._ref(i, pos, is_data, host_positions) for pos, i in enumerate(node.input)]
            attrs = {a.name: _attr(a) for a in node.attribute}
            attrs["_outputs"] = len(node.output)
            self.steps.append(_Step(node.op_type, refs, list(node.output), attrs, is_data, []))
        self._plan_frees()
        log.debug("%s: %d steps, %d weights", name, len(self.steps), len(self._weights))

    def _ref(self, value: str, pos: int, is_data: bool, host_positions: tuple[int, ...]) -> tuple[int, str]:
        if not value:
            return (_NONE, "")
        if value not in self._host:
            return (_COMPUTED, value)
        const = self._host[value]
        if not is_data or pos in host_positions or not const.is_floating_point():
            return (_HOST, value)
        if value not in self._weights:
            attr = f"w{len(self._weights)}"
            self.register_buffer(attr, const.clone(), persistent=False)
            self._weights[value] = attr
        return (_WEIGHT, self._weights[value])

    def _plan_frees(self) -> None:
        last: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for kind, value in step.inputs:
                if kind == _COMPUTED:
                    last[value] = i
        for value, i in last.items():
            if value != self.output_name:
                self.steps[i].free.append(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if x.is_floating_point() else torch.float32
        data_ctx = OpContext(float_dtype=dtype, device=x.device, opset=self.opset)
        # shape arithmetic: exact float32 on the host, whatever the run's precision
        host_ctx = OpContext(float_dtype=torch.float32, device=torch.device("cpu"), opset=self.opset)
        env: dict[str, Any] = {self.input_name: x}
        for index, step in enumerate(self.steps):
            args = []
            for kind, value in step.inputs:
                if kind == _COMPUTED:
                    arg = env[value]
                    if step.data and isinstance(arg, torch.Tensor) and arg.device != x.device and arg.dim() > 0:
                        arg = arg.to(x.device, dtype if arg.is_floating_point() else arg.dtype)
                    args.append(arg)
                elif kind == _WEIGHT:
                    args.append(getattr(self, value))
                elif kind == _HOST:
                    args.append(self._host[value])
                else:
                    args.append(None)
            try:
                result = OPS[step.op_type](data_ctx if step.data else host_ctx, args, step.attrs)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"{self.name}: {step.op_type} (node {index}): {exc}".splitlines()[0]) from exc
            if isinstance(result, tuple):
                env.update(zip(step.outputs, result, strict=False))
            else:
                env[step.outputs[0]] = result
            for value in step.free:
                env.pop(value, None)
        return env[self.output_name]


def load_onnx_module(source: Any, *, name: str | None = None) -> OnnxModule:
    """An ``OnnxModule`` from a ModelProto, serialized bytes or a path to an ``.onnx`` file."""
    import onnx

    if isinstance(source, (str, Path)):
        try:
            model = onnx.load(str(source))
        except Exception as exc:
            raise ModelError(f"{source}: cannot read the ONNX graph: {exc}".splitlines()[0]) from exc
        name = name or Path(source).stem
    elif isinstance(source, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(source))
    else:
        model = source
    return OnnxModule(model, name=name or model.graph.name or "onnx")

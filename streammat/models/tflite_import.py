"""Import a TensorFlow Lite graph into ONNX (the operators MediaPipe's selfie models use).

The flatbuffer is parsed with the ``tflite`` package. The ONNX graph keeps the TfLite
NHWC layout at its boundary (input ``(N,H,W,C)``, outputs ``(N,H,W,C)``) and runs NCHW
inside: one Transpose after the input and one before each output. The batch dimension
is dynamic (``N``), so a whole batch runs in one call.

Weights stored as fp16 behind DEQUANTIZE ops are folded into float32 initializers. An
operator without a converter (they live in ``_ops.py``) is a ``ModelError`` that names it.

Supported: DEQUANTIZE, CONV_2D, DEPTHWISE_CONV_2D, HARD_SWISH, RELU, AVERAGE_POOL_2D, MEAN,
LOGISTIC, MUL, ADD, RESIZE_BILINEAR and MediaPipe's custom ``Convolution2DTransposeBias``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError
from ._ops import ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1, DTYPES, OPS

if TYPE_CHECKING:
    import onnx

__all__ = ["IMPORTER_VERSION", "PRODUCER", "import_tflite", "convert_tflite_file", "supported_operators"]

log = logging.getLogger(__name__)

#: stamped on every converted graph (``producer_version``); a stored built-in model with
#: another stamp is converted again from its TfLite source (``store.ensure_available``).
#: 2: whole-number bilinear resizes as constant scales, channel means as GlobalAveragePool
IMPORTER_VERSION = "2"
#: the ``producer_name`` of the graphs it writes
PRODUCER = "streammat.tflite_import"


class Importer:
    """One conversion: the parsed flatbuffer, the constants found so far and the ONNX nodes
    and initializers emitted; converters in ``_ops`` call ``value``/``init``/``node``/``emit``."""

    def __init__(self, data: bytes, *, name: str, opset: int) -> None:
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator

        try:
            self.model = tflite.Model.GetRootAsModel(data, 0)
            if self.model.SubgraphsLength() != 1:
                raise ModelError(f"expected a TfLite model with 1 subgraph, got {self.model.SubgraphsLength()}")
            self.graph = self.model.Subgraphs(0)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"not a TfLite flatbuffer: {exc}") from exc
        self.tflite = tflite
        self.opnames = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        self.custom_code = BuiltinOperator.CUSTOM
        self.name, self.opset = name, opset
        self.consts: dict[int, np.ndarray] = {}  # tensor index -> value, TfLite layout
        self.values: dict[int, str] = {}  # tensor index -> ONNX value name (NCHW for 4-D)
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        for t in range(self.graph.TensorsLength()):
            tensor = self.graph.Tensors(t)
            buf = self.model.Buffers(tensor.Buffer())
            if buf is not None and buf.DataLength() > 0:
                self.consts[t] = self._buffer_array(tensor, buf)

    # -- tensors ---------------------------------------------------------------------
    def _buffer_array(self, tensor: Any, buf: Any) -> np.ndarray:
        dtype = DTYPES.get(tensor.Type())
        if dtype is None:
            raise ModelError(f"tensor {tensor.Name().decode()!r}: unsupported TfLite type {tensor.Type()}")
        shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        return np.frombuffer(buf.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape)

    def shape(self, t: int) -> tuple[int, ...]:
        tensor = self.graph.Tensors(t)
        return tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()

    def const(self, t: int, what: str) -> np.ndarray:
        if t not in self.consts:
            raise ModelError(f"{what}: expected a constant tensor (t{t}), got a computed one")
        return self.consts[t]

    def init(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = f"c{len(self.inits)}_{hint}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def value(self, t: int, like4d: bool = False) -> str:
        """ONNX name of a tensor; constants become initializers in the NCHW world."""
        if t in self.values:
            return self.values[t]
        if t in self.consts:
            c = self.consts[t].astype(np.float32) if self.consts[t].dtype == np.float16 else self.consts[t]
            if c.ndim == 4:
                c = c.transpose(0, 3, 1, 2)
            elif c.ndim == 1 and like4d and c.size > 1:
                c = c.reshape(-1, 1, 1)  # NHWC per-channel broadcast -> NCHW
            return self.init(c, f"t{t}")
        raise ModelError(f"tensor t{t} is used before it is computed")

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=f"n{len(self.nodes)}_{op_type}", **attrs))
        return output

    def emit(self, op_type: str, inputs: list[str], out: int, act: int = ACT_NONE, **attrs: Any) -> None:
        """One ONNX node producing tensor ``out``, followed by its fused activation."""
        name = f"t{out}"
        if act == ACT_NONE:
            self.values[out] = self.node(op_type, inputs, name, **attrs)
            return
        pre = self.node(op_type, inputs, name + "_pre", **attrs)
        if act == ACT_RELU:
            self.values[out] = self.node("Relu", [pre], name)
        elif act in (ACT_RELU6, ACT_RELU_N1_TO_1):
            lo, hi = (0.0, 6.0) if act == ACT_RELU6 else (-1.0, 1.0)
            lo_n = self.init(np.array(lo, np.float32), "lo")
            hi_n = self.init(np.array(hi, np.float32), "hi")
            self.values[out] = self.node("Clip", [pre, lo_n, hi_n], name)
        else:
            raise ModelError(f"{op_type}: unsupported fused activation function {act}")

    def options(self, op: Any, cls_name: str) -> Any:
        table = op.BuiltinOptions()
        cls = getattr(self.tflite, cls_name)
        opts = cls()
        if table is None:
            raise ModelError(f"operator without its {cls_name}")
        opts.Init(table.Bytes, table.Pos)
        return opts

    # -- graph -----------------------------------------------------------------------
    def op_name(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == self.custom_code:
            return (code.CustomCode() or b"?").decode()
        return self.opnames.get(builtin, f"BUILTIN_{builtin}")

    def run(self) -> onnx.ModelProto:
        import onnx
        from onnx import TensorProto, helper

        g = self.graph
        graph_inputs, graph_outputs = [], []
        for t in g.InputsAsNumpy():
            shape = self.shape(int(t))
            tensor = g.Tensors(int(t))
            if len(shape) != 4 or tensor.Type() != 0:
                raise ModelError(f"expected a 4-D float32 NHWC input, got {shape} of type {tensor.Type()}")
            name = tensor.Name().decode()
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape[1:]]))
            self.values[int(t)] = self.node("Transpose", [name], f"t{int(t)}", perm=[0, 3, 1, 2])
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            opname = self.op_name(op)
            handler = OPS.get(opname)
            if handler is None:
                raise ModelError(
                    f"unsupported TfLite operator {opname} (operator #{i}); supported: {', '.join(sorted(OPS))}"
                )
            ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(x) for x in op.OutputsAsNumpy()]
            try:
                handler(self, op, ins, outs)
            except ModelError as exc:
                raise ModelError(f"{opname} (operator #{i}): {exc}") from exc
        for t in g.OutputsAsNumpy():
            shape = self.shape(int(t))
            name = g.Tensors(int(t)).Name().decode()
            if len(shape) != 4:
                raise ModelError(f"expected a 4-D NHWC output, got {shape}")
            self.node("Transpose", [self.value(int(t))], name, perm=[0, 2, 3, 1])
            graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape[1:]]))
        graph = helper.make_graph(self.nodes, self.name, graph_inputs, graph_outputs, initializer=self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name=PRODUCER,
            producer_version=IMPORTER_VERSION,
        )
        model.ir_version = 8
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:
            raise ModelError(f"the converted ONNX model does not pass onnx.checker: {exc}") from exc
        return model


def supported_operators() -> list[str]:
    """The TfLite operator names (builtin enum names, or custom codes) the importer converts."""
    return sorted(OPS)


def import_tflite(data: bytes, *, name: str = "tflite", opset: int = 17) -> onnx.ModelProto:
    """Convert a TfLite flatbuffer to an ONNX ``ModelProto`` (checked with onnx.checker).

    Raises ``ModelError`` for unparsable data, unsupported operators or options."""
    model = Importer(bytes(data), name=name, opset=opset).run()
    log.debug("imported TfLite graph %s: %d ONNX nodes", name, len(model.graph.node))
    return model


def convert_tflite_file(src: str | Path, dst: str | Path, *, name: str | None = None) -> Path:
    """Convert the TfLite file ``src`` and write the ONNX model to ``dst`` (atomically)."""
    src, dst = Path(src), Path(dst)
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise ModelError(f"{src}: cannot read: {exc.strerror}") from exc
    model = import_tflite(data, name=name or src.stem)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.part")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(dst)
    return dst

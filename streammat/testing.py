"""Test helpers that ship with streammat, for its own tests and for users' tests.

- ``tiny_u2net_model()``: a few-KB ONNX model with rembg's u2net signature
  (input ``(N,3,320,320)``, seven outputs ``(N,1,320,320)``) whose mask is a smooth,
  deterministic function of the image (brightness of a blurred copy), so masks differ
  from frame to frame and comparisons are meaningful.
- ``install_model(home, name, model)``: places a model where rembg's own
  ``new_session(name)`` finds it (``<home>/models/<name>/<name>.onnx``), no network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["tiny_u2net_model", "install_model", "model_path"]


def tiny_u2net_model(size: int = 320, outputs: int = 7, *, dynamic_batch: bool = True, opset: int = 17):
    """An ONNX ``ModelProto`` with the u2net family's signature.

    mask = sigmoid(conv3x3(x) * 4): a weighted channel sum with a smoothing kernel, so
    the result depends on position and colour but stays cheap."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    batch: str | int = "N" if dynamic_batch else 1
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [batch, 3, size, size])
    k = np.full((1, 3, 3, 3), 1.0 / 27.0, dtype=np.float32)
    k[0, 0] *= 1.5  # red weighs more than blue: masks depend on colour, not just brightness
    k[0, 2] *= 0.5
    nodes = [
        helper.make_node("Conv", ["input.1", "k"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["out0"]),
    ]
    outs = [helper.make_tensor_value_info("out0", TensorProto.FLOAT, [batch, 1, size, size])]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, [batch, 1, size, size]))
    graph = helper.make_graph(
        nodes,
        "tiny_u2net",
        [x],
        outs,
        initializer=[numpy_helper.from_array(k, "k"), numpy_helper.from_array(np.array(4.0, np.float32), "gain")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def model_path(home: str | Path, name: str) -> Path:
    """Where rembg looks for model ``name`` under model home ``home``."""
    return Path(home) / "models" / name / f"{name}.onnx"


def install_model(home: str | Path, name: str, model) -> Path:
    """Write ``model`` (an ONNX ModelProto or bytes) where rembg finds ``name``."""
    path = model_path(home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model if isinstance(model, bytes | bytearray) else model.SerializeToString()
    path.write_bytes(data)
    return path

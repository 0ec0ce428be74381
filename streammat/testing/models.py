"""Tiny ONNX models with the signatures of the model families streammat knows, and
``install_model`` to place one where rembg's own ``new_session(name)`` finds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


def tiny_mask_model(
    size: tuple[int, int],
    *,
    layout: str = "NCHW",
    outputs: int = 1,
    stride: int = 8,
    sigmoid: bool = True,
    gain: float = 4.0,
    bias: float = 0.0,
    dynamic_batch: bool = True,
    opset: int = 17,
):
    """An ONNX ``ModelProto`` mapping an image to a smooth one-channel mask, cheap at 1024².

    mask = [sigmoid](gain * conv_{stride×stride, stride}(x) + bias), linearly resized back
    to ``size``: a strided colour-weighted average, so a 1024² input costs a few ms.
    ``layout="NCHW"``: input ``(N,3,H,W)``, outputs ``(N,1,H,W)`` (rembg's families);
    ``layout="NHWC"``: input ``(N,H,W,3)``, output ``(N,H,W,1)`` (the selfie models)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = size
    if h % stride or w % stride:
        raise ValueError(f"size {size} must be a multiple of stride {stride}")
    batch: str | int = "N" if dynamic_batch else 1
    k = np.empty((1, 3, stride, stride), dtype=np.float32)
    k[0, 0], k[0, 1], k[0, 2] = 1.5, 1.0, 0.5  # masks depend on colour, not just brightness
    k /= 3.0 * stride * stride
    inits = [
        numpy_helper.from_array(k, "k"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(np.array(bias, np.float32), "bias"),
        numpy_helper.from_array(np.array([1, 1, stride, stride], np.float32), "scales"),
    ]
    nodes = []
    src = "input"
    if layout == "NHWC":
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, h, w, 3])
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
        src = "nchw"
    else:
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])
    nodes += [
        helper.make_node("Conv", [src, "k"], ["c"], strides=[stride, stride]),
        helper.make_node("Mul", ["c", "gain"], ["g"]),
        helper.make_node("Add", ["g", "bias"], ["gb"]),
        helper.make_node("Resize", ["gb", "", "scales"], ["r"], mode="linear"),
    ]
    last = "r"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["r"], ["s"]))
        last = "s"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["out0"], perm=[0, 2, 3, 1]))
        out_shape = [batch, h, w, 1]
    else:
        nodes.append(helper.make_node("Identity", [last], ["out0"]))
        out_shape = [batch, 1, h, w]
    outs = [helper.make_tensor_value_info("out0", TensorProto.FLOAT, out_shape)]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["out0"], [f"out{i}"]))
        outs.append(helper.make_tensor_value_info(f"out{i}", TensorProto.FLOAT, out_shape))
    graph = helper.make_graph(nodes, "tiny_mask", [x], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_isnet_model(*, dynamic_batch: bool = True):
    """isnet-general-use / isnet-anime signature: ``(N,3,1024,1024)`` → sigmoid masks."""
    return tiny_mask_model((1024, 1024), outputs=2, dynamic_batch=dynamic_batch)


def tiny_birefnet_model(*, dynamic_batch: bool = True):
    """BiRefNet signature: ``(N,3,1024,1024)`` → raw logits (rembg applies the sigmoid)."""
    return tiny_mask_model((1024, 1024), sigmoid=False, gain=3.0, dynamic_batch=dynamic_batch)


def tiny_bria_model(*, dynamic_batch: bool = True):
    """bria-rmbg signature: ``(N,3,1024,1024)`` → ``(N,1,1024,1024)``."""
    return tiny_mask_model((1024, 1024), dynamic_batch=dynamic_batch)


def tiny_selfie_model(*, landscape: bool = False, dynamic_batch: bool = True):
    """The selfie signature: NHWC ``(N,256,256,3)`` (landscape ``(N,144,256,3)``) RGB in
    [0,1] → ``(N,H,W,1)`` sigmoid probability."""
    size = (144, 256) if landscape else (256, 256)
    return tiny_mask_model(size, layout="NHWC", gain=8.0, bias=-3.0, dynamic_batch=dynamic_batch)

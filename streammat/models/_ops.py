"""The TfLite -> ONNX operator converters behind ``tflite_import`` (one function per operator).

Each converter reads a TfLite operator (NHWC semantics) and emits ONNX nodes working on NCHW
values through the ``Importer`` it is given. ``OPS`` maps the TfLite operator name (builtin
enum name, or the custom code) to its converter.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError

if TYPE_CHECKING:
    from .tflite_import import Importer

Converter = Callable[["Importer", Any, list[int], list[int]], None]

# tflite schema TensorType -> numpy
DTYPES: dict[int, Any] = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# tflite schema ActivationFunctionType
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
# tflite schema Padding (builtin options): SAME=0, VALID=1
_SAME, _VALID = 0, 1
# TfLitePadding, the C enum the custom op's raw options use: Unknown=0, Same=1, Valid=2
_C_SAME, _C_VALID = 1, 2
# NHWC axis -> NCHW axis
NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1}


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding for one spatial axis: (before, after), extra at the end."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _dequantize(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
    q = imp.const(ins[0], "DEQUANTIZE input")
    if q.dtype == np.float16:
        imp.consts[outs[0]] = q.astype(np.float32)
        return
    quant = imp.graph.Tensors(ins[0]).Quantization()
    if quant is None or quant.ScaleLength() == 0:
        raise ModelError(f"{q.dtype} input without quantization parameters")
    scale = quant.ScaleAsNumpy().astype(np.float32)
    zero = quant.ZeroPointAsNumpy().astype(np.float32) if quant.ZeroPointLength() else np.zeros_like(scale)
    if scale.size > 1:  # per-axis
        shape = [1] * q.ndim
        shape[quant.QuantizedDimension()] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    imp.consts[outs[0]] = ((q.astype(np.float32) - zero) * scale).astype(np.float32)


def _spatial_pads(
    imp: Importer, x: int, padding: int, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int] = (1, 1)
) -> list[int]:
    _, h, w, _ = imp.shape(x)
    if padding == _VALID:
        return [0, 0, 0, 0]
    if padding != _SAME:
        raise ModelError(f"unknown padding {padding}")
    (ht, hb), (wl, wr) = tf_same_pads(h, k[0], s[0], d[0]), tf_same_pads(w, k[1], s[1], d[1])
    return [ht, wl, hb, wr]


def _conv(imp: Importer, op: Any, ins: list[int], outs: list[int], depthwise: bool) -> None:
    opts = imp.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
    w = imp.const(ins[1], "filter").astype(np.float32)
    s, d = (opts.StrideH(), opts.StrideW()), (opts.DilationHFactor(), opts.DilationWFactor())
    cin = imp.shape(ins[0])[3]
    if depthwise:  # (1,KH,KW,C*M) -> (C*M,1,KH,KW), one group per input channel
        if w.shape[3] != cin * opts.DepthMultiplier() and opts.DepthMultiplier() != 0:
            raise ModelError(f"filter {w.shape} does not match {cin} channels x {opts.DepthMultiplier()}")
        w, group = w.transpose(3, 0, 1, 2), cin
    else:  # OHWI -> OIHW
        if w.shape[3] != cin:
            raise ModelError(f"filter {w.shape} does not match {cin} input channels")
        w, group = w.transpose(0, 3, 1, 2), 1
    k = (w.shape[2], w.shape[3])
    inputs = [imp.value(ins[0]), imp.init(w, "w")]
    if len(ins) > 2 and ins[2] >= 0:
        inputs.append(imp.init(imp.const(ins[2], "bias").astype(np.float32), "b"))
    pads = _spatial_pads(imp, ins[0], opts.Padding(), k, s, d)
    imp.emit(
        "Conv",
        inputs,
        outs[0],
        opts.FusedActivationFunction(),
        kernel_shape=list(k),
        strides=list(s),
        dilations=list(d),
        pads=pads,
        group=group,
    )


def _average_pool(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
    opts = imp.options(op, "Pool2DOptions")
    _, h, w, _ = imp.shape(ins[0])
    k, s = (opts.FilterHeight(), opts.FilterWidth()), (opts.StrideH(), opts.StrideW())
    act = opts.FusedActivationFunction()
    if opts.Padding() == _VALID and k == (h, w):
        imp.emit("GlobalAveragePool", [imp.value(ins[0])], outs[0], act)
        return
    pads = _spatial_pads(imp, ins[0], opts.Padding(), k, s)
    # TfLite averages over the valid (unpadded) cells only, as ONNX's count_include_pad=0
    imp.emit(
        "AveragePool",
        [imp.value(ins[0])],
        outs[0],
        act,
        kernel_shape=list(k),
        strides=list(s),
        pads=pads,
        count_include_pad=0,
    )


def _mean(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
    opts = imp.options(op, "ReducerOptions")
    axes = [int(a) % 4 for a in np.atleast_1d(imp.const(ins[1], "axes"))]
    if len(imp.shape(ins[0])) != 4 or not opts.KeepDims():
        raise ModelError("only MEAN of a 4-D tensor with keep_dims is supported")
    nchw = sorted(NHWC_TO_NCHW[a] for a in axes)
    if nchw == [2, 3]:  # the mean of each channel: onnxruntime keeps its blocked layout for this one
        imp.emit("GlobalAveragePool", [imp.value(ins[0])], outs[0])
        return
    imp.emit("ReduceMean", [imp.value(ins[0])], outs[0], axes=nchw, keepdims=1)


def _binary(onnx_op: str, options: str) -> Converter:
    def convert(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
        act = imp.options(op, options).FusedActivationFunction() if op.BuiltinOptions() is not None else 0
        four = len(imp.shape(outs[0])) == 4
        imp.emit(onnx_op, [imp.value(ins[0], four), imp.value(ins[1], four)], outs[0], act)

    return convert


def _unary(onnx_op: str) -> Converter:
    def convert(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
        imp.emit(onnx_op, [imp.value(ins[0])], outs[0])

    return convert


def _resize_bilinear(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
    opts = imp.options(op, "ResizeBilinearOptions")
    size = [int(v) for v in imp.const(ins[1], "size")]
    if opts.AlignCorners() and opts.HalfPixelCenters():
        raise ModelError("align_corners and half_pixel_centers together")
    mode = "half_pixel" if opts.HalfPixelCenters() else "align_corners" if opts.AlignCorners() else "asymmetric"
    x = imp.value(ins[0])
    in_hw = imp.shape(ins[0])[1:3]
    whole = len(in_hw) == 2 and min(in_hw) > 0 and all(o % i == 0 for o, i in zip(size, in_hw, strict=True))
    if mode != "align_corners" and whole:
        # a whole-number factor of a known size as constant scales: the same pixels, and
        # onnxruntime runs it in its blocked (NCHWc) layout, where a computed size forces a
        # layout round trip (the selfie model's three 2x upsamplings: 10-20 % of its CPU time)
        scales = np.array([1.0, 1.0, size[0] // in_hw[0], size[1] // in_hw[1]], np.float32)
        roi = imp.init(np.zeros(0, np.float32), "roi")
        imp.emit(
            "Resize", [x, roi, imp.init(scales, "scales")], outs[0], mode="linear", coordinate_transformation_mode=mode
        )
        return
    # sizes = (N, C) of the input (dynamic batch) + the constant (H, W)
    shape = imp.node("Shape", [x], f"t{outs[0]}_shape")
    nc = imp.node(
        "Slice",
        [shape, imp.init(np.array([0], np.int64), "s0"), imp.init(np.array([2], np.int64), "s2")],
        f"t{outs[0]}_nc",
    )
    sizes = imp.node("Concat", [nc, imp.init(np.array(size, np.int64), "hw")], f"t{outs[0]}_sizes", axis=0)
    imp.emit("Resize", [x, "", "", sizes], outs[0], mode="linear", coordinate_transformation_mode=mode)


def _transpose_conv_bias(imp: Importer, op: Any, ins: list[int], outs: list[int]) -> None:
    """MediaPipe's Convolution2DTransposeBias: inputs (x, weights OHWI, bias); raw options
    (padding, stride_w, stride_h) as int32 with TfLitePadding's C enum."""
    raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
    if len(raw) < 12:
        raise ModelError(f"expected 12 bytes of custom options, got {len(raw)}")
    padding, stride_w, stride_h = struct.unpack("<3i", raw[:12])
    w = imp.const(ins[1], "weights").astype(np.float32)  # (O,KH,KW,I)
    b = imp.const(ins[2], "bias").astype(np.float32)
    _, h, wd, c = imp.shape(ins[0])
    if w.shape[3] != c or b.shape != (w.shape[0],):
        raise ModelError(f"weights {w.shape} / bias {b.shape} do not match {c} input channels")
    kh, kw = w.shape[1], w.shape[2]
    if padding == _C_SAME:
        ph = max(0, kh - (h - 1) % stride_h - 1)
        pw = max(0, kw - (wd - 1) % stride_w - 1)
    elif padding == _C_VALID:
        ph = pw = 0
    else:
        raise ModelError(f"unknown padding {padding} in custom options")
    # MediaPipe crops ph//2 at the top/left and the rest at the bottom/right
    pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]
    weights = imp.init(w.transpose(3, 0, 1, 2), "w")  # -> (I,O,KH,KW)
    imp.emit(
        "ConvTranspose",
        [imp.value(ins[0]), weights, imp.init(b, "b")],
        outs[0],
        kernel_shape=[kh, kw],
        strides=[stride_h, stride_w],
        pads=pads,
    )


OPS: dict[str, Converter] = {
    "DEQUANTIZE": _dequantize,
    "CONV_2D": lambda imp, op, i, o: _conv(imp, op, i, o, depthwise=False),
    "DEPTHWISE_CONV_2D": lambda imp, op, i, o: _conv(imp, op, i, o, depthwise=True),
    "HARD_SWISH": _unary("HardSwish"),
    "RELU": _unary("Relu"),
    "LOGISTIC": _unary("Sigmoid"),
    "AVERAGE_POOL_2D": _average_pool,
    "MEAN": _mean,
    "MUL": _binary("Mul", "MulOptions"),
    "ADD": _binary("Add", "AddOptions"),
    "RESIZE_BILINEAR": _resize_bilinear,
    "Convolution2DTransposeBias": _transpose_conv_bias,
}

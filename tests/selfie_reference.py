"""A NumPy evaluator of the MediaPipe selfie TfLite graphs, for tests only.

It walks the flatbuffer (with the ``tflite`` package) and evaluates each operator in NHWC
with NumPy in float64, following TfLite's reference kernels. It shares no code with
``streammat.models.tflite_import``: the two agree only if both read the graph right.
"""

from __future__ import annotations

import struct

import numpy as np
import tflite
from numpy.lib.stride_tricks import sliding_window_view
from tflite.BuiltinOperator import BuiltinOperator

_NP = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def _act(x: np.ndarray, code: int) -> np.ndarray:
    if code == 0:
        return x
    if code == 1:
        return np.maximum(x, 0)
    if code == 3:
        return np.clip(x, 0, 6)
    raise NotImplementedError(f"fused activation {code}")


def _opts(op, cls):
    o = cls()
    t = op.BuiltinOptions()
    o.Init(t.Bytes, t.Pos)
    return o


def _pad_same(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """Zero-pad NHWC ``x`` the way TensorFlow's SAME padding does (the odd cell at the end)."""
    pads = [(0, 0)]
    for size, kk, ss in zip(x.shape[1:3], k, s, strict=True):
        out = (size + ss - 1) // ss
        total = max((out - 1) * ss + kk - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)])


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int]) -> np.ndarray:
    """(N, Ho, Wo, C, KH, KW) views of the VALID windows of NHWC ``x``."""
    return sliding_window_view(x, k, axis=(1, 2))[:, :: s[0], :: s[1]]


def _conv(x, w, b, padding, s, depthwise):
    k = (w.shape[1], w.shape[2])
    if padding == 0:  # schema Padding.SAME
        x = _pad_same(x, k, s)
    win = _windows(x, k, s)
    if depthwise:  # w: (1, KH, KW, C)
        y = np.einsum("nhwcij,ijc->nhwc", win, w[0], optimize=True)
    else:  # w: (O, KH, KW, I)
        y = np.einsum("nhwcij,oijc->nhwo", win, w, optimize=True)
    return y + b if b is not None else y


def _resize_bilinear_half_pixel(x: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """TfLite's reference ResizeBilinear with half_pixel_centers=True, align_corners=False."""
    n, h, w, c = x.shape

    def axis(out_size, in_size):
        scale = in_size / out_size
        v = (np.arange(out_size) + 0.5) * scale - 0.5
        lo = np.maximum(np.floor(v).astype(int), 0)
        hi = np.minimum(np.ceil(v).astype(int), in_size - 1)
        return v - lo, lo, hi

    fy, y0, y1 = axis(oh, h)
    fx, x0, x1 = axis(ow, w)
    fy, fx = fy[None, :, None, None], fx[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bot = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bot * fy


def _transpose_conv_bias(x, w, b, raw):
    padding, sw, sh = struct.unpack("<3i", raw[:12])
    n, h, wd, _ = x.shape
    o, kh, kw, _ = w.shape
    ph = max(0, kh - (h - 1) % sh - 1) if padding == 1 else 0
    pw = max(0, kw - (wd - 1) % sw - 1) if padding == 1 else 0
    full = np.zeros((n, sh * (h - 1) + kh, sw * (wd - 1) + kw, o))
    for ky in range(kh):
        for kx in range(kw):  # scatter: input (y, x) lands on output (y*s + ky, x*s + kx)
            full[:, ky : ky + sh * h : sh, kx : kx + sw * wd : sw] += np.einsum("nhwi,oi->nhwo", x, w[:, ky, kx])
    oh, ow = full.shape[1] - ph, full.shape[2] - pw
    return full[:, ph // 2 : ph // 2 + oh, pw // 2 : pw // 2 + ow] + b


def run_reference(data: bytes, x: np.ndarray) -> np.ndarray:
    """Evaluate the TfLite graph ``data`` on the NHWC batch ``x``; returns the first output."""
    model = tflite.Model.GetRootAsModel(data, 0)
    g = model.Subgraphs(0)
    vals: dict[int, np.ndarray] = {}
    for t in range(g.TensorsLength()):
        tensor = g.Tensors(t)
        buf = model.Buffers(tensor.Buffer())
        if buf is not None and buf.DataLength():
            arr = np.frombuffer(buf.DataAsNumpy().tobytes(), _NP[tensor.Type()])
            vals[t] = arr.reshape(tensor.ShapeAsNumpy()).astype(np.float64 if arr.dtype.kind == "f" else arr.dtype)
    vals[int(g.InputsAsNumpy()[0])] = np.asarray(x, np.float64)
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        b = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = code.CustomCode().decode() if b == BuiltinOperator.CUSTOM else _NAMES[b]
        ins = [vals.get(int(t)) if t >= 0 else None for t in op.InputsAsNumpy()]
        if name == "DEQUANTIZE":
            y = ins[0].astype(np.float64)
        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            dw = name == "DEPTHWISE_CONV_2D"
            o = _opts(op, tflite.DepthwiseConv2DOptions if dw else tflite.Conv2DOptions)
            assert (o.DilationHFactor(), o.DilationWFactor()) == (1, 1)
            y = _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, o.Padding(), (o.StrideH(), o.StrideW()), dw)
            y = _act(y, o.FusedActivationFunction())
        elif name == "AVERAGE_POOL_2D":
            o = _opts(op, tflite.Pool2DOptions)
            assert o.Padding() == 1, "the reference only does VALID pooling"
            win = _windows(ins[0], (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW()))
            y = _act(win.mean(axis=(4, 5)), o.FusedActivationFunction())
        elif name == "MEAN":
            o = _opts(op, tflite.ReducerOptions)
            y = ins[0].mean(axis=tuple(int(a) for a in ins[1]), keepdims=bool(o.KeepDims()))
        elif name in ("ADD", "MUL"):
            cls = tflite.AddOptions if name == "ADD" else tflite.MulOptions
            act = _opts(op, cls).FusedActivationFunction() if op.BuiltinOptions() is not None else 0
            y = _act(ins[0] + ins[1] if name == "ADD" else ins[0] * ins[1], act)
        elif name == "RELU":
            y = np.maximum(ins[0], 0)
        elif name == "HARD_SWISH":
            y = ins[0] * np.clip(ins[0] + 3, 0, 6) / 6
        elif name == "LOGISTIC":
            with np.errstate(over="ignore"):
                y = 1 / (1 + np.exp(-ins[0]))
        elif name == "RESIZE_BILINEAR":
            o = _opts(op, tflite.ResizeBilinearOptions)
            assert o.HalfPixelCenters() and not o.AlignCorners()
            y = _resize_bilinear_half_pixel(ins[0], int(ins[1][0]), int(ins[1][1]))
        elif name == "Convolution2DTransposeBias":
            y = _transpose_conv_bias(ins[0], ins[1], ins[2], op.CustomOptionsAsNumpy().tobytes())
        else:
            raise NotImplementedError(name)
        vals[int(op.Outputs(0))] = y
    return vals[int(g.OutputsAsNumpy()[0])]

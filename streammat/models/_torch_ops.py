"""The ONNX operators behind ``onnx_torch`` (one small function per operator, torch semantics).

Each function takes ``(ctx, args, attrs)``: ``ctx`` (an ``OpContext``) says which float dtype
and device the node computes in and the model's opset; ``args`` are the node's inputs as
tensors (``None`` for an omitted optional input), ``attrs`` its attributes as Python values.
Inputs listed in ``HOST_INPUTS`` are read on the host (shapes, sizes, axes): they arrive as
CPU tensors, so reading them never waits on the device. ``OPS`` maps ONNX op types to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ModelError

Args = list[Any]
Op = Callable[["OpContext", Args, dict[str, Any]], Any]


@dataclass
class OpContext:
    float_dtype: torch.dtype
    device: torch.device
    opset: int


#: op type -> input positions that hold host values (shapes, axes, sizes, bounds)
HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Split": (1,),
    "Pad": (1, 2, 3),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Clip": (1, 2),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
}

# onnx.TensorProto data types -> torch
DTYPES: dict[int, torch.dtype] = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}


def ints(t: Any) -> list[int]:
    return [int(v) for v in (t.reshape(-1).tolist() if isinstance(t, torch.Tensor) else t)]


def _text(v: Any, default: str) -> str:
    return default if v is None else v.decode() if isinstance(v, bytes) else str(v)


# -- elementwise ---------------------------------------------------------------------------
def _div(ctx: OpContext, a: Args, at: dict) -> Any:
    x, y = a
    if not x.is_floating_point() and not y.is_floating_point():
        return torch.div(x, y, rounding_mode="trunc")
    return x / y


def _variadic(fn: Callable[[Any, Any], Any]) -> Op:
    def op(ctx: OpContext, a: Args, at: dict) -> Any:
        out = a[0]
        for y in a[1:]:
            out = fn(out, y)
        return out

    return op


def _unary(fn: Callable[[Any], Any]) -> Op:
    return lambda ctx, a, at: fn(a[0])


def _clip(ctx: OpContext, a: Args, at: dict) -> Any:
    lo = a[1].item() if len(a) > 1 and a[1] is not None else at.get("min")
    hi = a[2].item() if len(a) > 2 and a[2] is not None else at.get("max")
    return torch.clamp(a[0], lo, hi)


def _softmax(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    if ctx.opset >= 13:
        return torch.softmax(x, dim=at.get("axis", -1))
    axis = at.get("axis", 1) % x.dim()  # older opsets: softmax over the flattened tail
    return torch.softmax(x.flatten(axis), dim=-1).reshape(x.shape)


def _gemm(ctx: OpContext, a: Args, at: dict) -> Any:
    x, w = a[0], a[1]
    x = x.t() if at.get("transA", 0) else x
    w = w.t() if at.get("transB", 0) else w
    y = at.get("alpha", 1.0) * (x @ w)
    if len(a) > 2 and a[2] is not None:
        y = y + at.get("beta", 1.0) * a[2]
    return y


def _cast(ctx: OpContext, a: Args, at: dict) -> Any:
    dtype = DTYPES.get(at["to"])
    if dtype is None:
        raise ModelError(f"Cast to ONNX type {at['to']} is not supported")
    if dtype.is_floating_point:  # computed floats stay in the run's precision
        dtype = ctx.float_dtype if a[0].device == ctx.device else torch.float32
    return a[0].to(dtype)


# -- convolution and pooling ---------------------------------------------------------------
def _pads(at: dict, x: Any, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads ``[begin..., end...]`` for the spatial axes, auto_pad resolved."""
    auto = _text(at.get("auto_pad"), "NOTSET")
    n = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else large)
            ends.append(large if auto == "SAME_UPPER" else small)
        return begins + ends
    if auto == "VALID":
        return [0] * (2 * n)
    return list(at.get("pads", [0] * (2 * n)))


def _torch_padding(x: Any, pads: list[int], value: float) -> tuple[Any, list[int]]:
    """Symmetric pads go to torch's ``padding``; asymmetric ones are applied here."""
    n = len(pads) // 2
    begins, ends = pads[:n], pads[n:]
    if begins == ends:
        return x, begins
    flat: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        flat += [b, e]
    return F.pad(x, flat, value=value), [0] * n


def _spatial(at: dict, w_shape: Any) -> tuple[list[int], list[int], list[int]]:
    kernel = list(at.get("kernel_shape", list(w_shape)))
    n = len(kernel)
    return kernel, list(at.get("strides", [1] * n)), list(at.get("dilations", [1] * n))


def _conv(ctx: OpContext, a: Args, at: dict) -> Any:
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    if x.dim() != 4:
        raise ModelError(f"Conv on a {x.dim()}-d input is not supported")
    kernel, strides, dilations = _spatial(at, w.shape[2:])
    x, padding = _torch_padding(x, _pads(at, x, kernel, strides, dilations), 0.0)
    return F.conv2d(x, w, b, strides, padding, dilations, at.get("group", 1))


def _conv_transpose(ctx: OpContext, a: Args, at: dict) -> Any:
    x, w = a[0], a[1]
    b = a[2] if len(a) > 2 else None
    kernel, strides, dilations = _spatial(at, w.shape[2:])
    if "output_shape" in at or _text(at.get("auto_pad"), "NOTSET") != "NOTSET":
        raise ModelError("ConvTranspose with output_shape or auto_pad is not supported")
    pads = list(at.get("pads", [0, 0, 0, 0]))
    out_pad = list(at.get("output_padding", [0, 0]))
    y = F.conv_transpose2d(x, w, b, strides, 0, out_pad, at.get("group", 1), dilations)
    (t, left), (bottom, right) = pads[:2], pads[2:]
    return y[:, :, t : y.shape[2] - bottom, left : y.shape[3] - right]


def _max_pool(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    kernel, strides, dilations = _spatial(at, [])
    x, padding = _torch_padding(x, _pads(at, x, kernel, strides, dilations), -math.inf)
    return F.max_pool2d(x, kernel, strides, padding, dilations, ceil_mode=bool(at.get("ceil_mode", 0)))


def _avg_pool(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    kernel, strides, _ = _spatial(at, [])
    pads = _pads(at, x, kernel, strides, [1, 1])
    include = bool(at.get("count_include_pad", 0))
    ceil = bool(at.get("ceil_mode", 0))
    if pads[:2] == pads[2:]:
        return F.avg_pool2d(x, kernel, strides, pads[:2], ceil_mode=ceil, count_include_pad=include)
    padded, _ = _torch_padding(x, pads, 0.0)
    total = F.avg_pool2d(padded, kernel, strides, ceil_mode=ceil) * (kernel[0] * kernel[1])
    if include:
        return total / (kernel[0] * kernel[1])
    ones, _ = _torch_padding(torch.ones_like(x[:1, :1]), pads, 0.0)
    return total / (F.avg_pool2d(ones, kernel, strides, ceil_mode=ceil) * (kernel[0] * kernel[1]))


def _batch_norm(ctx: OpContext, a: Args, at: dict) -> Any:
    x, scale, bias, mean, var = a[:5]
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, at.get("epsilon", 1e-5))


def _instance_norm(ctx: OpContext, a: Args, at: dict) -> Any:
    return F.instance_norm(a[0], weight=a[1], bias=a[2], eps=at.get("epsilon", 1e-5))


def _layer_norm(ctx: OpContext, a: Args, at: dict) -> Any:
    x, scale = a[0], a[1]
    bias = a[2] if len(a) > 2 else None
    axis = at.get("axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, at.get("epsilon", 1e-5))


# -- resizing ------------------------------------------------------------------------------
def _resize(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    scales = a[2] if len(a) > 2 else None
    sizes = a[3] if len(a) > 3 else None
    if sizes is not None and sizes.numel():
        out = ints(sizes)[2:]
    else:
        factors = [float(v) for v in scales.reshape(-1).tolist()]
        if factors[:2] != [1.0, 1.0]:
            raise ModelError(f"Resize of the batch or channel axes ({factors}) is not supported")
        out = [int(math.floor(d * f)) for d, f in zip(x.shape[2:], factors[2:], strict=True)]
    return _interpolate(x, out, at, default_transform="half_pixel")


def _upsample(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    factors = [float(v) for v in (a[1].reshape(-1).tolist() if len(a) > 1 else at["scales"])]
    out = [int(math.floor(d * f)) for d, f in zip(x.shape[2:], factors[2:], strict=True)]
    return _interpolate(x, out, at, default_transform="asymmetric")


def _interpolate(x: Any, out: list[int], at: dict, *, default_transform: str) -> Any:
    mode = _text(at.get("mode"), "nearest")
    transform = _text(at.get("coordinate_transformation_mode"), default_transform)
    if list(x.shape[2:]) == out:
        return x
    if mode == "nearest":
        nearest = _text(at.get("nearest_mode"), "round_prefer_floor")
        exact_multiple = all(o % i == 0 for i, o in zip(x.shape[2:], out, strict=True))
        if transform == "asymmetric" and (nearest == "floor" or exact_multiple):
            return F.interpolate(x, size=out, mode="nearest")
        if transform in ("half_pixel", "pytorch_half_pixel") and exact_multiple:
            return F.interpolate(x, size=out, mode="nearest-exact")
        raise ModelError(f"Resize nearest with {transform}/{nearest} is not supported")
    torch_mode = {"linear": "bilinear", "cubic": "bicubic"}.get(mode)
    if torch_mode is None or x.dim() != 4:
        raise ModelError(f"Resize mode {mode!r} on a {x.dim()}-d input is not supported")
    if transform not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        raise ModelError(f"Resize {mode} with coordinate_transformation_mode {transform!r} is not supported")
    if mode == "cubic" and at.get("cubic_coeff_a", -0.75) != -0.75:
        raise ModelError("Resize cubic with cubic_coeff_a other than -0.75 is not supported")
    return F.interpolate(
        x,
        size=out,
        mode=torch_mode,
        align_corners=transform == "align_corners",
        antialias=bool(at.get("antialias", 0)),
    )


# -- shapes and indexing -------------------------------------------------------------------
def _shape(ctx: OpContext, a: Args, at: dict) -> Any:
    dims = list(a[0].shape)[at.get("start", 0) : at.get("end", None)]
    return torch.tensor(dims, dtype=torch.int64)


def _reshape(ctx: OpContext, a: Args, at: dict) -> Any:
    x, shape = a[0], ints(a[1])
    if not at.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _axes(ctx: OpContext, a: Args, at: dict) -> list[int] | None:
    if len(a) > 1 and a[1] is not None:
        return ints(a[1])
    return list(at["axes"]) if "axes" in at else None


def _squeeze(ctx: OpContext, a: Args, at: dict) -> Any:
    axes = _axes(ctx, a, at)
    x = a[0]
    if axes is None:
        return x.squeeze()
    return x.squeeze(tuple(ax % x.dim() for ax in axes))


def _unsqueeze(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    axes = _axes(ctx, a, at) or []
    rank = x.dim() + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(ax)
    return x


def _slice(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    if len(a) > 1:
        starts, ends = ints(a[1]), ints(a[2])
        axes = ints(a[3]) if len(a) > 3 and a[3] is not None else list(range(len(starts)))
        steps = ints(a[4]) if len(a) > 4 and a[4] is not None else [1] * len(starts)
    else:  # opset 1: attributes
        starts, ends = list(at["starts"]), list(at["ends"])
        axes, steps = list(at.get("axes", range(len(starts)))), [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            raise ModelError(f"Slice with step {st} is not supported")
        index[ax % x.dim()] = slice(*slice(s, e, st).indices(x.shape[ax % x.dim()]))
    return x[tuple(index)]


def _gather(ctx: OpContext, a: Args, at: dict) -> Any:
    x, idx = a
    axis = at.get("axis", 0) % x.dim()
    flat = idx.reshape(-1).to(torch.int64) % x.shape[axis]
    out = x.index_select(axis, flat.to(x.device))
    return out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])


def _split(ctx: OpContext, a: Args, at: dict) -> Any:
    x, axis = a[0], at.get("axis", 0)
    if len(a) > 1 and a[1] is not None:
        sizes = ints(a[1])
    elif "split" in at:
        sizes = list(at["split"])
    else:
        n = at.get("num_outputs") or at["_outputs"]
        sizes = [math.ceil(x.shape[axis] / n)] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return tuple(torch.split(x, sizes, dim=axis))


def _expand(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(a[1]))))


def _constant_of_shape(ctx: OpContext, a: Args, at: dict) -> Any:
    value = at.get("value")
    fill = value.reshape(-1)[0].item() if value is not None else 0.0
    dtype = value.dtype if value is not None else torch.float32
    return torch.full(ints(a[0]), fill, dtype=dtype)


def _pad(ctx: OpContext, a: Args, at: dict) -> Any:
    x = a[0]
    pads = ints(a[1]) if len(a) > 1 else list(at["pads"])
    value = a[2].item() if len(a) > 2 and a[2] is not None and a[2].numel() else at.get("value", 0.0)
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[_text(at.get("mode"), "constant")]
    n = len(pads) // 2
    flat: list[int] = []
    for b, e in zip(reversed(pads[:n]), reversed(pads[n:]), strict=True):
        flat += [b, e]
    while len(flat) > 2 and flat[-2:] == [0, 0]:  # torch pads trailing dims only
        flat = flat[:-2]
    return F.pad(x, flat, mode=mode, value=value if mode == "constant" else None)


def _depth_to_space(ctx: OpContext, a: Args, at: dict) -> Any:
    x, bs = a[0], at["blocksize"]
    if _text(at.get("mode"), "DCR") == "CRD":
        return F.pixel_shuffle(x, bs)
    n, c, h, w = x.shape
    y = x.reshape(n, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (bs * bs), h * bs, w * bs)


def _space_to_depth(ctx: OpContext, a: Args, at: dict) -> Any:
    x, bs = a[0], at["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * bs * bs, h // bs, w // bs)


def _reduce(fn: Callable[..., Any]) -> Op:
    def op(ctx: OpContext, a: Args, at: dict) -> Any:
        x = a[0]
        axes = _axes(ctx, a, at)
        keep = bool(at.get("keepdims", 1))
        if not axes:
            if at.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=tuple(ax % x.dim() for ax in axes), keepdim=keep)

    return op


def _range(ctx: OpContext, a: Args, at: dict) -> Any:
    start, limit, delta = (v.item() for v in a[:3])
    return torch.arange(start, limit, delta, dtype=a[0].dtype)


OPS: dict[str, Op] = {
    "Add": lambda c, a, at: a[0] + a[1],
    "Sub": lambda c, a, at: a[0] - a[1],
    "Mul": lambda c, a, at: a[0] * a[1],
    "Div": _div,
    "Pow": lambda c, a, at: torch.pow(a[0], a[1]),
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Equal": lambda c, a, at: a[0] == a[1],
    "Less": lambda c, a, at: a[0] < a[1],
    "Greater": lambda c, a, at: a[0] > a[1],
    "Where": lambda c, a, at: torch.where(a[0], a[1], a[2]),
    "Not": _unary(torch.logical_not),
    "Identity": _unary(lambda x: x),
    "Relu": _unary(torch.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Sqrt": _unary(torch.sqrt),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Erf": _unary(torch.erf),
    "Floor": _unary(torch.floor),
    "Ceil": _unary(torch.ceil),
    "Reciprocal": _unary(torch.reciprocal),
    "HardSwish": _unary(F.hardswish),
    "HardSigmoid": lambda c, a, at: torch.clamp(at.get("alpha", 0.2) * a[0] + at.get("beta", 0.5), 0.0, 1.0),
    "LeakyRelu": lambda c, a, at: F.leaky_relu(a[0], at.get("alpha", 0.01)),
    "Elu": lambda c, a, at: F.elu(a[0], at.get("alpha", 1.0)),
    "Softplus": _unary(F.softplus),
    "Gelu": lambda c, a, at: F.gelu(a[0], approximate=_text(at.get("approximate"), "none")),
    "PRelu": lambda c, a, at: torch.where(a[0] >= 0, a[0], a[0] * a[1]),
    "Clip": _clip,
    "Softmax": _softmax,
    "MatMul": lambda c, a, at: torch.matmul(a[0], a[1]),
    "Gemm": _gemm,
    "Cast": _cast,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda c, a, at: a[0].mean(dim=(2, 3), keepdim=True),
    "GlobalMaxPool": lambda c, a, at: a[0].amax(dim=(2, 3), keepdim=True),
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),
    "ReduceMin": _reduce(torch.amin),
    "Resize": _resize,
    "Upsample": _upsample,
    "Concat": lambda c, a, at: torch.cat([t for t in a if t.numel() or t.dim() > 1], dim=at["axis"]),
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Transpose": lambda c, a, at: a[0].permute(*(at.get("perm") or reversed(range(a[0].dim())))),
    "Reshape": _reshape,
    "Flatten": lambda c, a, at: a[0].reshape(math.prod(a[0].shape[: at.get("axis", 1)]), -1),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Shape": _shape,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": lambda c, a, at: a[0].repeat(*ints(a[1])),
    "Pad": _pad,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "Range": _range,
}

"""The ONNX tensor operators behind ``onnx_torch``: elementwise math, shapes, indexing
(one small function per operator, torch semantics; the layers are in ``_torch_layers``).

Each function takes ``(ctx, args, attrs)``: ``ctx`` (an ``OpContext``) says which float dtype
and device the node computes in and the model's opset; ``args`` are the node's inputs as
tensors (``None`` for an omitted optional input), ``attrs`` its attributes as Python values.
Inputs listed in ``HOST_INPUTS`` are read on the host (shapes, sizes, axes): they arrive as
CPU tensors, so reading them never waits on the device. ``TENSOR_OPS`` maps ONNX op types
to them.
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


def text(v: Any, default: str) -> str:
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
        dtype = ctx.float_dtype
    return a[0].to(dtype)


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
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[text(at.get("mode"), "constant")]
    n = len(pads) // 2
    flat: list[int] = []
    for b, e in zip(reversed(pads[:n]), reversed(pads[n:]), strict=True):
        flat += [b, e]
    while len(flat) > 2 and flat[-2:] == [0, 0]:  # torch pads trailing dims only
        flat = flat[:-2]
    return F.pad(x, flat, mode=mode, value=value if mode == "constant" else None)


def _depth_to_space(ctx: OpContext, a: Args, at: dict) -> Any:
    x, bs = a[0], at["blocksize"]
    if text(at.get("mode"), "DCR") == "CRD":
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


TENSOR_OPS: dict[str, Op] = {
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
    "Gelu": lambda c, a, at: F.gelu(a[0], approximate=text(at.get("approximate"), "none")),
    "PRelu": lambda c, a, at: torch.where(a[0] >= 0, a[0], a[0] * a[1]),
    "Clip": _clip,
    "Softmax": _softmax,
    "MatMul": lambda c, a, at: torch.matmul(a[0], a[1]),
    "Gemm": _gemm,
    "Cast": _cast,
    "ReduceMean": _reduce(torch.mean),
    "ReduceSum": _reduce(torch.sum),
    "ReduceMax": _reduce(torch.amax),
    "ReduceMin": _reduce(torch.amin),
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

"""The ONNX layer operators behind ``onnx_torch``: convolution, pooling, normalisation and
resizing (``(ctx, args, attrs)`` functions, as in ``_torch_ops``). ONNX pads are
``[begin..., end...]`` and may differ per side; torch pads symmetrically, so uneven pads
are applied with ``F.pad`` first."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ModelError
from ._torch_ops import Args, Op, OpContext, ints, text


def _pads(at: dict, x: Any, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """ONNX pads ``[begin..., end...]`` for the spatial axes, auto_pad resolved."""
    auto = text(at.get("auto_pad"), "NOTSET")
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
    if "output_shape" in at or text(at.get("auto_pad"), "NOTSET") != "NOTSET":
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
    mode = text(at.get("mode"), "nearest")
    transform = text(at.get("coordinate_transformation_mode"), default_transform)
    if list(x.shape[2:]) == out:
        return x
    if mode == "nearest":
        nearest = text(at.get("nearest_mode"), "round_prefer_floor")
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


LAYER_OPS: dict[str, Op] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _max_pool,
    "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda c, a, at: a[0].mean(dim=(2, 3), keepdim=True),
    "GlobalMaxPool": lambda c, a, at: a[0].amax(dim=(2, 3), keepdim=True),
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "Resize": _resize,
    "Upsample": _upsample,
}

"""A U²-Net-shaped ONNX graph with random weights: rembg's u2net family at its real size.

The architecture of U²-Net (Qin et al., 2020, as in rembg's ``u2net.onnx`` /
``u2netp.onnx``): six encoder and five decoder stages of residual U-blocks (RSU-7 … RSU-4,
and RSU-4F with dilations instead of pooling), max-pooling with ``ceil_mode``, bilinear
upsampling to the size of a skip connection (``Shape`` → ``Slice`` → ``Resize``), six side
outputs fused by a 1×1 convolution, seven sigmoid outputs. Batch norms are folded into
the convolutions, as in an exported graph. The weights are random (He-scaled), so the
masks mean nothing, but the graph costs what the real one costs: the benchmark's stand-in
for a heavy model, and a test of the ONNX → torch importer on a real topology.

``u2net_graph("u2net")`` has the full model's 44 M parameters (176 MB, built in seconds);
``"u2netp"`` the 1.1 M of the small one; ``width`` scales every channel count down for
fast tests.
"""

from __future__ import annotations

import numpy as np

__all__ = ["u2net_graph"]

# (encoder stages, decoder stages): (RSU height or "4F", in, mid, out)
_CONFIGS = {
    "u2net": (
        [(7, 3, 32, 64), (6, 64, 32, 128), (5, 128, 64, 256), (4, 256, 128, 512), ("4F", 512, 256, 512)],
        ("4F", 512, 256, 512),
        [("4F", 1024, 256, 512), (4, 1024, 128, 256), (5, 512, 64, 128), (6, 256, 32, 64), (7, 128, 16, 64)],
    ),
    "u2netp": (
        [(7, 3, 16, 64), (6, 64, 16, 64), (5, 64, 16, 64), (4, 64, 16, 64), ("4F", 64, 16, 64)],
        ("4F", 64, 16, 64),
        [("4F", 128, 16, 64), (4, 128, 16, 64), (5, 128, 16, 64), (6, 128, 16, 64), (7, 128, 16, 64)],
    ),
}


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []

    def _name(self, hint: str) -> str:
        return f"{hint}{len(self.nodes) + len(self.inits)}"

    def const(self, array: np.ndarray, hint: str) -> str:
        from onnx import numpy_helper

        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        from onnx import helper

        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, *, k: int = 3, dilation: int = 1, relu: bool = True) -> str:
        std = np.sqrt(2.0 / (cin * k * k))
        w = (self.rng.standard_normal((cout, cin, k, k), dtype=np.float32) * std).astype(np.float32)
        b = (self.rng.standard_normal(cout, dtype=np.float32) * 0.01).astype(np.float32)
        pad = dilation * (k // 2)
        y = self.node(
            "Conv",
            [x, self.const(w, "w"), self.const(b, "b")],
            kernel_shape=[k, k],
            pads=[pad] * 4,
            dilations=[dilation, dilation],
        )
        return self.node("Relu", [y]) if relu else y

    def pool(self, x: str) -> str:
        return self.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)

    def upsample_like(self, x: str, like: str) -> str:
        """Resize ``x`` to ``like``'s spatial size, the way a torch export spells it."""
        start, mid, end = (self.const(np.array([v], np.int64), "i") for v in (0, 2, 4))
        hw = self.node("Slice", [self.node("Shape", [like]), mid, end])
        nc = self.node("Slice", [self.node("Shape", [x]), start, mid])
        sizes = self.node("Concat", [nc, hw], axis=0)
        no_scales = self.const(np.zeros(0, np.float32), "scales")
        return self.node(
            "Resize",
            [x, "", no_scales, sizes],
            mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel",
        )

    def cat(self, a: str, b: str) -> str:
        return self.node("Concat", [a, b], axis=1)

    def rsu(self, x: str, height: int | str, cin: int, mid: int, cout: int) -> str:
        hxin = self.conv(x, cin, cout)
        if height == "4F":  # dilations instead of pooling
            h1 = self.conv(hxin, cout, mid)
            h2 = self.conv(h1, mid, mid, dilation=2)
            h3 = self.conv(h2, mid, mid, dilation=4)
            h4 = self.conv(h3, mid, mid, dilation=8)
            h3d = self.conv(self.cat(h4, h3), 2 * mid, mid, dilation=4)
            h2d = self.conv(self.cat(h3d, h2), 2 * mid, mid, dilation=2)
            h1d = self.conv(self.cat(h2d, h1), 2 * mid, cout)
            return self.node("Add", [h1d, hxin])
        levels = [self.conv(hxin, cout, mid)]
        for _ in range(int(height) - 2):
            levels.append(self.conv(self.pool(levels[-1]), mid, mid))
        top = self.conv(levels[-1], mid, mid, dilation=2)
        d = self.conv(self.cat(top, levels[-1]), 2 * mid, mid)
        for i in range(len(levels) - 2, -1, -1):
            d = self.conv(self.cat(self.upsample_like(d, levels[i]), levels[i]), 2 * mid, mid if i else cout)
        return self.node("Add", [d, hxin])


def u2net_graph(variant: str = "u2net", *, size: int = 320, width: float = 1.0, seed: int = 0):
    """An ONNX ``ModelProto`` with U²-Net's topology and random weights (see the module
    docstring): input ``(N,3,size,size)``, seven outputs ``(N,1,size,size)``."""
    import onnx
    from onnx import TensorProto, helper

    if variant not in _CONFIGS:
        raise ValueError(f"variant must be one of {', '.join(_CONFIGS)}, got {variant!r}")
    encoders, bottom, decoders = _CONFIGS[variant]

    def scaled(c: int) -> int:
        return c if c == 3 else max(2, int(round(c * width)))

    b = _Builder(seed)
    x = "input.1"
    skips, hx = [], x
    for height, cin, mid, cout in encoders:
        stage = b.rsu(hx, height, scaled(cin), scaled(mid), scaled(cout))
        skips.append(stage)
        hx = b.pool(stage)
    height, cin, mid, cout = bottom
    d = b.rsu(hx, height, scaled(cin), scaled(mid), scaled(cout))
    sides = [(d, scaled(cout))]
    for (height, cin, mid, cout), skip in zip(decoders, reversed(skips), strict=True):
        d = b.rsu(b.cat(b.upsample_like(d, skip), skip), height, scaled(cin), scaled(mid), scaled(cout))
        sides.append((d, scaled(cout)))
    maps = []
    for feat, channels in reversed(sides):  # side1 (finest) … side6 (coarsest)
        side = b.conv(feat, channels, 1, relu=False)
        maps.append(side if not maps else b.upsample_like(side, maps[0]))
    fused = b.conv(b.node("Concat", maps, axis=1), 6, 1, k=1, relu=False)
    outs = [b.node("Sigmoid", [m]) for m in [fused, *maps]]
    batch = "N"
    for i, name in enumerate(outs):  # rename to stable output names
        b.nodes.append(helper.make_node("Identity", [name], [f"d{i}"]))
    graph = helper.make_graph(
        b.nodes,
        f"{variant}_random",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, [batch, 1, size, size]) for i in range(7)],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model

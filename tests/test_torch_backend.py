"""The torch backend on the CPU: the ONNX -> torch importer against onnxruntime, operator by
operator and on whole graphs (the tiny family models, a U²-Net-shaped graph, the real
selfie model), the precision check, and the fallback when the importer cannot take a graph.

Bounds on the uint8 alpha, torch backend vs onnxruntime: mean |Δ| <= 1 level, max <= 8
(``runners.MAX_MEAN_LEVELS`` / ``MAX_LEVELS``)."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from streammat.errors import ModelError
from streammat.frames import Batch
from streammat.matting import create_matter
from streammat.matting.batched import postprocess, preprocess
from streammat.matting.families import FAMILIES
from streammat.matting.runners import (
    MAX_LEVELS,
    MAX_MEAN_LEVELS,
    OrtCpuRunner,
    TorchRunner,
    mask_difference,
    pick_dtype,
    probe_frame,
)
from streammat.matting.sessions import create_session
from streammat.models.onnx_torch import OnnxModule
from streammat.testing import (
    install_model,
    tiny_birefnet_model,
    tiny_isnet_model,
    tiny_selfie_model,
    tiny_u2net_model,
)
from streammat.testing.u2net_graph import u2net_graph


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return home


def frames(n: int, h: int = 90, w: int = 160) -> Batch:
    rng = np.random.default_rng(n)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    images = np.stack([(base + rng.integers(0, 60, base.shape)).clip(0, 255) for _ in range(n)]).astype(np.uint8)
    return Batch(torch.from_numpy(images), tuple(range(n)), Fraction(1, 30), tuple(range(n)))


def assert_within_bounds(a: torch.Tensor, b: torch.Tensor) -> None:
    mean, worst = mask_difference(a, b)
    assert mean <= MAX_MEAN_LEVELS and worst <= MAX_LEVELS, (mean, worst)


MODELS = {
    "u2net": tiny_u2net_model,
    "u2netp": lambda: u2net_graph("u2netp", width=0.25),  # the real topology, small channels
    "isnet-general-use": tiny_isnet_model,
    "birefnet-general": tiny_birefnet_model,
    "selfie": tiny_selfie_model,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_backend_matches_onnxruntime(name: str, home: Path) -> None:
    install_model(home, name, MODELS[name]())
    session = create_session(name, device="cpu")
    reference = create_matter(session, device="cpu", backend="ort")
    converted = create_matter(session, device="cpu", backend="torch")
    assert isinstance(reference._runner, OrtCpuRunner) and isinstance(converted._runner, TorchRunner)
    batch = frames(2)
    assert_within_bounds(converted(batch).alpha, reference(batch).alpha)


def test_the_real_selfie_graph_matches_onnxruntime(selfie_env: Path) -> None:
    session = create_session("selfie", device="cpu")
    batch = frames(3, 144, 256)
    torch_alpha = create_matter(session, device="cpu", backend="torch")(batch).alpha
    assert_within_bounds(torch_alpha, create_matter(session, device="cpu", backend="ort")(batch).alpha)


def _single_op(op: str, shape: list[int], inits: dict[str, np.ndarray] | None = None, **attrs) -> onnx.ModelProto:
    inits = inits or {}
    node = helper.make_node(op, ["x", *inits], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        op,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


_W = np.random.default_rng(1).standard_normal((4, 4, 3, 3)).astype(np.float32)
OP_CASES = {
    "conv-same-upper-stride2": ("Conv", {"w": _W}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "conv-asymmetric-pads": ("Conv", {"w": _W}, {"pads": [0, 1, 2, 1]}),
    "conv-transpose-output-padding": (
        "ConvTranspose",
        {"w": _W},
        {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 1]},
    ),
    "maxpool-ceil": ("MaxPool", {}, {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "maxpool-asymmetric": ("MaxPool", {}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]}),
    "avgpool-exclude-pad-asym": ("AveragePool", {}, {"kernel_shape": [3, 3], "pads": [1, 1, 0, 0]}),
    "avgpool-include-pad": ("AveragePool", {}, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    "resize-nearest": (
        "Resize",
        {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
        {"mode": "nearest"},
    ),
    "resize-linear-align-corners": (
        "Resize",
        {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 1.5, 2], np.float32)},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    ),
    "resize-cubic": (
        "Resize",
        {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
        {"mode": "cubic"},
    ),
    "batchnorm": (
        "BatchNormalization",
        {k: np.linspace(0.5, 2.0, 4, dtype=np.float32) for k in ("scale", "b", "mean", "var")},
        {"epsilon": 1e-3},
    ),
    "depth-to-space-dcr": ("DepthToSpace", {}, {"blocksize": 2}),
    "depth-to-space-crd": ("DepthToSpace", {}, {"blocksize": 2, "mode": "CRD"}),
    "space-to-depth": ("SpaceToDepth", {}, {"blocksize": 2}),
    "pad-reflect": ("Pad", {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}, {"mode": "reflect"}),
    "hard-sigmoid": ("HardSigmoid", {}, {"alpha": 0.3}),
    "softmax": ("Softmax", {}, {"axis": 1}),
    "reduce-mean": ("ReduceMean", {}, {"axes": [2, 3], "keepdims": 0}),
    "clip": ("Clip", {"lo": np.array(-0.5, np.float32), "hi": np.array(0.5, np.float32)}, {}),
    "layer-norm": ("LayerNormalization", {"s": np.full(6, 1.5, np.float32), "b": np.ones(6, np.float32)}, {}),
    "transpose": ("Transpose", {}, {"perm": [0, 2, 3, 1]}),
    "slice": (
        "Slice",
        {k: np.array(v, np.int64) for k, v in {"s": [1, -4], "e": [3, 100], "a": [1, 3], "st": [1, 2]}.items()},
        {},
    ),
}


@pytest.mark.parametrize("case", list(OP_CASES))
def test_operator_matches_onnxruntime(case: str) -> None:
    op, inits, attrs = OP_CASES[case]
    model = _single_op(op, [2, 4, 8, 6], inits, **attrs)
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 6)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with torch.no_grad():
        got = OnnxModule(model, name=case)(torch.from_numpy(x)).numpy()
    assert got.shape == expected[0].shape
    np.testing.assert_allclose(got, expected[0], rtol=1e-4, atol=1e-4)


def test_shape_arithmetic_stays_on_the_host() -> None:
    """Shape -> Slice -> Concat feeding a Resize runs on host tensors (no device reads)."""
    module = OnnxModule(u2net_graph("u2netp", size=32, width=0.125))
    kinds = {s.op_type: s.data for s in module.steps}
    assert kinds["Shape"] is False and kinds["Slice"] is False and kinds["Concat"] is True
    assert not any(s.data for s in module.steps if s.op_type in ("Shape", "Slice"))


def _softsign_u2net() -> onnx.ModelProto:
    """The tiny u2net graph with an operator the importer does not implement."""
    model = tiny_u2net_model()
    for node in model.graph.node:
        if node.op_type == "Sigmoid":
            node.op_type = "Softsign"
    return model


def test_an_unsupported_operator_is_named() -> None:
    with pytest.raises(ModelError, match="no torch implementation of ONNX operator.*Softsign"):
        OnnxModule(_softsign_u2net())


def test_a_graph_the_importer_cannot_take_runs_on_onnxruntime(home: Path, caplog) -> None:
    install_model(home, "u2net", _softsign_u2net())
    caplog.set_level(logging.INFO, logger="streammat.matting.runners")
    matter = create_matter(create_session("u2net", device="cpu"), device="cpu", backend="torch")
    assert isinstance(matter._runner, OrtCpuRunner) and matter.choice.runner == "ort-cpu"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the torch backend cannot run this graph" in warning and "Softsign" in warning
    assert "runs ort-cpu on cpu (the torch backend cannot run this graph)" in caplog.text
    assert matter(frames(1)).alpha.shape == (1, 90, 160)


def test_half_precision_is_kept_only_where_the_masks_hold() -> None:
    """``pick_dtype`` on the CPU with bfloat16 as the candidate: a smooth mask keeps it; a
    mask that thresholds a tiny difference (gain 2000 before the sigmoid) does not."""
    fam = FAMILIES["u2net"]
    probe = preprocess(probe_frame(*fam.size), fam)

    def judge(raw: torch.Tensor) -> torch.Tensor:
        return postprocess(raw, fam)

    smooth = OnnxModule(tiny_u2net_model())
    dtype, why = pick_dtype(smooth, torch.device("cpu"), probe, judge, (torch.bfloat16,))
    assert dtype == torch.bfloat16 and "probe: mean" in why
    steep = tiny_u2net_model()
    for init in steep.graph.initializer:
        if init.name == "gain":
            init.CopyFrom(numpy_helper.from_array(np.array(2000.0, np.float32), "gain"))
    dtype, why = pick_dtype(OnnxModule(steep), torch.device("cpu"), probe, judge, (torch.bfloat16,))
    assert dtype == torch.float32 and "too far" in why


def test_process_with_the_torch_backend_says_so_and_mattes(tiny_home, clip, tmp_path, capsys) -> None:
    from streammat.cli import main
    from streammat.readback import read_rgba

    src = clip("in.mp4", width=96, height=64, frames=6)
    out = tmp_path / "out.mkv"
    argv = ["process", str(src), "-o", str(out), "--model", "u2netp", "--no-progress"]
    assert main([*argv, "--device", "cpu", "--backend", "torch", "-v"]) == 0
    assert "u2netp: device=cpu backend=torch runs torch on cpu" in capsys.readouterr().err
    torch_alpha = np.stack([f.image[..., 3] for f in read_rgba(out)])
    out.unlink()
    assert main([*argv, "--device", "cpu", "--backend", "ort"]) == 0
    ort_alpha = np.stack([f.image[..., 3] for f in read_rgba(out)])
    assert torch_alpha.shape == (6, 64, 96)
    assert_within_bounds(torch.from_numpy(torch_alpha), torch.from_numpy(ort_alpha))


def test_shape_arithmetic_is_exact_in_half_precision_runs() -> None:
    """Sizes computed with float math (Shape -> Cast -> Mul -> Cast) stay float32 on the
    host even when the run is bfloat16, where 257 * 2 would round to 512."""
    consts = {
        "s0": np.array([0], np.int64),
        "s2": np.array([2], np.int64),
        "s4": np.array([4], np.int64),
        "two": np.array(2.0, np.float32),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "s2", "s4"], ["hw"]),
        helper.make_node("Slice", ["shape", "s0", "s2"], ["nc"]),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["hw_f", "two"], ["hw2_f"]),
        helper.make_node("Cast", ["hw2_f"], ["hw2"], to=TensorProto.INT64),
        helper.make_node("Concat", ["nc", "hw2"], ["sizes"], axis=0),
        helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="nearest"),
    ]
    graph = helper.make_graph(
        nodes,
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    module = OnnxModule(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with torch.no_grad():
        y = module.to(torch.bfloat16)(torch.ones(1, 1, 257, 257, dtype=torch.bfloat16))
    assert tuple(y.shape) == (1, 1, 514, 514)

"""The TfLite -> ONNX importer: agreement with an independent NumPy evaluation of the real
MediaPipe graphs, options the real graphs do not exercise (on tiny flatbuffers built here),
and a clear error for operators it does not know."""

from __future__ import annotations

import hashlib
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
import tflite
from selfie_reference import run_reference
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions

from streammat.errors import ModelError
from streammat.models import store
from streammat.models.tflite_import import IMPORTER_VERSION, convert_tflite_file, import_tflite, supported_operators

VARIANTS = ["selfie", "selfie-landscape"]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _tflite_bytes(home: Path, name: str) -> bytes:
    pin = store.BUILTIN_MODELS[name]
    data = (home / "models" / name / pin.tflite).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pin.sha256 and len(data) == pin.size
    return data


def _inputs(h: int, w: int) -> np.ndarray:
    """A batch that drives the network through its whole range: a person photo, the photo
    with noise and a colour shift, smooth random blobs, and uniform noise."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(3)
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((w, h)), np.float32) / 255
    shifted = np.clip(photo * rng.uniform(0.6, 1.2, 3) + rng.normal(0, 0.08, photo.shape), 0, 1)
    blobs = np.asarray(Image.fromarray((rng.random((h // 16, w // 16, 3)) * 255).astype(np.uint8)).resize((w, h)))
    return np.stack([photo, shifted, blobs / 255.0, rng.random(photo.shape)]).astype(np.float32)


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_matches_numpy_reference(selfie_home: Path, name: str) -> None:
    data = _tflite_bytes(selfie_home, name)
    model = import_tflite(data, name=name)
    onnx.checker.check_model(model, full_check=True)
    sess = _session(model)
    inp = sess.get_inputs()[0]
    h, w = inp.shape[1], inp.shape[2]
    assert inp.shape[0] == "N" and inp.shape[3] == 3  # dynamic batch, NHWC
    x = _inputs(h, w)
    got = sess.run(None, {inp.name: x})[0]
    want = run_reference(data, x)
    assert got.shape == want.shape == (4, h, w, 1)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # the comparison is not vacuous: the photo gives both clear person and clear background
    assert (want[0] > 0.9).mean() > 0.2 and (want[0] < 0.1).mean() > 0.2


@pytest.mark.parametrize("name", VARIANTS)
def test_the_graph_keeps_onnxruntimes_blocked_layout(selfie_home: Path, name: str) -> None:
    """The 2x upsamplings are constant scales and the channel means GlobalAveragePool:
    onnxruntime then runs them in its blocked (NCHWc) layout, where a size computed at run
    time (Shape -> Slice -> Concat) and ReduceMean each forced a layout round trip."""
    model = import_tflite(_tflite_bytes(selfie_home, name), name=name)
    ops = [n.op_type for n in model.graph.node]
    assert {"Shape", "Slice", "Concat", "ReduceMean"}.isdisjoint(ops)
    assert ops.count("GlobalAveragePool") == 10 and ops.count("Resize") == 3
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Resize":
            assert len(node.input) == 3 and inits[node.input[2]].tolist() == [1.0, 1.0, 2.0, 2.0]
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(selfie_home.parent / f"{name}-optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    optimized = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    if "ReorderInput" in optimized:  # a CPU with the blocked kernels (AVX2 and up)
        assert optimized.count("Upsample") >= 2  # onnxruntime's blocked resize
    assert model.producer_version == IMPORTER_VERSION


def test_a_model_from_an_older_importer_is_converted_again(selfie_home: Path, tmp_path: Path, monkeypatch) -> None:
    """A stored built-in model stamped by an older importer is converted again from the
    verified TfLite file beside it, once; without that file it is used as it is."""
    home = tmp_path / "home"
    folder = home / "models" / "selfie"
    folder.mkdir(parents=True)
    data = _tflite_bytes(selfie_home, "selfie")
    (folder / store.BUILTIN_MODELS["selfie"].tflite).write_bytes(data)
    old = import_tflite(data, name="selfie")
    old.producer_version = "1"
    onnx.save(old, folder / "selfie.onnx")
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    store.ensure_available("selfie")
    assert onnx.load(folder / "selfie.onnx").producer_version == IMPORTER_VERSION
    stamp = (folder / "selfie.onnx").stat().st_mtime_ns
    store.ensure_available("selfie")
    assert (folder / "selfie.onnx").stat().st_mtime_ns == stamp  # current: left alone
    onnx.save(old, folder / "selfie.onnx")
    (folder / store.BUILTIN_MODELS["selfie"].tflite).unlink()
    store.ensure_available("selfie")  # no source to convert from: the stored file still loads
    assert onnx.load(folder / "selfie.onnx").producer_version == "1"


def test_fp16_weights_are_folded_to_float32(selfie_home: Path) -> None:
    model = import_tflite(_tflite_bytes(selfie_home, "selfie"))
    types = {init.data_type for init in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 not in types and onnx.TensorProto.FLOAT in types
    ops = {n.op_type for n in model.graph.node}
    assert "DequantizeLinear" not in ops and "Cast" not in ops
    # NHWC at the boundary, NCHW inside: exactly one transpose in and one out
    assert [n.op_type for n in model.graph.node].count("Transpose") == 2


# -- tiny flatbuffers built here -------------------------------------------------------------
def _vec(b: flatbuffers.Builder, values, dtype) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _table_vec(b: flatbuffers.Builder, start, offsets: list[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def build_tflite(tensors, ops, inputs, outputs) -> bytes:
    """tensors: [(name, shape, np.ndarray | None)] (float32 unless the array says otherwise);
    ops: [(opcode (int builtin or str custom), ins, outs, options_builder | None,
    options_type, custom_options bytes | None)]."""
    b = flatbuffers.Builder(1024)
    types = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2}
    buffers, tensor_offs = [], []
    tflite.BufferStart(b)
    buffers.append(tflite.BufferEnd(b))  # buffer 0: empty by convention
    for name, shape, arr in tensors:
        buf_idx = 0
        if arr is not None:
            raw = _vec(b, np.ascontiguousarray(arr).view(np.uint8).ravel(), np.uint8)
            tflite.BufferStart(b)
            tflite.BufferAddData(b, raw)
            buffers.append(tflite.BufferEnd(b))
            buf_idx = len(buffers) - 1
        name_off = b.CreateString(name)
        shape_off = _vec(b, shape, np.int32)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape_off)
        tflite.TensorAddType(b, types[np.dtype(arr.dtype)] if arr is not None else 0)
        tflite.TensorAddBuffer(b, buf_idx)
        tflite.TensorAddName(b, name_off)
        tensor_offs.append(tflite.TensorEnd(b))
    codes, code_offs, op_offs = [], [], []
    for code, ins, outs, opt_builder, opt_type, custom in ops:
        if code not in codes:
            codes.append(code)
        opt_off = opt_builder(b) if opt_builder else None
        custom_off = _vec(b, np.frombuffer(custom, np.uint8), np.uint8) if custom else None
        ins_off, outs_off = _vec(b, ins, np.int32), _vec(b, outs, np.int32)
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(code))
        tflite.OperatorAddInputs(b, ins_off)
        tflite.OperatorAddOutputs(b, outs_off)
        if opt_off is not None:
            tflite.OperatorAddBuiltinOptionsType(b, opt_type)
            tflite.OperatorAddBuiltinOptions(b, opt_off)
        if custom_off is not None:
            tflite.OperatorAddCustomOptions(b, custom_off)
        op_offs.append(tflite.OperatorEnd(b))
    for code in codes:
        custom_name = b.CreateString(code) if isinstance(code, str) else None
        builtin = BuiltinOperator.CUSTOM if isinstance(code, str) else code
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddBuiltinCode(b, builtin)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
        if custom_name is not None:
            tflite.OperatorCodeAddCustomCode(b, custom_name)
        tflite.OperatorCodeAddVersion(b, 1)
        code_offs.append(tflite.OperatorCodeEnd(b))
    t_vec = _table_vec(b, tflite.SubGraphStartTensorsVector, tensor_offs)
    o_vec = _table_vec(b, tflite.SubGraphStartOperatorsVector, op_offs)
    in_vec, out_vec = _vec(b, inputs, np.int32), _vec(b, outputs, np.int32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, t_vec)
    tflite.SubGraphAddInputs(b, in_vec)
    tflite.SubGraphAddOutputs(b, out_vec)
    tflite.SubGraphAddOperators(b, o_vec)
    sg = tflite.SubGraphEnd(b)
    sg_vec = _table_vec(b, tflite.ModelStartSubgraphsVector, [sg])
    codes_vec = _table_vec(b, tflite.ModelStartOperatorCodesVector, code_offs)
    buf_vec = _table_vec(b, tflite.ModelStartBuffersVector, buffers)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, sg_vec)
    tflite.ModelAddBuffers(b, buf_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _conv_options(padding: int, stride: int, act: int):
    def make(b: flatbuffers.Builder) -> int:
        tflite.Conv2DOptionsStart(b)
        tflite.Conv2DOptionsAddPadding(b, padding)
        tflite.Conv2DOptionsAddStrideW(b, stride)
        tflite.Conv2DOptionsAddStrideH(b, stride)
        tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
        tflite.Conv2DOptionsAddDilationWFactor(b, 1)
        tflite.Conv2DOptionsAddDilationHFactor(b, 1)
        return tflite.Conv2DOptionsEnd(b)

    return make


def _conv_graph(act: int, *, size=(7, 9), padding: int = 0, stride: int = 2) -> bytes:
    """x (1,H,W,2) -> CONV_2D 3x3 (fp16 weights behind DEQUANTIZE, fused ``act``) -> ADD a
    per-channel constant."""
    rng = np.random.default_rng(7)
    h, w = size
    ho, wo = (
        ((h + stride - 1) // stride, (w + stride - 1) // stride)
        if padding == 0
        else ((h - 3) // stride + 1, (w - 3) // stride + 1)
    )
    tensors = [
        ("x", [1, h, w, 2], None),
        ("w16", [4, 3, 3, 2], (rng.normal(0, 1, (4, 3, 3, 2))).astype(np.float16)),
        ("w", [4, 3, 3, 2], None),
        ("b", [4], rng.normal(0, 1, 4).astype(np.float32)),
        ("conv", [1, ho, wo, 4], None),
        ("shift", [4], np.array([0.5, -1.0, 2.0, 0.0], np.float32)),
        ("y", [1, ho, wo, 4], None),
    ]
    ops = [
        (BuiltinOperator.DEQUANTIZE, [1], [2], None, 0, None),
        (
            BuiltinOperator.CONV_2D,
            [0, 2, 3],
            [4],
            _conv_options(padding, stride, act),
            BuiltinOptions.Conv2DOptions,
            None,
        ),
        (BuiltinOperator.ADD, [4, 5], [6], None, 0, None),
    ]
    return build_tflite(tensors, ops, [0], [6])


@pytest.mark.parametrize("act", [0, 1, 3], ids=["none", "relu", "relu6"])
@pytest.mark.parametrize("padding", [0, 1], ids=["same", "valid"])
def test_conv_options_on_odd_sizes(act: int, padding: int) -> None:
    data = _conv_graph(act, padding=padding)
    sess = _session(import_tflite(data))
    x = np.random.default_rng(1).normal(0, 2, (3, 7, 9, 2)).astype(np.float32)
    got = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(got, run_reference(data, x), atol=1e-5)


def test_unsupported_fused_activation_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="fused activation"):
        import_tflite(_conv_graph(4))  # TANH


@pytest.mark.parametrize("code, name", [(BuiltinOperator.SOFTMAX, "SOFTMAX"), ("FancyCustomOp", "FancyCustomOp")])
def test_unknown_operator_is_a_model_error_naming_it(code, name: str) -> None:
    data = build_tflite(
        [("x", [1, 4, 4, 3], None), ("y", [1, 4, 4, 3], None)], [(code, [0], [1], None, 0, None)], [0], [1]
    )
    assert name not in supported_operators()
    with pytest.raises(ModelError, match=rf"unsupported TfLite operator {name}\b"):
        import_tflite(data)


def test_not_a_flatbuffer_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        import_tflite(b"\x00" * 64)


def test_convert_tflite_file_writes_a_loadable_model(tmp_path: Path) -> None:
    src = tmp_path / "tiny.tflite"
    src.write_bytes(_conv_graph(1))
    dst = convert_tflite_file(src, tmp_path / "out" / "tiny.onnx")
    assert dst.is_file() and not list(dst.parent.glob("*.part"))
    sess = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["N", 7, 9, 2]
    with pytest.raises(ModelError, match="cannot read"):
        convert_tflite_file(tmp_path / "missing.tflite", tmp_path / "x.onnx")

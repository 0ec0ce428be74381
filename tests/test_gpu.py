"""The CUDA path on a real GPU (skipped without CUDA): the torch backend on CUDA against
onnxruntime on the CPU, many batches in flight against one at a time (stream ordering),
pinned side-stream uploads, CUDA graph replay, and the fallback when the importer cannot
take a graph. ``scripts/gpu_check.sh`` runs these on the GPU machines."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from streammat.frames import Batch
from streammat.matting import create_matter
from streammat.matting.gpu import PinnedUploader
from streammat.matting.runners import MAX_LEVELS, MAX_MEAN_LEVELS, OrtCpuRunner, TorchRunner, mask_difference
from streammat.matting.sessions import create_session
from streammat.models.onnx_torch import OnnxModule
from streammat.pipeline import Pipeline
from streammat.testing import CollectingSink, ListSource, install_model, tiny_selfie_model, tiny_u2net_model
from streammat.testing.u2net_graph import u2net_graph

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return home


def batches(count: int, n: int = 4, h: int = 180, w: int = 320) -> list[Batch]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1)
    out = []
    for b in range(count):
        images = np.stack([(base + rng.integers(0, 80, base.shape)).clip(0, 255) for _ in range(n)]).astype(np.uint8)
        idx = tuple(range(b * n, (b + 1) * n))
        out.append(Batch(torch.from_numpy(images), idx, Fraction(1, 30), idx))
    return out


def assert_within_bounds(a: torch.Tensor, b: torch.Tensor) -> None:
    mean, worst = mask_difference(a, b)
    assert mean <= MAX_MEAN_LEVELS and worst <= MAX_LEVELS, (mean, worst)


MODELS = {
    "u2net": tiny_u2net_model,
    "u2netp": lambda: u2net_graph("u2netp", width=0.5),
    "selfie": tiny_selfie_model,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_backend_on_cuda_matches_onnxruntime_on_the_cpu(name: str, home: Path) -> None:
    install_model(home, name, MODELS[name]())
    session = create_session(name, device="cpu")
    on_gpu = create_matter(session, device="cuda", backend="torch")
    assert isinstance(on_gpu._runner, TorchRunner) and on_gpu.backend == "cuda"
    reference = create_matter(session, device="cpu")
    for batch in batches(2):
        assert_within_bounds(on_gpu(batch).alpha, reference(batch).alpha)


@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_many_batches_in_flight_equal_one_at_a_time(home: Path, cuda_graphs: bool) -> None:
    """All uploads queued before any model run, all runs before any read-back: the side
    stream, the events and the staging-buffer reuse must keep every batch its own."""
    install_model(home, "u2netp", u2net_graph("u2netp", width=0.5))
    matter = create_matter(create_session("u2netp", device="cpu"), device="cuda")
    matter._runner.cuda_graphs = cuda_graphs
    work = batches(8)
    one_at_a_time = [matter(b).alpha for b in work]
    prepared = [matter.prepare(b) for b in work]  # more batches than staging slots
    raws = [matter.infer(p) for p in prepared]
    together = [matter.finish(b, r).alpha for b, r in zip(work, raws, strict=True)]
    for a, b in zip(one_at_a_time, together, strict=True):
        assert torch.equal(a, b)


def test_the_threaded_pipeline_on_cuda_equals_the_plain_loop(home: Path) -> None:
    """The pipeline runs prepare, infer and finish of neighbouring batches on three threads."""
    install_model(home, "u2netp", u2net_graph("u2netp", width=0.5))
    matter = create_matter(create_session("u2netp", device="cpu"), device="cuda")
    sink = CollectingSink()
    Pipeline(ListSource(24, h=180, w=320), matter, [sink], batch_size=4).run()
    for start in range(0, 24, 4):  # ListSource's frame i is filled with the value i
        images = torch.arange(start, start + 4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 180, 320, 3)
        idx = tuple(range(start, start + 4))
        expected = matter(Batch(images.contiguous(), idx, Fraction(1, 25), idx)).alpha
        assert torch.equal(torch.from_numpy(np.stack(sink.alpha[start : start + 4])), expected)


def test_pinned_uploads_keep_every_batch_their_own() -> None:
    device = torch.device("cuda", 0)
    upload = PinnedUploader(device, slots=2)
    sources = [torch.full((3, 64, 64, 3), i, dtype=torch.uint8) for i in range(7)]
    on_device = [upload(s) for s in sources]  # no synchronisation in between
    for i, t in enumerate(on_device):
        assert t.device == device and bool((t == i).all())


def test_cuda_graph_replay_equals_eager() -> None:
    module = OnnxModule(u2net_graph("u2netp", size=64, width=0.25))
    x = torch.rand(4, 3, 64, 64, device="cuda")
    eager = TorchRunner(module, device=torch.device("cuda"), dtype=torch.float32)(x)
    graphed = TorchRunner(module, device=torch.device("cuda"), dtype=torch.float32, cuda_graphs=True)
    first, second = graphed(x), graphed(x * 0.5)
    assert torch.allclose(first, eager, atol=1e-5)
    assert not torch.equal(first, second)  # the replay's output is copied out, not shared


def test_a_graph_the_importer_cannot_take_falls_back_to_onnxruntime(home: Path, caplog) -> None:
    model = tiny_u2net_model()
    for node in model.graph.node:
        if node.op_type == "Sigmoid":
            node.op_type = "Softsign"
    install_model(home, "u2net", model)
    caplog.set_level(logging.INFO, logger="streammat.matting.runners")
    matter = create_matter(create_session("u2net", device="cuda"), device="cuda")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("the torch backend cannot run this graph" in m and "Softsign" in m for m in warnings)
    assert matter.choice.runner in ("ort-cuda", "ort-cpu")
    if matter.choice.runner == "ort-cpu":
        assert isinstance(matter._runner, OrtCpuRunner)
    assert matter(batches(1)[0]).alpha.shape == (4, 180, 320)


def test_feather_blur_and_composite_on_cuda_give_the_hosts_levels() -> None:
    import cv2

    from streammat.matting.feather import feather_host, feather_torch, gaussian_blur_torch
    from streammat.sinks.compositing import composite, composite_torch

    g = torch.Generator().manual_seed(11)
    alpha = (torch.rand(3, 90, 160, generator=g) > 0.5).to(torch.uint8) * 255
    host, device = alpha.clone(), alpha.cuda()
    feather_host(host.numpy(), 6)
    feather_torch(device, 6)
    assert torch.equal(device.cpu(), host)
    blurred = gaussian_blur_torch(alpha.cuda(), 19, 3.0, border="reflect").cpu()
    assert np.array_equal(blurred[0].numpy(), cv2.GaussianBlur(alpha[0].numpy(), (19, 19), 3.0))
    rgb = torch.randint(0, 256, (3, 90, 160, 3), generator=g, dtype=torch.uint8)
    plate = torch.randint(0, 256, (90, 160, 3), generator=g, dtype=torch.uint8)
    made = composite_torch(rgb.cuda(), alpha.cuda(), plate.cuda()).cpu()
    assert np.array_equal(made.numpy(), composite(rgb.numpy(), alpha.numpy(), plate.numpy()))


def resident_selfie(home: Path) -> tuple:
    from streammat.matting.gpu import DeviceResident
    from streammat.matting.temporal import TemporalMatter
    from streammat.sinks.compositing import Compositor, parse_background

    install_model(home, "selfie", tiny_selfie_model())
    matter = create_matter(create_session("selfie", device="cpu"), device="cuda")
    green = parse_background("green")
    resident = DeviceResident(
        TemporalMatter(matter, threshold=0.5, feather=3), torch.device("cuda", 0), compositor=Compositor(green)
    )
    on_host = TemporalMatter(matter, threshold=0.5, feather=3)  # the alpha back first, finished on the host
    host_compositor = Compositor(green)
    host_compositor.prepare(320, 180)
    return resident, on_host, host_compositor


def test_a_resident_stage_on_cuda_finishes_as_the_host_does(home: Path) -> None:
    from streammat.sinks.compositing import CompositedBatch

    resident, on_host, compositor = resident_selfie(home)
    for batch in batches(3):
        got = resident(batch)
        assert isinstance(got, CompositedBatch) and got.alpha.device.type == "cpu"
        assert_within_bounds(got.alpha, on_host(batch).alpha)
        expected = compositor.composites(batch.images.numpy(), got.alpha.numpy())
        assert np.array_equal(got.composite.numpy(), expected)


def test_no_device_to_host_copy_before_the_copy_back(home: Path) -> None:
    """The torch profiler's view of one batch: the alpha and the composite are the only
    copies from the device, after pre-processing, model and post-processing."""
    from streammat.matting.gpu import device_copies

    resident, _, _ = resident_selfie(home)
    batch = batches(1)[0]
    resident(batch)  # warm-up
    step, pre = device_copies(lambda: resident.prepare(batch))
    step, model = device_copies(lambda: resident.infer(step))
    made, post = device_copies(lambda: resident.finish_on_device(step))
    _, back = device_copies(lambda: [t.cpu() for t in made])
    assert (pre["DtoH"], model["DtoH"], post["DtoH"]) == (0, 0, 0)
    assert back["DtoH"] == 2 and pre["HtoD"] >= 1

"""The device half of the finishing steps, checked on CPU tensors: torch's feather and
background blur give OpenCV's levels, torch's composite gives numpy's, and a matting
stage kept where its frames are (``DeviceResident``) returns what the host path returns,
with its composite made once. ``tests/test_gpu.py`` runs the same on CUDA."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streammat.frames import Batch, MattedBatch
from streammat.matting import create_matter
from streammat.matting.feather import feather, feather_host, feather_torch, gaussian_blur_torch
from streammat.matting.gpu import DeviceResident, matter_device, on_device
from streammat.matting.sessions import create_session
from streammat.matting.temporal import TemporalMatter
from streammat.sinks import create_sink
from streammat.sinks.compositing import (
    CompositedBatch,
    Compositor,
    composite,
    composite_background,
    composite_torch,
    parse_background,
)
from streammat.testing import install_model, tiny_selfie_model

CPU = torch.device("cpu")


def masks(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Hard edges, with a patch of every level: what feathering meets."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, h, w, generator=g) > 0.5).to(torch.uint8) * 255
    a[:, h // 4 : h // 2, w // 8 : w // 2] = torch.randint(0, 256, (n, h // 2 - h // 4, w // 2 - w // 8), generator=g)
    return a


def frames(n: int, h: int, w: int, start: int = 0) -> Batch:
    """A gradient with a moving square and some noise (the tiny model's mask varies)."""
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:h, 0:w]
    images = []
    for i in range(n):
        img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], axis=-1)
        x0 = 4 + 3 * (start + i)
        img[h // 4 : h // 2, x0 : x0 + w // 4] = (230, 40, 40)
        images.append((img + rng.integers(0, 20, img.shape)).clip(0, 255))
    idx = tuple(range(start, start + n))
    return Batch(torch.from_numpy(np.stack(images).astype(np.uint8)), idx, Fraction(1, 30), idx)


@pytest.mark.parametrize("radius", [1, 2, 5, 16, 60])
def test_torch_feather_gives_opencvs_levels(radius: int) -> None:
    alpha = masks(2, 45, 77, radius)
    host, device = alpha.clone(), alpha.clone()
    feather_host(host.numpy(), radius)
    feather_torch(device, radius)
    assert torch.equal(host, device)
    assert not torch.equal(host, alpha)  # it did blur


def test_feather_dispatches_on_where_the_alpha_lives() -> None:
    alpha = masks(1, 20, 30, 0)
    same = alpha.clone()
    feather(same, 0)
    assert torch.equal(same, alpha)
    feather(same, 3)  # a host tensor: OpenCV
    expected = alpha.clone()
    feather_host(expected.numpy(), 3)
    assert torch.equal(same, expected)


@pytest.mark.parametrize(("size", "sigma"), [(3, 0.8), (19, 3.0), (9, 1.5)])
@pytest.mark.parametrize("shape", [(12, 40), (5, 7), (1, 9)])
def test_gaussian_blur_matches_opencv_with_mirrored_edges(size: int, sigma: float, shape: tuple[int, int]) -> None:
    x = masks(3, *shape, size)
    got = gaussian_blur_torch(x, size, sigma, border="reflect")
    for i in range(3):
        assert np.array_equal(got[i].numpy(), cv2.GaussianBlur(x[i].numpy(), (size, size), sigma))


def test_torch_composite_is_numpys_formula() -> None:
    g = torch.Generator().manual_seed(3)
    rgb = torch.randint(0, 256, (2, 9, 11, 3), generator=g, dtype=torch.uint8)
    bg = torch.randint(0, 256, (9, 11, 3), generator=g, dtype=torch.uint8)
    alpha = torch.randint(0, 256, (2, 9, 11), generator=g, dtype=torch.uint8)
    alpha[0, 0, :3] = torch.tensor([0, 255, 128], dtype=torch.uint8)
    expected = composite(rgb.numpy(), alpha.numpy(), bg.numpy())
    assert np.array_equal(composite_torch(rgb, alpha, bg).numpy(), expected)


@pytest.mark.parametrize("spec", ["green", "#336699", "image", "blur", "blur:1.5"])
def test_compositor_on_torch_tensors_matches_the_host(spec: str, tmp_path: Path) -> None:
    if spec == "image":
        spec = str(tmp_path / "bg.png")
        yy, xx = np.mgrid[0:50, 0:90]
        cv2.imwrite(spec, np.stack([xx * 2, yy * 4, xx + yy], axis=-1).astype(np.uint8))
    batch = frames(2, 64, 96)
    alpha = masks(2, 64, 96, 5)
    comp = Compositor(parse_background(spec))
    comp.prepare(96, 64)
    host = np.stack([comp.apply(batch.images[i].numpy(), alpha[i].numpy()) for i in range(2)])
    device = comp.apply_torch(batch.images, alpha).numpy()
    worst = int(np.abs(host.astype(np.int16) - device).max())
    # plates are the same pixels; the blurred frame comes from torch's own resizes
    assert worst <= (2 if spec.startswith("blur") else 0), worst


def test_sinks_take_the_composite_made_for_their_background() -> None:
    batch = frames(2, 16, 24)
    alpha = masks(2, 16, 24, 1)
    green = parse_background("green")
    made = torch.zeros_like(batch.images)  # not what the host would make: shows which one is used
    done = CompositedBatch(batch, alpha, made, green)
    comp = Compositor(green)
    comp.prepare(24, 16)
    assert np.array_equal(comp.composites(batch.images.numpy(), alpha.numpy(), made=done), made.numpy())
    other = Compositor(parse_background("blue"))
    other.prepare(24, 16)
    host = other.composites(batch.images.numpy(), alpha.numpy(), made=done)
    expected = np.stack([other.apply(batch.images[i].numpy(), alpha[i].numpy()) for i in range(2)])
    assert np.array_equal(host, expected)
    with pytest.raises(ValueError, match="composite"):
        CompositedBatch(batch, alpha, made[:, :8], green)


def test_the_composite_background_comes_from_the_composite_sink(tmp_path: Path) -> None:
    comp = create_sink(str(tmp_path / "c.mp4"), background="green")
    plain = create_sink(str(tmp_path / "a.mov"))
    assert composite_background([plain, comp]) == parse_background("green")
    assert composite_background([plain]) is None


@pytest.fixture
def selfie(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    install_model(home, "selfie", tiny_selfie_model())
    return create_session("selfie", device="cpu")


def controls(session) -> TemporalMatter:
    inner = create_matter(session, device="cpu")
    return TemporalMatter(inner, smoothing=0.5, threshold=0.4, feather=3, every=2, refine="guided")


def test_a_resident_stage_returns_what_the_host_path_returns(selfie) -> None:
    """The resident stage's steps on CPU tensors (its code path without a GPU): the same
    alpha as the unwrapped matter, and the composite the sink would have made."""
    host, resident = controls(selfie), DeviceResident(controls(selfie), CPU, compositor=None)
    green = parse_background("green")
    compositing = DeviceResident(controls(selfie), CPU, compositor=Compositor(green))
    sink_side = Compositor(green)
    sink_side.prepare(96, 64)
    for k in range(3):
        batch = frames(3, 64, 96, start=3 * k)
        expected = host(batch).alpha
        got = resident.finish(batch, resident.infer(resident.prepare(batch)))
        assert type(got) is MattedBatch and got.batch is batch
        assert torch.equal(got.alpha, expected)
        made = compositing(batch)
        assert isinstance(made, CompositedBatch) and made.background == green
        assert torch.equal(made.alpha, expected)
        host_made = sink_side.composites(batch.images.numpy(), expected.numpy())
        assert np.array_equal(made.composite.numpy(), host_made)


def test_on_device_leaves_a_cpu_stage_alone(selfie) -> None:
    matter = controls(selfie)
    assert matter_device(matter) == CPU
    assert on_device(matter, background=parse_background("green")) is matter

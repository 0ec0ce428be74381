"""The batched fast path against rembg's exact per-frame path, family by family.

Each family gets a tiny ONNX model of its real input/output signature, installed under a
temporary rembg model home and loaded through rembg's own ``new_session`` (via
``create_session``). The fast path may differ from ``rembg.remove(frame, only_mask=True)``
only by its resize kernels (OpenCV: 2x2 halvings, then bicubic; ``model_io.py``) instead
of PIL LANCZOS. Tolerance, in uint8 alpha levels, over the frames of the batch:

- mean |fast - rembg| <= 2.0 levels
- max  |fast - rembg| <= 48 levels (isolated pixels at texture edges)
- at least 95 % of the pixels within 4 levels

(Measured on these frames: mean 0.33-1.16, max 4-43, >= 95.6 % within 4 levels; the u2net
signature is the worst because its tiny model, a full-resolution 3x3 conv, passes the
background texture straight into the mask.)
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from streammat.frames import Batch
from streammat.matting import Matter, create_matter
from streammat.matting.batched import BatchedMatter
from streammat.matting.reference import RembgMatter
from streammat.matting.sessions import create_session
from streammat.testing import (
    install_model,
    tiny_birefnet_model,
    tiny_bria_model,
    tiny_isnet_model,
    tiny_selfie_model,
    tiny_u2net_model,
)

MEAN_MAX = 2.0
ABS_MAX = 48
WITHIN = 4
WITHIN_FRACTION = 0.95

FAMILIES = {
    "u2net": tiny_u2net_model,
    "u2netp": tiny_u2net_model,
    "u2net_human_seg": tiny_u2net_model,
    "silueta": tiny_u2net_model,
    "isnet-general-use": tiny_isnet_model,
    "isnet-anime": tiny_isnet_model,
    "birefnet-general": tiny_birefnet_model,
    "birefnet-portrait": tiny_birefnet_model,
    "bria-rmbg": tiny_bria_model,
    "selfie": tiny_selfie_model,
    "selfie-landscape": lambda: tiny_selfie_model(landscape=True),
}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rembg-home"
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return home


def frames(h: int, w: int, n: int) -> np.ndarray:
    """A person-like picture (skimage's astronaut) over a moving coloured texture."""
    import cv2
    from skimage import data

    face = data.astronaut()
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(n):
        bg = np.stack([(xx * 3 + yy + i * 20) % 256, (yy * 2) % 256, ((xx + yy) // 2 + i * 40) % 256], -1)
        bg = bg.astype(np.uint8)
        s = min(h, w) // 2
        y0, x0 = (h - s) // 2, min((w - s) // 3 + i * 7, w - s)
        bg[y0 : y0 + s, x0 : x0 + s] = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA)
        out.append(bg)
    return np.stack(out)


def make_batch(images: np.ndarray) -> Batch:
    n = images.shape[0]
    return Batch(torch.from_numpy(images), tuple(range(n)), Fraction(1, 30), tuple(range(n)))


def rembg_masks(session, images: np.ndarray) -> np.ndarray:
    from rembg import remove

    return np.stack([np.asarray(remove(im, session=session, only_mask=True)) for im in images])


def assert_close(fast: np.ndarray, ref: np.ndarray, label: str) -> None:
    d = np.abs(fast.astype(np.int16) - ref.astype(np.int16))
    stats = f"{label}: mean {d.mean():.3f} max {d.max()} within {WITHIN}: {(d <= WITHIN).mean():.4f}"
    print(stats)
    assert d.mean() <= MEAN_MAX, stats
    assert d.max() <= ABS_MAX, stats
    assert (d <= WITHIN).mean() >= WITHIN_FRACTION, stats
    assert ref.max() - ref.min() > 100, f"{label}: degenerate reference mask, test says nothing"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_matches_rembg(name: str, home: Path) -> None:
    install_model(home, name, FAMILIES[name]())
    session = create_session(name, device="cpu")
    matter = create_matter(session, device="cpu")
    assert isinstance(matter, BatchedMatter) and matter.backend == "cpu"
    images = frames(360, 640, 3)
    out = matter(make_batch(images[:2]))
    assert tuple(out.alpha.shape) == (2, 360, 640) and out.alpha.dtype == torch.uint8
    assert_close(out.alpha.numpy(), rembg_masks(session, images[:2]), name)


@pytest.mark.parametrize("name", ["u2net", "birefnet-general", "selfie"])
def test_odd_frame_size(name: str, home: Path) -> None:
    """Frames smaller than the model input: the mask is shrunk, not enlarged."""
    install_model(home, name, FAMILIES[name]())
    session = create_session(name, device="cpu")
    images = frames(173, 301, 2)
    out = BatchedMatter(session)(make_batch(images))
    assert_close(out.alpha.numpy(), rembg_masks(session, images), f"{name} 173x301")


def test_fixed_batch_graph_loops(home: Path) -> None:
    """A graph with a fixed batch of 1 runs once per frame; same result as dynamic."""
    images = frames(120, 200, 4)
    install_model(home, "u2net", tiny_u2net_model(dynamic_batch=True))
    dynamic = BatchedMatter(create_session("u2net", device="cpu"))(make_batch(images[:3]))
    install_model(home, "u2net", tiny_u2net_model(dynamic_batch=False))
    fixed_matter = BatchedMatter(create_session("u2net", device="cpu"))
    fixed = fixed_matter(make_batch(images[:3]))
    assert fixed_matter._runner.fixed_batch == 1
    assert torch.equal(fixed.alpha, dynamic.alpha)


def test_one_model_run_per_batch(home: Path) -> None:
    install_model(home, "u2net", tiny_u2net_model())
    matter = BatchedMatter(create_session("u2net", device="cpu"))
    seen: list[int] = []
    run = matter._runner.inner.run

    def spy(names, feeds):
        seen.append(next(iter(feeds.values())).shape[0])
        return run(names, feeds)

    matter._runner.inner = type("Spy", (), {"run": staticmethod(spy)})()
    images = frames(64, 96, 8)
    out = matter(make_batch(images[:3]))
    assert seen == [3]  # one run for the whole (short) batch
    assert out.alpha.shape[0] == 3


def test_unknown_and_custom_models_take_exact_path(home: Path, tmp_path: Path, caplog) -> None:
    custom = tmp_path / "mine.onnx"
    custom.write_bytes(tiny_u2net_model().SerializeToString())
    session = create_session(str(custom), device="cpu")
    with caplog.at_level(logging.INFO, logger="streammat.matting"):
        matter = create_matter(session, device="cpu")
    assert isinstance(matter, RembgMatter)
    assert "exact per-frame rembg path" in caplog.text
    install_model(home, "u2net", tiny_u2net_model())
    assert isinstance(create_matter(create_session("u2net", device="cpu"), fast=False), RembgMatter)


def test_mismatched_graph_takes_exact_path(home: Path) -> None:
    """A file named like a known family but with another input shape is not guessed at."""
    install_model(home, "u2net", tiny_isnet_model())  # 1024² graph under the 320² name
    matter = create_matter(create_session("u2net", device="cpu"), device="cpu")
    assert isinstance(matter, RembgMatter)


def test_matter_protocol(home: Path) -> None:
    install_model(home, "u2net", tiny_u2net_model())
    matter = create_matter(create_session("u2net", device="cpu"))
    assert isinstance(matter, Matter)


# -- GPU path selection (runs on the CPU: it must pick the CPU and say why) -----------------


def test_cuda_path_math_on_cpu(home: Path) -> None:
    """The CUDA path's math (torch tensors, run here on the CPU) agrees with the host path's
    (numpy and OpenCV): the same resizes, applied as matrices instead of OpenCV calls."""
    from streammat.matting.families import FAMILIES
    from streammat.matting.model_io import (
        postprocess,
        postprocess_array,
        preprocess,
        preprocess_array,
        resize_masks,
        resize_masks_array,
    )

    images = frames(180, 320, 2)
    for name in ("u2net", "selfie"):
        fam = FAMILIES[name]
        a = preprocess_array(images, fam)
        b = preprocess(torch.from_numpy(images), fam).numpy()
        assert a.shape == b.shape and a.flags.c_contiguous
        # in levels: OpenCV rounds between its resize steps, the matrices do not
        d = (
            np.abs(a - b)
            * 255.0
            * np.asarray(fam.std, np.float32).reshape((1, 3, 1, 1) if fam.layout == "NCHW" else (3,))
        )
        assert d.mean() <= 0.5 and (d <= 2.01).mean() >= 0.995, (name, d.mean(), d.max())
    raw = np.random.default_rng(3).random((2, 1, 40, 40), dtype=np.float32)
    masks = postprocess_array(raw, FAMILIES["u2net"])
    assert np.abs(masks.astype(int) - postprocess(torch.from_numpy(raw), FAMILIES["u2net"]).numpy()).max() <= 1
    for size in ((180, 320), (20, 30), (90, 41)):
        cpu = np.empty((2, *size), np.uint8)
        resize_masks_array(masks, cpu)
        gpu_math = resize_masks(torch.from_numpy(masks), *size).numpy()
        assert np.abs(cpu.astype(int) - gpu_math).max() <= 1, size

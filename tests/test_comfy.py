"""The ComfyUI nodes against the seed's per-image ``rembg.remove`` (reference.remove_background).

ComfyUI is not installed: the node classes are called directly. Tolerances for known
models are those of ``tests/test_batched.py`` (the fast path's resize kernels); for a
custom model (exact rembg path) the nodes must reproduce the seed bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_batched import assert_close, frames

from streammat import comfy
from streammat.matting.reference import remove_background
from streammat.testing import install_model, tiny_selfie_model, tiny_u2net_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rembg-home"
    install_model(home, "u2net", tiny_u2net_model())
    install_model(home, "selfie", tiny_selfie_model())
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return home


def images(n: int = 3, h: int = 120, w: int = 200) -> torch.Tensor:
    """ComfyUI IMAGE: float (B,H,W,3) in 0..1, values that are not multiples of 1/255."""
    x = torch.from_numpy(frames(h, w, n)).float() / 255.0
    return (x + 0.4 / 255.0).clamp(0, 1)


def test_mappings_and_interface() -> None:
    assert set(comfy.NODE_CLASS_MAPPINGS) == set(comfy.NODE_DISPLAY_NAME_MAPPINGS)
    remove = comfy.NODE_CLASS_MAPPINGS["StreammatRemoveBackground"]
    assert remove.RETURN_TYPES == ("IMAGE", "MASK")
    assert remove.INPUT_TYPES()["required"] == {"rembg_session": ("REMBG_SESSION",), "image": ("IMAGE",)}
    assert getattr(remove(), remove.FUNCTION)
    session = comfy.NODE_CLASS_MAPPINGS["StreammatRemBGSession"]
    assert session.RETURN_TYPES == ("REMBG_SESSION",)


def test_session_node_lists_models(home: Path) -> None:
    req = comfy.RemBGSessionBatched.INPUT_TYPES()["required"]
    models = req["model"][0]
    assert models[0] == "selfie" and "u2net" in models and "u2net_custom" not in models
    assert req["providers"][0] == ["CPU", "CUDA"]


@pytest.mark.parametrize("model", ["selfie", "u2net"])
def test_nodes_match_seed(model: str, home: Path) -> None:
    (wrapped,) = comfy.RemBGSessionBatched().execute(model, "CPU")
    x = images(5)
    cutout, mask = comfy.RemoveBackgroundBatched().execute(wrapped, x, batch_size=2)  # 3 chunks
    ref_cutout, ref_mask = remove_background(wrapped.session, x)
    assert cutout.shape == ref_cutout.shape == (5, 120, 200, 3) and cutout.dtype == torch.float32
    assert mask.shape == ref_mask.shape == (5, 120, 200) and mask.dtype == torch.float32
    to_u8 = lambda t: (t * 255).round().to(torch.uint8).numpy()  # noqa: E731
    assert_close(to_u8(mask), to_u8(ref_mask), f"comfy {model} mask")
    # cutout = rgb * alpha: its error is bounded by the alpha error (plus rounding)
    d = np.abs(to_u8(cutout).astype(int) - to_u8(ref_cutout).astype(int))
    assert d.mean() <= 2.0 and (d <= 4).mean() >= 0.95


def test_seed_session_objects_are_accepted(home: Path) -> None:
    """A bare rembg session and the seed's wrapper (an object with ``.session``) both work."""
    (wrapped,) = comfy.RemBGSessionBatched().execute("u2net", "CPU")
    x = images(2)
    ours = comfy.RemoveBackgroundBatched().execute(wrapped, x)[1]
    bare = comfy.RemoveBackgroundBatched().execute(wrapped.session, x)[1]

    class SeedSession:  # ComfyUI essentials' RemBGSession+ wrapper
        def __init__(self, session):
            self.session = session

    seed = comfy.RemoveBackgroundBatched().execute(SeedSession(wrapped.session), x)[1]
    assert torch.equal(ours, bare) and torch.equal(ours, seed)
    # the seed's own remove node calls process(img) on the session it is given
    from PIL import Image

    out = wrapped.process(Image.fromarray((x[0].numpy() * 255).astype(np.uint8)))
    assert out.mode == "RGBA"


def test_custom_model_is_exact(home: Path, tmp_path: Path) -> None:
    """Unknown models go through rembg itself: the nodes equal the seed exactly."""
    from streammat.matting.sessions import create_session

    custom = tmp_path / "mine.onnx"
    custom.write_bytes(tiny_u2net_model().SerializeToString())
    session = create_session(str(custom), device="cpu")
    x = images(3)
    cutout, mask = comfy.RemoveBackgroundBatched().execute(session, x, batch_size=2)
    ref_cutout, ref_mask = remove_background(session, x)
    assert torch.equal(mask, ref_mask)
    assert torch.equal(cutout, ref_cutout)

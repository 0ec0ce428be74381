"""MediaPipe selfie segmentation as rembg sessions (``selfie``, ``selfie-landscape``).

The sessions follow rembg's session interface (``predict``, ``inner_session``, ``name()``,
``download_models``) without importing rembg: streammat creates them directly, so a run on
the built-in model never pays for importing rembg (its background-removal module pulls
pymatting and numba, 1.3-2 s here). ``register()`` adds rembg-derived copies to rembg's
registry, so ``rembg.remove(img, session=new_session("selfie"))`` works unchanged.

The ONNX model (converted from MediaPipe's TfLite graph by ``store.pull``)
keeps the graph's NHWC layout and has a dynamic batch dimension, so streammat's batched path
runs ``session.inner_session`` on a whole batch at once:

- input: ``(N, H, W, 3)`` float32 RGB in ``[0, 1]`` with ``(H, W) = SELFIE_INPUT_SIZES[name]``
- output: ``(N, H, W, 1)`` float32 person probability in ``[0, 1]`` (already a sigmoid; no
  min-max normalisation, so a frame without a person gives an empty mask)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image
from PIL.Image import Image as PILImage

from . import store

__all__ = [
    "SELFIE_INPUT_SIZES",
    "SELFIE_LAYOUT",
    "SelfieSession",
    "SelfieLandscapeSession",
    "create",
    "register",
]

log = logging.getLogger(__name__)

#: model name -> network input size as (H, W)
SELFIE_INPUT_SIZES: dict[str, tuple[int, int]] = {"selfie": (256, 256), "selfie-landscape": (144, 256)}
#: tensor layout of the ONNX input and output
SELFIE_LAYOUT = "NHWC"


class SelfieSession:
    """MediaPipe selfie segmentation, square 256x256 variant."""

    def __init__(self, model_name: str, sess_opts: Any, *args: Any, providers: list[str] | None = None, **kwargs: Any):
        import onnxruntime as ort

        self.model_name = model_name
        self.inner_session = ort.InferenceSession(
            str(type(self).download_models()),
            sess_options=sess_opts,
            providers=providers or ["CPUExecutionProvider"],
        )

    def predict(self, img: PILImage, *args: Any, **kwargs: Any) -> list[PILImage]:
        h, w = SELFIE_INPUT_SIZES[self.name()]
        im = img.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        x = (np.asarray(im, dtype=np.float32) / 255.0)[None]
        inp = self.inner_session.get_inputs()[0].name
        pred = self.inner_session.run(None, {inp: x})[0][0, :, :, 0]
        mask = Image.fromarray((pred.clip(0, 1) * 255).astype(np.uint8))
        return [mask.resize(img.size, Image.Resampling.LANCZOS)]

    @classmethod
    def download_models(cls, *args: Any, **kwargs: Any) -> str:
        """The stored ONNX file, pulled first when it is missing."""
        store.ensure_available(cls.name())
        return str(store.model_file(cls.name()))

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        return "selfie"


class SelfieLandscapeSession(SelfieSession):
    """MediaPipe selfie segmentation, landscape 144x256 (HxW) variant."""

    @classmethod
    def name(cls, *args: Any, **kwargs: Any) -> str:
        return "selfie-landscape"


_CLASSES: tuple[type[SelfieSession], ...] = (SelfieSession, SelfieLandscapeSession)


def create(name: str, *, providers: list[str], sess_opts: Any) -> SelfieSession:
    """The built-in session ``name`` (``selfie`` or ``selfie-landscape``), created directly."""
    cls = next(c for c in _CLASSES if c.name() == name)
    return cls(name, sess_opts, providers=providers)


def register() -> None:
    """Add the selfie sessions to rembg's registry so ``rembg.new_session("selfie")`` works.

    The registered classes also derive from rembg's ``BaseSession``. Idempotent."""
    import rembg.session_factory as factory
    import rembg.sessions as rs
    from rembg.sessions.base import BaseSession

    for plain in _CLASSES:
        name = plain.name()
        cls = _REGISTERED.get(name) or _REGISTERED.setdefault(name, type(plain.__name__, (plain, BaseSession), {}))
        rs.sessions.setdefault(name, cls)
        for names in (rs.sessions_names, rs.sessions_names_no_credentials, rs.sessions_names_downloadable):
            if name not in names:
                names.append(name)
        lists = [rs.sessions_class]
        if factory.sessions_class is not rs.sessions_class:  # a rembg that copies the list
            log.debug("rembg.session_factory keeps its own sessions_class list; registering in both")
            lists.append(factory.sessions_class)
        for classes in lists:
            if not any(c.name() == name for c in classes):
                classes.append(cls)


_REGISTERED: dict[str, type] = {}

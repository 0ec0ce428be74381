"""Test helpers that ship with streammat, for its own tests and for users' tests.

- ``models``: ``tiny_u2net_model()`` — a few-KB ONNX model with rembg's u2net signature
  (input ``(N,3,320,320)``, seven outputs ``(N,1,320,320)``) whose mask is a smooth,
  deterministic function of the image, so masks differ from frame to frame; tiny models
  of the other families (``tiny_isnet_model`` …); ``install_model(home, name, model)``
  places one where rembg's own ``new_session(name)`` finds it, with no network.
- ``media``: ``make_clip(path, ...)`` — a small synthetic clip (VFR, audio, rotation, odd
  sizes, any codec) encoded with PyAV.
- ``camera``: ``SyntheticCamera`` — an opener for ``CameraSource`` delivering numbered
  frames in real time, that can stall, freeze or disappear; ``camera_clip`` for file cameras.
- ``stages``: ``ListSource`` and ``CollectingSink`` to drive a ``Pipeline``.
"""

from __future__ import annotations

from .camera import SyntheticCamera, SyntheticCapture, camera_clip, frame_number, synthetic_frame
from .media import make_clip
from .models import (
    install_model,
    model_path,
    tiny_birefnet_model,
    tiny_bria_model,
    tiny_isnet_model,
    tiny_mask_model,
    tiny_selfie_model,
    tiny_u2net_model,
)
from .stages import CollectingSink, ListSource

__all__ = [
    "tiny_u2net_model",
    "tiny_mask_model",
    "tiny_isnet_model",
    "tiny_birefnet_model",
    "tiny_bria_model",
    "tiny_selfie_model",
    "install_model",
    "model_path",
    "make_clip",
    "synthetic_frame",
    "frame_number",
    "SyntheticCapture",
    "SyntheticCamera",
    "camera_clip",
    "ListSource",
    "CollectingSink",
]

"""What each known model family does around its ONNX graph, read from rembg's sessions.

rembg wraps every model in the same per-image recipe, with family-specific constants
(``rembg/sessions/<family>.py``: ``normalize(img, mean, std, size)`` then ``predict``):

1. resize the RGB image to the model size with PIL LANCZOS (uint8 result);
2. divide by the image's own maximum (``BaseSession.normalize``), then ``(x-mean)/std``;
3. one ONNX run, take ``outputs[0][:, 0]``;
4. optionally a sigmoid (BiRefNet), then a per-image min–max normalisation;
5. ``(pred * 255).astype(uint8)`` (truncation) and a LANCZOS resize back to the frame.

The built-in selfie models (``streammat.models.selfie``) take NHWC RGB in [0, 1]
(divide by 255, no mean/std) and return a sigmoid probability: no min–max.

Families are keyed by the rembg session name (``type(session).name()``). Custom-model
sessions (``u2net_custom``, ``dis_custom``, ``ben_custom``) are deliberately absent: their
graphs are arbitrary, so they take the exact per-frame rembg path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..models.selfie import SELFIE_INPUT_SIZES, SELFIE_LAYOUT

__all__ = ["Family", "FAMILIES", "family_for", "session_name"]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Family:
    """The pre/post-processing of one model family (see the module docstring)."""

    name: str
    #: model input (height, width)
    size: tuple[int, int]
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    #: "max": divide by the resized image's maximum (rembg); "255": divide by 255
    scale: Literal["max", "255"] = "max"
    #: apply a sigmoid to the raw output before anything else (BiRefNet)
    sigmoid: bool = False
    #: per-image min–max normalisation of the output (every rembg family)
    minmax: bool = True

    def check_input_shape(self, shape: list[Any]) -> str | None:
        """Why the ONNX input ``shape`` does not fit this family, or None when it does."""
        if len(shape) != 4:
            return f"expected a 4-d input, got {shape}"
        h, w = self.size
        want = [3, h, w] if self.layout == "NCHW" else [h, w, 3]
        for got, exp in zip(shape[1:], want, strict=True):
            if isinstance(got, int) and got != exp:
                return f"expected input (N,{','.join(map(str, want))}), got {shape}"
        return None


def _u2net(name: str) -> Family:
    return Family(name, (320, 320), IMAGENET_MEAN, IMAGENET_STD)


def _birefnet(name: str) -> Family:
    return Family(name, (1024, 1024), IMAGENET_MEAN, IMAGENET_STD, sigmoid=True)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        # rembg/sessions/{u2net,u2netp,u2net_human_seg,silueta}.py
        _u2net("u2net"),
        _u2net("u2netp"),
        _u2net("u2net_human_seg"),
        _u2net("silueta"),
        # rembg/sessions/dis_general_use.py, dis_anime.py
        Family("isnet-general-use", (1024, 1024), (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
        Family("isnet-anime", (1024, 1024), IMAGENET_MEAN, (1.0, 1.0, 1.0)),
        # rembg/sessions/birefnet_*.py (all inherit BiRefNetSessionGeneral.predict)
        *[
            _birefnet(n)
            for n in (
                "birefnet-general",
                "birefnet-general-lite",
                "birefnet-general-fp16",
                "birefnet-portrait",
                "birefnet-dis",
                "birefnet-hrsod",
                "birefnet-cod",
                "birefnet-massive",
            )
        ],
        # rembg/sessions/bria_rmbg.py
        Family("bria-rmbg", (1024, 1024), IMAGENET_MEAN, IMAGENET_STD),
        # streammat/models/selfie.py (MediaPipe selfie segmentation)
        *[
            Family(name, size, layout=SELFIE_LAYOUT, scale="255", minmax=False)
            for name, size in SELFIE_INPUT_SIZES.items()
        ],
    ]
}


def session_name(session: Any) -> str | None:
    """The rembg name of ``session``'s class (``type(session).name()``), or None."""
    name_fn = getattr(type(session), "name", None)
    if callable(name_fn):
        try:
            name = name_fn()
        except Exception:  # noqa: BLE001 - a foreign session class; treat as unknown
            name = None
        if isinstance(name, str):
            return name
    name = getattr(session, "model_name", None)
    return name if isinstance(name, str) else None


def family_for(session: Any) -> Family | None:
    """The family of a rembg session, or None when the fast path does not know it.

    Also None when the session's ONNX input does not have the family's shape (a model
    file replaced by something else): the exact rembg path is the safe choice then."""
    name = session_name(session)
    family = FAMILIES.get(name or "")
    if family is None:
        return None
    inner = getattr(session, "inner_session", None)
    if inner is None:
        return None
    shape = list(inner.get_inputs()[0].shape)
    if family.layout == "NHWC" and len(shape) == 4 and all(isinstance(d, int) for d in shape[1:3]):
        # the selfie session feeds its graph at the graph's own size
        family = replace(family, size=(shape[1], shape[2]))
    why = family.check_input_shape(shape)
    if why is not None:
        log.info("model %s: %s; not using the batched path", name, why)
        return None
    return family

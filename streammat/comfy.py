"""ComfyUI nodes: the batched matting stage behind the seed node's interface.

The seed (ComfyUI essentials' ``RemBGSession+`` / ``ImageRemoveBackground+``) mattes a
batch one image at a time: ``T.ToPILImage()(img)`` (``(img*255).byte()``, truncation),
``rembg.remove(img, session=s)``, then splits the RGBA result into ``IMAGE`` (the naive
cutout: RGB premultiplied by the mask) and ``MASK``. ``streammat.matting.reference.
remove_background`` is that contract. These nodes keep it — same input and output types,
shapes and value ranges — and run whole batches through ``create_matter`` (the batched
fast path for known models, the exact rembg path for custom ones).

ComfyUI is not needed to import this module: it only defines the node classes and the
``NODE_CLASS_MAPPINGS`` / ``NODE_DISPLAY_NAME_MAPPINGS`` ComfyUI looks for. A custom-node
package re-exports them from its ``__init__.py``.
"""

from __future__ import annotations

import logging
import weakref
from fractions import Fraction
from typing import Any

import torch

from .errors import InputError
from .frames import Batch, MattedBatch

__all__ = [
    "StreammatSession",
    "RemBGSessionBatched",
    "RemoveBackgroundBatched",
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
]

log = logging.getLogger(__name__)

CATEGORY = "streammat"
PROVIDERS: dict[str, str] = {"CPU": "cpu", "CUDA": "cuda"}
_NEEDS_A_PATH = {"u2net_custom", "dis_custom", "ben_custom", "sam"}

# one matter per rembg session, dropped with the session
_MATTERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


class StreammatSession:
    """What ``RemBGSessionBatched`` returns as ``REMBG_SESSION``.

    ``.session`` is the rembg session (the attribute the seed's wrapper has too) and
    ``process(img)`` is the seed wrapper's per-image call, so the seed's own remove node
    also accepts it."""

    def __init__(self, session: Any, *, device: str = "auto") -> None:
        self.session = session
        self.device = device

    def process(self, image: Any) -> Any:
        from rembg import remove

        return remove(image, session=self.session)


def _rembg_session(obj: Any) -> Any:
    """The rembg session inside a ``REMBG_SESSION`` value (ours, the seed's, or bare)."""
    inner = getattr(obj, "session", None)
    return inner if inner is not None and hasattr(inner, "predict") else obj


def _matter(obj: Any) -> Any:
    from .matting import create_matter

    session = _rembg_session(obj)
    device = getattr(obj, "device", "auto")
    try:
        return _MATTERS[session]
    except (KeyError, TypeError):
        pass
    matter = create_matter(session, fast=True, device=device)
    try:
        _MATTERS[session] = matter
    except TypeError:  # not weak-referenceable: no cache
        pass
    return matter


def _model_choices() -> list[str]:
    from .matting.sessions import DEFAULT_MODEL, known_model_names

    names = [n for n in known_model_names() if n not in _NEEDS_A_PATH]
    return [DEFAULT_MODEL] + [n for n in names if n != DEFAULT_MODEL]


class RemBGSessionBatched:
    """Create the rembg session once (built-in selfie models and rembg's own models)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {"required": {"model": (_model_choices(),), "providers": (list(PROVIDERS),)}}

    RETURN_TYPES = ("REMBG_SESSION",)
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(self, model: str, providers: str) -> tuple[StreammatSession]:
        from .matting.sessions import create_session

        device = PROVIDERS.get(providers, "auto")
        return (StreammatSession(create_session(model, device=device), device=device),)


class RemoveBackgroundBatched:
    """``IMAGE`` float ``(B,H,W,3)`` in 0..1 → (``IMAGE`` cutout, ``MASK`` ``(B,H,W)``)."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        return {
            "required": {"rembg_session": ("REMBG_SESSION",), "image": ("IMAGE",)},
            "optional": {"batch_size": ("INT", {"default": 8, "min": 1, "max": 256})},
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "execute"
    CATEGORY = CATEGORY

    def execute(
        self, rembg_session: Any, image: torch.Tensor, batch_size: int = 8
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 4 or image.shape[-1] != 3:
            raise InputError(f"expected IMAGE (B,H,W,3), got {tuple(image.shape)}")
        matter = _matter(rembg_session)
        # the seed's T.ToPILImage(): (img * 255).byte(), i.e. truncation
        frames = (image.detach().to("cpu", torch.float32) * 255.0).clamp_(0, 255).to(torch.uint8)
        b = frames.shape[0]
        k = max(1, min(batch_size, b))
        cutouts, masks = [], []
        for start in range(0, b, k):
            chunk = frames[start : start + k]
            idx = tuple(range(start, start + chunk.shape[0]))
            matted: MattedBatch = matter(Batch(chunk, idx, Fraction(1, 1), idx))
            cutouts.append(matted.foreground())
            masks.append(matted.alpha)
        cutout = torch.cat(cutouts).to(torch.float32).div_(255.0)
        mask = torch.cat(masks).to(torch.float32).div_(255.0)
        return cutout, mask


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "StreammatRemBGSession": RemBGSessionBatched,
    "StreammatRemoveBackground": RemoveBackgroundBatched,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "StreammatRemBGSession": "🔧 RemBG Session (streammat, batched)",
    "StreammatRemoveBackground": "🔧 Image Remove Background (streammat, batched)",
}

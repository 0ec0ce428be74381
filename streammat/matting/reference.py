"""The seed contract, exactly as rembg computes it: one ``rembg.remove`` per frame.

This is the slow, exact path. It serves custom or unknown models that the batched fast
path does not know, and it is the reference the fast path is tested against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..frames import Batch, MattedBatch

if TYPE_CHECKING:
    import torch

__all__ = ["RembgMatter", "remove_background"]


class RembgMatter:
    """Matter that calls ``rembg.remove(frame, session=..., only_mask=True)`` per frame."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, batch: Batch) -> MattedBatch:
        from rembg import remove

        images = batch.images_array
        alpha = np.zeros(images.shape[:3], dtype=np.uint8)
        for i in range(len(batch)):
            alpha[i] = np.asarray(remove(images[i], session=self.session, only_mask=True))
        return MattedBatch(batch, alpha)


def remove_background(session: Any, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ComfyUI ``ImageRemoveBackground+`` contract, per image through PIL and rembg.

    ``images`` is float ``(B,H,W,3)`` in 0..1; returns the foreground ``(B,H,W,3)``
    (RGB premultiplied by the mask, rembg's naive cutout) and the mask ``(B,H,W)``,
    both float in 0..1."""
    import torch
    from PIL import Image
    from rembg import remove

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        got = f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}"
        raise ConfigError(f"remove_background: images must be a float torch tensor (B,H,W,3) in 0..1, got {got}")
    fgs, masks = [], []
    for img in images:
        arr = np.clip(255.0 * img.detach().cpu().numpy(), 0, 255).astype(np.uint8)
        out = np.asarray(remove(Image.fromarray(arr), session=session), dtype=np.float32) / 255.0
        fgs.append(torch.from_numpy(out[..., :3].copy()))
        masks.append(torch.from_numpy(out[..., 3].copy()))
    return torch.stack(fgs), torch.stack(masks)

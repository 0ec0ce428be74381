"""Edge-aware refinement of an upsampled matte: a colour-guided filter in an edge band.

A model that sees 256×256 pixels gives masks whose edges, upsampled to 720p, are blobby:
they do not follow the hair or the shoulder in the frame. The guided filter of He et al.
("Guided Image Filtering", 2010/2013), guided by the frame's three colour channels, makes
the matte locally a linear function of the colour, so its edges move onto the colour edges
nearby. It runs the "Fast Guided Filter" way (He & Sun, 2015): the coefficients are
computed on a grid ``subsample`` times coarser and interpolated back to full resolution.

Only pixels in a band around the mask's edge change (the cells within ``band`` pixels of
where the coarse mask is neither 0 nor 1): the interiors of the person and of the
background keep the model's values, which a filter over the whole frame would smear
where the colours inside the person vary. The result is clamped to ``[0,255]``.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .cells import Cells, box_mean, sample, sample_mean

__all__ = ["guided_refine", "DEFAULT_RADIUS", "DEFAULT_EPS", "DEFAULT_BAND", "DEFAULT_SUBSAMPLE"]

#: defaults chosen on ``scripts/bench_quality.py`` (720p person clips, selfie model)
DEFAULT_RADIUS = 8
DEFAULT_EPS = 1e-3
DEFAULT_BAND = 16
DEFAULT_SUBSAMPLE = 16

#: coarse mask values (0..1) that count as "edge": neither background nor foreground
_EDGE_LO, _EDGE_HI = 0.02, 0.98


def guided_refine(
    images: torch.Tensor,
    alpha: torch.Tensor,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    band: int = DEFAULT_BAND,
    subsample: int = DEFAULT_SUBSAMPLE,
) -> torch.Tensor:
    """``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8 (same device) →
    the refined ``(N,H,W)`` uint8 alpha. ``radius`` and ``band`` are in full-resolution
    pixels; ``eps`` is the filter's regularisation for colours in ``[0,1]`` (larger:
    smoother, closer to the input matte)."""
    _check(images, alpha, radius=radius, eps=eps, band=band, subsample=subsample)
    s = subsample
    guide = sample_mean(images, s)  # (N,3,h,w)
    mask = sample(alpha, s).unsqueeze(1).to(torch.float32).mul_(1.0 / 255.0)  # (N,1,h,w)
    selected = edge_cells(mask, band=band, s=s)
    out = alpha.clone()
    cells = Cells(selected, s)
    if cells.count == 0:
        return out
    coeffs = _coefficients(guide, mask, max(1, round(radius / s)), eps)  # (N,4,h,w)
    coeffs[:, 3].mul_(255.0)  # b to the matte's scale; a maps colours 0..255 to it as is
    ab = cells.upsample(coeffs)  # (4,K,s*s), a on colours in [0,255], b in [0,255]
    colour = torch.empty((3, *ab.shape[1:]), dtype=torch.float32, device=ab.device)
    colour.copy_(cells.pixels(images).permute(2, 0, 1))
    q = ab[3]
    for c in range(3):
        q.addcmul_(ab[c], colour[c])
    cells.put(out, q.round_().clamp_(0.0, 255.0))
    return out


def edge_cells(mask: torch.Tensor, *, band: int, s: int) -> torch.Tensor:
    """``(N,h,w)`` bool: the cells where the coarse mask is neither 0 nor 1 or changes to
    the next cell (an edge sharper than a cell falls between two samples), and the cells
    ``band // s`` further out."""
    m = mask[:, 0]
    edge = (m > _EDGE_LO) & (m < _EDGE_HI)
    step_x = (m[:, :, 1:] - m[:, :, :-1]).abs() > _EDGE_LO  # the edge lies between two cells
    step_y = (m[:, 1:] - m[:, :-1]).abs() > _EDGE_LO
    edge[:, :, 1:] |= step_x
    edge[:, :, :-1] |= step_x
    edge[:, 1:] |= step_y
    edge[:, :-1] |= step_y
    reach = band // s
    if reach == 0:
        return edge
    return box_mean(edge.unsqueeze(1).to(mask.dtype), reach)[:, 0] > 0


def _coefficients(guide: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """The colour guided filter's smoothed linear coefficients ``(N,4,h,w)``: ``q = a·I + b``
    with ``a`` the first three channels and ``b`` the last (He et al., eq. 19-21)."""
    n, _, h, w = guide.shape
    first, second = guide[:, [0, 0, 0, 1, 1, 2]], guide[:, [0, 1, 2, 1, 2, 2]]
    products = torch.cat([guide, p, guide * p, first * second], dim=1)
    means = box_mean(products, r)
    mi, mp, mip = means[:, 0:3], means[:, 3:4], means[:, 4:7]
    cov_ip = mip - mi * mp  # (N,3,h,w)
    # covariance of the guide's colours, regularised: the symmetric 3×3 per pixel
    rr = means[:, 7] - mi[:, 0] * mi[:, 0] + eps
    rg = means[:, 8] - mi[:, 0] * mi[:, 1]
    rb = means[:, 9] - mi[:, 0] * mi[:, 2]
    gg = means[:, 10] - mi[:, 1] * mi[:, 1] + eps
    gb = means[:, 11] - mi[:, 1] * mi[:, 2]
    bb = means[:, 12] - mi[:, 2] * mi[:, 2] + eps
    # its inverse by the adjugate (a closed form beats a batched solve on small matrices)
    i_rr = gg * bb - gb * gb
    i_rg = gb * rb - rg * bb
    i_rb = rg * gb - gg * rb
    i_gg = rr * bb - rb * rb
    i_gb = rb * rg - rr * gb
    i_bb = rr * gg - rg * rg
    det = rr * i_rr + rg * i_rg + rb * i_rb
    cr, cg, cb = cov_ip[:, 0], cov_ip[:, 1], cov_ip[:, 2]
    a = torch.stack(
        [i_rr * cr + i_rg * cg + i_rb * cb, i_rg * cr + i_gg * cg + i_gb * cb, i_rb * cr + i_gb * cg + i_bb * cb],
        dim=1,
    ) / det.unsqueeze(1)
    b = mp - (a * mi).sum(1, keepdim=True)
    return box_mean(torch.cat([a, b], dim=1), r).view(n, 4, h, w)


def _check(images: torch.Tensor, alpha: torch.Tensor, **settings: float) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
        raise ValueError(f"expected images (N,H,W,3) uint8, got {tuple(images.shape)} {images.dtype}")
    if alpha.dtype != torch.uint8 or tuple(alpha.shape) != tuple(images.shape[:3]):
        raise ValueError(f"expected alpha {tuple(images.shape[:3])} uint8, got {tuple(alpha.shape)} {alpha.dtype}")
    for name in ("radius", "band", "subsample"):
        if int(settings[name]) != settings[name] or settings[name] < 1:
            raise ConfigError(f"refine {name}: expected a whole number >= 1, got {settings[name]}")
    if not settings["eps"] > 0:
        raise ConfigError(f"refine eps: expected a number > 0, got {settings['eps']}")

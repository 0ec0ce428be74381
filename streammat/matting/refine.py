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
import torch.nn.functional as F

from ..errors import ConfigError
from .cells import CELL, Cells, box_mean, edge_cells, sample

__all__ = [
    "guided_refine",
    "DEFAULT_RADIUS",
    "DEFAULT_EPS",
    "DEFAULT_BAND",
    "DEFAULT_SUBSAMPLE",
    "DEFAULT_LEVELS",
]

#: defaults chosen on ``scripts/bench_quality.py`` (720p person clips, selfie model)
DEFAULT_RADIUS = 16
DEFAULT_EPS = 1e-4
DEFAULT_BAND = 0
DEFAULT_SUBSAMPLE = 16
DEFAULT_LEVELS = (0.15, 0.85)


def guided_refine(
    images: torch.Tensor,
    alpha: torch.Tensor,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    band: int = DEFAULT_BAND,
    subsample: int = DEFAULT_SUBSAMPLE,
    levels: tuple[float, float] = DEFAULT_LEVELS,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8 (same device) →
    the refined ``(N,H,W)`` uint8 alpha, written into ``out`` when given (``alpha``
    itself works: refinement in place), else into a new tensor.

    ``radius`` (pixels): the filter window, how far an edge may move; ``eps``: the
    filter's regularisation for colours in ``[0,1]`` (larger: closer to the input matte,
    less noise from the frame); ``band`` (pixels): how far beyond the coarse edge cells
    pixels may change; ``subsample``: the coefficient grid's cell size in pixels;
    ``levels`` ``(lo, hi)``: filtered values below ``lo`` become 0 and above ``hi`` 1
    (the filter leaves faint haloes and dents a few percent deep near edges)."""
    _check(images, alpha, radius=radius, eps=eps, band=band, subsample=subsample)
    if not 0.0 <= levels[0] < levels[1] <= 1.0:
        raise ConfigError(f"refine levels: expected 0 <= lo < hi <= 1, got {levels}")
    if out is None:
        out = torch.empty_like(alpha).copy_(alpha)
    elif out is not alpha:
        out.copy_(alpha)
    s = CELL
    mask = sample(alpha, s).unsqueeze(1).to(torch.float32).mul_(1.0 / 255.0)  # (N,1,h,w)
    cells = Cells(edge_cells(mask, band=band, s=s), s)
    if cells.count == 0:
        return out
    # the coefficients on a coarser grid, averaged from the cell samples (the "fast" part)
    k = max(1, subsample // s)
    guide = sample(images, s).to(torch.float32).mul_(1.0 / 255.0).permute(0, 3, 1, 2)  # (N,3,h,w)
    h, w = mask.shape[-2:]
    coeffs = _coefficients(_block_means(guide, k), _block_means(mask, k), max(1, round(radius / (s * k))), eps)
    if k > 1:
        coeffs = F.interpolate(coeffs, size=(h, w), mode="bilinear", align_corners=False)
    # stretch [lo, hi] to [0, 1] (values outside saturate), then b to the matte's scale;
    # a already maps colours in 0..255 to it
    lo, hi = levels
    coeffs.mul_(1.0 / (hi - lo))
    coeffs[:, 3].sub_(lo / (hi - lo)).mul_(255.0)
    ab = cells.upsample(coeffs)  # (4,K,s*s)
    colour = cells.pixels(images).permute(2, 0, 1).to(torch.float32)  # (3,K,s*s), one conversion
    q = ab[3]
    for c in range(3):
        q.addcmul_(ab[c], colour[c])
    cells.put(out, q.round_().clamp_(0.0, 255.0))
    return out


def _block_means(x: torch.Tensor, k: int) -> torch.Tensor:
    """Means of ``k×k`` blocks of ``(N,C,h,w)`` → ``(N,C,h//k,w//k)`` (rows and columns past
    the last whole block dropped), accumulated in place."""
    h, w = x.shape[-2:]
    hk, wk = max(1, h // k), max(1, w // k)
    acc = x[..., 0 : hk * k : k, 0 : wk * k : k].clone()
    for i in range(k):
        for j in range(k):
            if i or j:
                acc += x[..., i : hk * k : k, j : wk * k : k]
    return acc.mul_(1.0 / (k * k))


def _coefficients(guide: torch.Tensor, p: torch.Tensor, r: int, eps: float) -> torch.Tensor:
    """The colour guided filter's smoothed linear coefficients ``(N,4,h,w)``: ``q = a·I + b``
    with ``a`` the first three channels and ``b`` the last (He et al., eq. 19-21)."""
    n, _, h, w = guide.shape
    # the means of I, p, I·p and the six distinct products of colour pairs (rr rg rb gg gb bb)
    red, green, blue = guide[:, 0:1], guide[:, 1:2], guide[:, 2:3]
    products = torch.cat([guide, p, guide * p, red * guide, green * guide[:, 1:], blue * blue], dim=1)
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
    for name, least in (("radius", 1), ("band", 0), ("subsample", 1)):
        if int(settings[name]) != settings[name] or settings[name] < least:
            raise ConfigError(f"refine {name}: expected a whole number >= {least}, got {settings[name]}")
    if not settings["eps"] > 0:
        raise ConfigError(f"refine eps: expected a number > 0, got {settings['eps']}")

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

Two executions of one filter behind one entry point, ``guided_refine``: torch for tensors
(a batch on a CUDA device), ``guided_refine_array`` with OpenCV for numpy arrays (the CPU
path, which never imports torch). They agree within a grey level: their sums run in
another order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .cells import CELL, Cells, gather_cells, put_cells, upsample_array
from .grid import (
    box_mean,
    check_frames,
    edge_cells,
    edge_cells_array,
    sample,
    sample_array,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "guided_refine",
    "guided_refine_array",
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
    images: torch.Tensor | np.ndarray,
    alpha: torch.Tensor | np.ndarray,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    band: int = DEFAULT_BAND,
    subsample: int = DEFAULT_SUBSAMPLE,
    levels: tuple[float, float] = DEFAULT_LEVELS,
    out: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor | np.ndarray:
    """``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8 (tensors on one
    device, or numpy arrays: ``guided_refine_array``) → the refined ``(N,H,W)`` uint8
    alpha, written into ``out`` when given (``alpha`` itself works: refinement in place),
    else into a new tensor or array.

    ``radius`` (pixels): the filter window, how far an edge may move; ``eps``: the
    filter's regularisation for colours in ``[0,1]`` (larger: closer to the input matte,
    less noise from the frame); ``band`` (pixels): how far beyond the coarse edge cells
    pixels may change; ``subsample``: the coefficient grid's cell size in pixels;
    ``levels`` ``(lo, hi)``: filtered values below ``lo`` become 0 and above ``hi`` 1
    (the filter leaves faint haloes and dents a few percent deep near edges)."""
    if isinstance(alpha, np.ndarray):
        return guided_refine_array(
            images, alpha, radius=radius, eps=eps, band=band, subsample=subsample, levels=levels, out=out
        )
    import torch
    import torch.nn.functional as F

    _check(images, alpha, radius=radius, eps=eps, band=band, subsample=subsample, levels=levels)
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
    coeffs = _coefficients(_block_means(guide, k), _block_means(mask, k), _coarse_radius(radius, k), eps)
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
    import torch

    n, _, h, w = guide.shape
    # the means of I, p, I·p and the six distinct products of colour pairs (rr rg rb gg gb bb)
    red, green, blue = guide[:, 0:1], guide[:, 1:2], guide[:, 2:3]
    products = torch.cat([guide, p, guide * p, red * guide, green * guide[:, 1:], blue * blue], dim=1)
    means = box_mean(products, r)
    ab = torch.stack(_linear_coefficients(means.unbind(1), eps), dim=1)
    return box_mean(ab, r).view(n, 4, h, w)


def _linear_coefficients(means: Any, eps: float) -> list[Any]:
    """``[a_r, a_g, a_b, b]`` per pixel from the 13 window means of ``_coefficients``
    (I, p, I·p, the colour pairs), planes of either array kind: only arithmetic here."""
    mi, mp, mip = means[0:3], means[3], means[4:7]
    cr, cg, cb = (mip[c] - mi[c] * mp for c in range(3))  # covariance of I and p
    # covariance of the guide's colours, regularised: the symmetric 3×3 per pixel
    rr = means[7] - mi[0] * mi[0] + eps
    rg = means[8] - mi[0] * mi[1]
    rb = means[9] - mi[0] * mi[2]
    gg = means[10] - mi[1] * mi[1] + eps
    gb = means[11] - mi[1] * mi[2]
    bb = means[12] - mi[2] * mi[2] + eps
    # its inverse by the adjugate (a closed form beats a batched solve on small matrices)
    i_rr = gg * bb - gb * gb
    i_rg = gb * rb - rg * bb
    i_rb = rg * gb - gg * rb
    i_gg = rr * bb - rb * rb
    i_gb = rb * rg - rr * gb
    i_bb = rr * gg - rg * rg
    det = rr * i_rr + rg * i_rg + rb * i_rb
    a_r = (i_rr * cr + i_rg * cg + i_rb * cb) / det
    a_g = (i_rg * cr + i_gg * cg + i_gb * cb) / det
    a_b = (i_rb * cr + i_gb * cg + i_bb * cb) / det
    return [a_r, a_g, a_b, mp - (a_r * mi[0] + a_g * mi[1] + a_b * mi[2])]


def _coarse_radius(radius: int, k: int) -> int:
    """The filter radius in cells of the coefficient grid (``k`` cells of ``CELL`` pixels)."""
    return max(1, round(radius / (CELL * k)))


def _check(images: Any, alpha: Any, *, levels: tuple[float, float], **settings: float) -> None:
    """The shapes of ``images``/``alpha`` (torch tensors or numpy arrays) and the settings."""
    check_frames(images, alpha)
    if not 0.0 <= levels[0] < levels[1] <= 1.0:
        raise ConfigError(f"refine levels: expected 0 <= lo < hi <= 1, got {levels}")
    for name, least in (("radius", 1), ("band", 0), ("subsample", 1)):
        if int(settings[name]) != settings[name] or settings[name] < least:
            raise ConfigError(f"refine {name}: expected a whole number >= {least}, got {settings[name]}")
    if not settings["eps"] > 0:
        raise ConfigError(f"refine eps: expected a number > 0, got {settings['eps']}")


# -- host arrays (numpy and OpenCV) ------------------------------------------------------


def guided_refine_array(
    images: np.ndarray,
    alpha: np.ndarray,
    *,
    radius: int = DEFAULT_RADIUS,
    eps: float = DEFAULT_EPS,
    band: int = DEFAULT_BAND,
    subsample: int = DEFAULT_SUBSAMPLE,
    levels: tuple[float, float] = DEFAULT_LEVELS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``guided_refine`` of numpy arrays (``images`` ``(N,H,W,3)`` and ``alpha``
    ``(N,H,W)`` uint8) with OpenCV, within a grey level of it; ``out`` as there."""
    _check(images, alpha, radius=radius, eps=eps, band=band, subsample=subsample, levels=levels)
    if out is None:
        out = alpha.copy()
    elif out is not alpha:
        out[...] = alpha
    s = CELL
    if min(alpha.shape[1:]) < s:
        return out  # no whole cell to rewrite
    mask = sample_array(alpha, s).astype(np.float32) * np.float32(1.0 / 255.0)  # (N,h,w)
    n, i, j = np.nonzero(edge_cells_array(mask, band=band, s=s))
    if n.size == 0:
        return out
    coeffs = _coarse_coefficients(sample_array(images, s), mask, radius=radius, eps=eps, subsample=subsample)
    # stretch [lo, hi] to [0, 1] (values outside saturate), then b to the matte's scale
    lo, hi = levels
    coeffs *= np.float32(1.0 / (hi - lo))
    coeffs[3] -= np.float32(lo / (hi - lo))
    coeffs[3] *= np.float32(255.0)
    ab = upsample_array(coeffs, n, i, j, s)  # (4,K,s*s)
    colour = gather_cells(images, n, i, j, s).reshape(n.size, s * s, 3).transpose(2, 0, 1)
    colour = np.ascontiguousarray(colour, dtype=np.float32)  # (3,K,s*s), one conversion
    q = ab[3]
    for c in range(3):
        ab[c] *= colour[c]
        q += ab[c]
    np.rint(q, out=q)
    put_cells(out, np.clip(q, 0.0, 255.0, out=q).astype(np.uint8).reshape(n.size, s, s), n, i, j, s)
    return out


def _coarse_coefficients(guide: np.ndarray, mask: np.ndarray, *, radius: int, eps: float, subsample: int) -> np.ndarray:
    """The filter's coefficients on the cell grid, planes first: ``(4,N,h,w)`` float32 from
    the cell samples of the frames ``(N,h,w,3)`` uint8 and of the mask ``(N,h,w)`` in 0..1;
    computed on blocks of ``subsample // CELL`` cells and interpolated back to the grid."""
    import cv2

    k = max(1, subsample // CELL)
    frames, h, w = mask.shape
    hk, wk = max(1, h // k), max(1, w // k)
    colour = guide.transpose(3, 0, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)
    # block means of the four planes of every frame (rows and columns past the last whole
    # block dropped), ``cv2.resize``'s exact area average at a whole factor
    planes = [*colour, mask]
    coarse = [_area_means(plane[:, : hk * k, : wk * k], (wk, hk)) if k > 1 else plane for plane in planes]
    ab = _coefficients_planes(coarse, _coarse_radius(radius, k), eps)  # (4,N,hk,wk)
    if k == 1:
        return ab
    resized = [cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR) for plane in ab.reshape(-1, hk, wk)]
    return np.stack(resized).reshape(4, frames, h, w)


def _area_means(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Each ``(h,w)`` plane of ``(N,h,w)`` float32 averaged down to ``size`` (w, h)."""
    import cv2

    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _coefficients_planes(planes: list[np.ndarray], r: int, eps: float) -> np.ndarray:
    """``_coefficients`` of the colour planes and the mask plane (each ``(N,h,w)`` float32)
    → ``(4,N,h,w)``: the three ``a`` planes, then ``b``."""
    red, green, blue, p = planes
    products = [red, green, blue, p, red * p, green * p, blue * p]
    products += [red * red, red * green, red * blue, green * green, green * blue, blue * blue]
    means = box_mean(np.stack(products), r)  # (13,N,h,w)
    return box_mean(np.stack(_linear_coefficients(means, eps)), r)

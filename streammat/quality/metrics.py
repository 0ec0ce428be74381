"""Matting metrics, with the scales of the video matting literature.

The four per-frame errors of Rhemann et al. ("A Perceptually Motivated Online Benchmark
for Image Matting", CVPR 2009) and the temporal one of Erofeev et al. (dtSSD), computed
the way RobustVideoMatting's evaluation does (Lin et al., 2021) so numbers compare in
kind with its tables. Mattes are float arrays in ``[0,1]``; every function takes one
frame's ``pred`` and ``true`` (``(H,W)`` numpy) unless it says otherwise.

- ``sad``: mean absolute difference ×1e3 (RVM scales SAD by the pixel count, not the sum);
- ``mse``: mean squared difference ×1e3;
- ``gradient_error``: sum of squared differences of the gradient magnitudes (Gaussian
  derivative filters, σ = 1.4, both mattes min-max normalised) / 1e3;
- ``connectivity_error``: sum of |φ(pred) - φ(true)| / 1e3, where φ measures how far a
  pixel's value lies above the level at which it stops being 4-connected to the largest
  region both mattes share (thresholds 0, 0.1, … 1; differences under 0.15 ignored);
- ``dtssd``: sqrt(mean(((pred_t - pred_t-1) - (true_t - true_t-1))²)) ×1e2 — flicker
  and lag that the true matte does not have;
- ``region_sad``: mean absolute difference ×1e3 over the pixels of a boolean mask (an
  edge band, moving edges), ``nan`` when the mask is empty.

Sums (gradient, connectivity) grow with the frame size; compare them at one size.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

__all__ = ["sad", "mse", "gradient_error", "connectivity_error", "dtssd", "region_sad", "region_dtssd"]


def sad(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.abs(pred - true).mean() * 1e3)


def mse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(((pred - true) ** 2).mean() * 1e3)


def region_sad(pred: np.ndarray, true: np.ndarray, region: np.ndarray) -> float:
    if not region.any():
        return float("nan")
    return float(np.abs(pred[region] - true[region]).mean() * 1e3)


def dtssd(pred: np.ndarray, pred_prev: np.ndarray, true: np.ndarray, true_prev: np.ndarray) -> float:
    d = (pred - pred_prev) - (true - true_prev)
    return float(np.sqrt((d * d).mean()) * 1e2)


def region_dtssd(
    pred: np.ndarray, pred_prev: np.ndarray, true: np.ndarray, true_prev: np.ndarray, region: np.ndarray
) -> float:
    """``dtssd`` over the pixels of ``region`` only (``nan`` when it is empty)."""
    if not region.any():
        return float("nan")
    d = (pred[region] - pred_prev[region]) - (true[region] - true_prev[region])
    return float(np.sqrt((d * d).mean()) * 1e2)


@lru_cache(maxsize=4)
def _gauss_derivative(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """RVM's x-derivative-of-Gaussian filter ``outer(g, dg)`` normalised to unit L2 norm,
    as its two separable factors (smoothing ``g``, derivative ``dg``)."""
    eps = 1e-2
    half = int(np.ceil(sigma * np.sqrt(-2 * np.log(np.sqrt(2 * np.pi) * sigma * eps))))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    dg = -x * g / sigma**2
    norm = np.sqrt((g**2).sum() * (dg**2).sum())  # the L2 norm of the outer product
    return g.astype(np.float32), (dg / norm).astype(np.float32)


def _gradient_magnitude(x: np.ndarray, sigma: float) -> np.ndarray:
    x = cv2.normalize(x.astype(np.float32), None, 1.0, 0.0, cv2.NORM_MINMAX)
    g, dg = _gauss_derivative(sigma)
    gx = cv2.sepFilter2D(x, -1, dg, g, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(x, -1, g, dg, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def gradient_error(pred: np.ndarray, true: np.ndarray, sigma: float = 1.4) -> float:
    d = _gradient_magnitude(pred, sigma) - _gradient_magnitude(true, sigma)
    return float((d * d).sum() / 1e3)


def connectivity_error(pred: np.ndarray, true: np.ndarray, step: float = 0.1) -> float:
    levels = np.arange(0.0, 1.0 + step / 2, step, dtype=np.float32)
    round_down = np.full(true.shape, -1.0, dtype=np.float32)
    for i in range(1, len(levels)):
        both = ((true >= levels[i]) & (pred >= levels[i])).view(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(both, connectivity=4)
        if count > 1:  # label 0 is the background
            outside = labels != 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        else:
            outside = np.ones(true.shape, dtype=bool)
        round_down[(round_down == -1) & outside] = levels[i - 1]
    round_down[round_down == -1] = 1.0
    true_d, pred_d = true - round_down, pred - round_down
    true_phi = 1 - true_d * (true_d >= 0.15)
    pred_phi = 1 - pred_d * (pred_d >= 0.15)
    return float(np.abs(true_phi - pred_phi).sum() / 1e3)

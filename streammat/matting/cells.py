"""A coarse grid of ``s×s`` pixel cells: compute at low resolution, write back only where needed.

Edge refinement and temporal smoothing change a matte only near its edges, a few percent
of a frame's pixels. Doing their arithmetic on every full-resolution pixel of a 720p batch
costs more than the model run, so both work on a grid ``s`` times coarser (the "Fast
Guided Filter" idea) and bring their results back to full resolution with bilinear
interpolation in the selected cells only. Rows and columns past the last whole cell (when
the frame size is not a multiple of ``s``) are never selected.

Pixels are gathered one cell row (``s`` pixels, contiguous in memory) at a time with flat
``index_select``/``index_copy_``: on the CPU that is several times faster than indexing
with three broadcast index tensors. Those functions take torch tensors on any device.

The host functions (``*_array``, after them) do the same on numpy arrays with OpenCV for
the CPU path, which never imports torch: a selected cell is a block of a strided view
(``cell_blocks``), gathered and written with one numpy index each.
"""

from __future__ import annotations

import bisect
import functools
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "CELL",
    "Cells",
    "box_mean",
    "edge_cells",
    "grid_size",
    "sample",
    "box_mean_array",
    "check_frames",
    "cell_blocks",
    "gather_cells",
    "put_cells",
    "edge_cells_array",
    "sample_array",
    "upsample_array",
]

#: the cell size (pixels) in which edge bands are chosen and pixels rewritten
CELL = 8
#: coarse mask values (0..1) that count as "edge": neither background nor foreground
_EDGE_LO, _EDGE_HI = 0.02, 0.98


def check_frames(images: Any, alpha: Any) -> None:
    """``images`` ``(N,H,W,3)`` uint8 and ``alpha`` ``(N,H,W)`` uint8, torch or numpy."""
    if images.ndim != 4 or images.shape[-1] != 3 or str(images.dtype) not in _UINT8:
        raise ValueError(f"expected images (N,H,W,3) uint8, got {tuple(images.shape)} {images.dtype}")
    if str(alpha.dtype) not in _UINT8 or tuple(alpha.shape) != tuple(images.shape[:3]):
        raise ValueError(f"expected alpha {tuple(images.shape[:3])} uint8, got {tuple(alpha.shape)} {alpha.dtype}")


#: the uint8 dtype's name in numpy and in torch
_UINT8 = ("uint8", "torch.uint8")


def grid_size(height: int, width: int, s: int) -> tuple[int, int]:
    """The number of whole ``s×s`` cells down and across a ``height×width`` frame."""
    return max(1, height // s), max(1, width // s)


def sample(x: torch.Tensor, s: int) -> torch.Tensor:
    """The centre pixel of every cell: ``(N,H,W,...)`` → ``(N,H//s,W//s,...)``, contiguous.

    Rows first (whole rows copy fast), then columns from that small copy: on the CPU
    ~7× faster than one strided gather, and ~7× faster than an antialiased resize.
    Mattes upsampled from a model's coarse output are smooth, so one sample per cell
    represents them; for colours, the guided filter's and the smoother's box means
    average the sensor noise of neighbouring samples."""
    h, w = grid_size(x.shape[1], x.shape[2], s)
    c = s // 2
    rows = x[:, c : c + (h - 1) * s + 1 : s].contiguous()  # (N,h,W,...)
    if x.shape[2] == w * s:
        return rows.view(x.shape[0], h, w, s, *x.shape[3:])[:, :, :, c].contiguous()
    return rows[:, :, c : c + (w - 1) * s + 1 : s].contiguous()


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of ``(N,C,h,w)`` over ``(2r+1)²`` windows, averaging only what lies inside the
    frame at its borders. Shifted in-place sums: on the CPU, several times faster than
    pooling or running sums for the small radii used on coarse grids."""
    h, w = x.shape[-2:]
    y = x.clone()
    for d in range(1, min(r, h - 1) + 1):
        y[..., d:, :] += x[..., :-d, :]
        y[..., :-d, :] += x[..., d:, :]
    z = y.clone()
    for d in range(1, min(r, w - 1) + 1):
        z[..., d:] += y[..., :-d]
        z[..., :-d] += y[..., d:]
    return z.mul_(_inverse_counts(h, w, r, x.device))


def _inverse_counts(h: int, w: int, r: int, device: torch.device) -> torch.Tensor:
    """``1 / (pixels inside each (2r+1)² window)``, ``(h,w)``."""
    import torch

    return torch.from_numpy(_inverse_counts_array(h, w, r).copy()).to(device)


@functools.lru_cache(maxsize=16)
def _inverse_counts_array(h: int, w: int, r: int) -> np.ndarray:
    """``_inverse_counts`` as a float32 numpy array. Read-only: cached."""
    ys, xs = np.arange(h), np.arange(w)
    rows = np.minimum(ys + r, h - 1) - np.maximum(ys - r, 0) + 1
    cols = np.minimum(xs + r, w - 1) - np.maximum(xs - r, 0) + 1
    inverse = np.float32(1.0) / (rows.reshape(-1, 1) * cols.reshape(1, -1)).astype(np.float32)
    inverse.flags.writeable = False
    return inverse


def edge_cells(mask: torch.Tensor, *, band: int, s: int) -> torch.Tensor:
    """``(N,h,w)`` bool: the cells where the coarse mask is neither 0 nor 1 or changes to
    the next cell (an edge sharper than a cell falls between two samples), and the cells
    ``band // s`` further out."""
    edge = _edges(mask[:, 0])
    reach = band // s
    if reach == 0:
        return edge
    return box_mean(edge.unsqueeze(1).to(mask.dtype), reach)[:, 0] > 0


def _edges(m: Any) -> Any:
    """The edge cells of coarse masks ``(N,h,w)`` in 0..1, a torch tensor or a numpy array:
    neither 0 nor 1, or a step to the next cell (an edge sharper than a cell falls between
    two samples)."""
    edge = (m > _EDGE_LO) & (m < _EDGE_HI)
    step_x = abs(m[:, :, 1:] - m[:, :, :-1]) > _EDGE_LO
    step_y = abs(m[:, 1:] - m[:, :-1]) > _EDGE_LO
    edge[:, :, 1:] |= step_x
    edge[:, :, :-1] |= step_x
    edge[:, 1:] |= step_y
    edge[:, :-1] |= step_y
    return edge


@functools.lru_cache(maxsize=4)
def _bilinear_weights_array(s: int) -> np.ndarray:
    """``(s*s, 9)`` float32: the weights of a cell's 3×3 neighbourhood for each of its
    pixels, the same as ``F.interpolate(mode="bilinear", align_corners=False)`` (or
    ``cv2.resize``'s ``INTER_LINEAR``) from the grid. Read-only: cached."""
    t = (np.arange(s, dtype=np.float32) + np.float32(0.5)) / np.float32(s) - np.float32(0.5)  # from the centre
    w1 = np.zeros((s, 3), dtype=np.float32)
    w1[:, 0] = np.maximum(-t, 0.0)
    w1[:, 2] = np.maximum(t, 0.0)
    w1[:, 1] = 1.0 - w1[:, 0] - w1[:, 2]
    weights = np.einsum("au,bv->abuv", w1, w1).reshape(s * s, 9)
    weights.flags.writeable = False
    return weights


def _bilinear_weights(s: int, device: torch.device) -> torch.Tensor:
    """``_bilinear_weights_array`` as a torch tensor on ``device``."""
    import torch

    return torch.from_numpy(_bilinear_weights_array(s).copy()).to(device)


def _cell_rows(full: torch.Tensor, s: int, w: int) -> torch.Tensor:
    """``full`` ``(N,H,W,...)`` as a 2-D view of cell rows, ``(N*H*w, s*C)``, when the frame
    width is a whole number of cells, else as ``(N*H, w, s*C)``."""
    n, height, width = full.shape[:3]
    c = full[0, 0, 0].numel()
    flat = full.reshape(n * height, width * c)
    if width == w * s:
        return flat.view(n * height * w, s * c)
    return flat.as_strided((n * height, w, s * c), (width * c, s * c, 1))


def _words(rows: torch.Tensor) -> torch.Tensor | None:
    """The 2-D cell rows ``rows`` as ``(M, k)`` 8-byte words, when each row is a whole number
    of aligned words: gathering and writing one word (8 pixels of a uint8 mask) moves a cell
    row several times faster than copying 8 one-byte elements. (Rows of several words, as
    RGB ones, gain nothing: ``index_select`` of whole rows is as fast.)"""
    import torch

    size = rows.shape[1] * rows.element_size()
    if rows.ndim != 2 or size % 8 or rows.data_ptr() % 8 or not rows.is_contiguous():
        return None
    return rows.view(torch.int64)


class Cells:
    """The selected cells of a batch (``selected``: ``(N,h,w)`` bool on the grid), packed
    frame by frame in grid order; ``span(i)`` is the range of frame ``i``'s cells."""

    def __init__(self, selected: torch.Tensor, s: int) -> None:
        import torch

        self.s = s
        n_frames, h, w = selected.shape
        self.grid = (h, w)
        n, i, j = selected.nonzero(as_tuple=True)
        self.count = int(n.numel())
        self._selected = selected
        self._starts: list[int] | None = None  # the first packed cell of every frame, when asked
        self._n, self._i, self._j = n, i, j
        self._weights = _bilinear_weights(s, selected.device)
        self._off = torch.arange(s, device=selected.device)
        self._row_ids: dict[int, torch.Tensor] = {}
        # the flat index of each cell's 3×3 neighbourhood in the grid padded by one cell
        d = torch.arange(3, device=selected.device)
        nb = (n.view(-1, 1, 1) * (h + 2) + i.view(-1, 1, 1) + d.view(1, 3, 1)) * (w + 2)
        self._nb = (nb + j.view(-1, 1, 1) + d.view(1, 1, 3)).reshape(-1)

    def span(self, frame: int) -> slice:
        """The packed cells of frame ``frame``."""
        return slice(self.starts[frame], self.starts[frame + 1])

    @property
    def starts(self) -> list[int]:
        """Where each frame's cells begin in the packing, and the count at the end (the
        per-frame counts are read once, also from a device)."""
        if self._starts is None:
            n_frames = self._selected.shape[0]
            self._starts = [0, *self._selected.reshape(n_frames, -1).sum(1).cumsum(0).tolist()]
        return self._starts

    def _rows(self, height: int, cells: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame row index in ``N*H``, cell column) of every cell row of ``cells``."""
        s = self.s
        n, i, j = self._n[cells], self._i[cells], self._j[cells]
        ny = ((n * height + i * s).view(-1, 1) + self._off).reshape(-1)
        return ny, j.view(-1, 1).expand(-1, s).reshape(-1)

    def _flat(self, height: int) -> torch.Tensor:
        """The index of every selected cell row in the 2-D cell rows of ``_cell_rows``."""
        if height not in self._row_ids:
            ny, jj = self._rows(height, slice(None))
            self._row_ids[height] = ny * self.grid[1] + jj
        return self._row_ids[height]

    def _bounds(self, cells: slice) -> tuple[int, int]:
        span = range(self.count)[cells]
        if span.step != 1:
            raise ValueError(f"expected a contiguous range of cells, got {cells}")
        return span.start, span.stop

    def _shift(self, first: int, frame: int | None) -> int:
        """How many frames to move cells that start at packed cell ``first`` to ``frame``."""
        if frame is None:
            return 0
        return frame - (bisect.bisect_right(self.starts, first) - 1)

    def _index(self, height: int, cells: slice, frame: int | None) -> torch.Tensor:
        """The indices of ``cells``' cell rows in the 2-D view of ``_cell_rows``, moved to
        frame ``frame`` if given (all of ``cells`` must then lie in one frame)."""
        a, b = self._bounds(cells)
        idx = self._flat(height)[a * self.s : b * self.s]
        shift = self._shift(a, frame)
        return idx + shift * height * self.grid[1] if shift else idx

    def pixels(self, full: torch.Tensor, cells: slice = slice(None), *, frame: int | None = None) -> torch.Tensor:
        """The pixels of the packed ``cells`` (default: all) of ``full`` ``(N,H,W[,C])`` →
        ``(K,s*s[,C])``; ``frame``: read them from that frame of ``full`` instead of their own
        (``cells`` within one frame: ``span(i)``)."""
        rows = _cell_rows(full, self.s, self.grid[1])
        a, b = self._bounds(cells)
        if rows.ndim == 2:
            idx = self._index(full.shape[1], cells, frame)
            words = _words(rows)
            if words is not None and words.shape[1] == 1:
                px = words.view(-1).index_select(0, idx).view(rows.dtype)
            else:
                px = rows.index_select(0, idx)
        else:
            ny, jj = self._rows(full.shape[1], cells)
            px = rows[ny + self._shift(a, frame) * full.shape[1], jj]
        return px.reshape(b - a, self.s * self.s, *full.shape[3:])

    def put(self, full: torch.Tensor, values: torch.Tensor, cells: slice = slice(None)) -> None:
        """Write ``values`` ``(K,s*s)`` into the packed ``cells`` (default: all) of ``full``
        ``(N,H,W)``, which must be contiguous (it is written through a view)."""
        import torch

        if not full.is_contiguous():
            raise ValueError("expected a contiguous tensor to write cells into")
        rows = _cell_rows(full, self.s, self.grid[1])
        values = values.reshape(-1, self.s).to(full.dtype)
        if rows.ndim == 2:
            idx = self._index(full.shape[1], cells, None)
            words = _words(rows)
            if words is not None and words.shape[1] == 1:
                words.view(-1).index_copy_(0, idx, values.contiguous().view(torch.int64).view(-1))
            else:
                rows.index_copy_(0, idx, values)
        else:
            ny, jj = self._rows(full.shape[1], cells)
            rows[ny, jj] = values

    def upsample(self, low: torch.Tensor, cells: slice = slice(None)) -> torch.Tensor:
        """Bilinear values of the grid ``low`` ``(N,C,h,w)`` at the packed ``cells``' pixels
        (default: all), channels first: ``(C,K,s*s)`` (borders replicated, as
        ``F.interpolate`` does)."""
        import torch.nn.functional as F

        c = low.shape[1]
        a, b = self._bounds(cells)
        nb = self._nb[a * 9 : b * 9]
        # channels first before padding: the padded grid is then flat per channel without a copy
        padded = F.pad(low.transpose(0, 1), (1, 1, 1, 1), mode="replicate").reshape(c, -1)
        picked = padded.index_select(1, nb).view(c * (b - a), 9)
        return (picked @ self._weights.T).view(c, b - a, self.s * self.s)  # one GEMM


# -- host arrays (numpy and OpenCV) ------------------------------------------------------


def sample_array(x: np.ndarray, s: int) -> np.ndarray:
    """``sample`` of a numpy array ``(N,H,W,...)``: the centre pixel of every cell, contiguous."""
    import cv2

    h, w = grid_size(x.shape[1], x.shape[2], s)
    c = s // 2
    if min(x.shape[1:3]) < s:  # not one whole cell: the centre pixels that exist
        return np.ascontiguousarray(x[:, c : c + (h - 1) * s + 1 : s, c : c + (w - 1) * s + 1 : s])
    # the pixel nearest each cell's centre, ``floor((j + 0.5) * s) = j*s + s//2``: ~6x
    # faster here than numpy's strided copy of 3-byte pixels
    out = np.empty((x.shape[0], h, w, *x.shape[3:]), x.dtype)
    for frame, dst in zip(x, out, strict=True):
        cv2.resize(frame[: h * s, : w * s], (w, h), dst=dst, interpolation=cv2.INTER_NEAREST_EXACT)
    return out


#: the most channels OpenCV's Python binding passes in one image (more fail in its conversion)
_CV_CHANNELS = 128


def box_mean_array(x: np.ndarray, r: int) -> np.ndarray:
    """``box_mean`` of a float32 array ``(h,w)`` or ``(h,w,C)``, channels last as OpenCV
    takes them: window sums with zeros outside the frame (``cv2.boxFilter``), times the
    inverse of how many pixels each window holds inside it."""
    import cv2

    h, w = x.shape[:2]
    planes = x.reshape(h, w, -1)
    sums = np.empty_like(planes)
    for a in range(0, planes.shape[2], _CV_CHANNELS):
        part = np.ascontiguousarray(planes[..., a : a + _CV_CHANNELS])
        window = (2 * r + 1, 2 * r + 1)
        summed = cv2.boxFilter(part, -1, window, normalize=False, borderType=cv2.BORDER_CONSTANT)
        sums[..., a : a + _CV_CHANNELS] = summed.reshape(part.shape)
    sums *= _inverse_counts_array(h, w, r)[..., None]
    return sums.reshape(x.shape)


def edge_cells_array(mask: np.ndarray, *, band: int, s: int) -> np.ndarray:
    """``edge_cells`` of coarse masks ``(N,h,w)`` float32 in 0..1 → ``(N,h,w)`` bool; the
    band is a dilation (a window's mean is above 0 where any cell in it is)."""
    import cv2

    edge = _edges(mask)
    reach = band // s
    if reach == 0:
        return edge
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    grown = [cv2.dilate(e.view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) for e in edge]
    return np.stack(grown).view(bool)


def cell_blocks(x: np.ndarray, s: int) -> np.ndarray:
    """The whole ``s×s`` cells of ``x`` ``(N,H,W,...)`` as a view ``(N,h,s,w,s,...)``:
    ``blocks[n, i, :, j]`` is cell ``(i, j)`` of frame ``n``, ``(s,s,...)``."""
    n, height, width = x.shape[:3]
    sn, sh, sw = x.strides[:3]
    shape = (n, height // s, s, width // s, s, *x.shape[3:])
    strides = (sn, s * sh, sh, s * sw, sw, *x.strides[3:])
    return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=x.flags.writeable)


def gather_cells(x: np.ndarray, n: np.ndarray, i: np.ndarray, j: np.ndarray, s: int) -> np.ndarray:
    """The cells ``(n, i, j)`` of ``x`` ``(N,H,W,...)``: a copy ``(K,s,s,...)``."""
    words = _cell_words(x, s)
    if words is None:
        return cell_blocks(x, s)[n, i, :, j]
    rows = words.take(_row_index(x, n, i, j, s), axis=0)
    return rows.view(x.dtype).reshape(n.size, s, s, *x.shape[3:])


def put_cells(x: np.ndarray, values: np.ndarray, n: np.ndarray, i: np.ndarray, j: np.ndarray, s: int) -> None:
    """Write ``values`` ``(K,s,s,...)`` into the cells ``(n, i, j)`` of ``x``."""
    words = _cell_words(x, s)
    if words is None:
        cell_blocks(x, s)[n, i, :, j] = values
        return
    values = np.ascontiguousarray(values, dtype=x.dtype)
    words[_row_index(x, n, i, j, s)] = values.reshape(-1).view(np.int64).reshape(-1, words.shape[1])


def _cell_words(x: np.ndarray, s: int) -> np.ndarray | None:
    """``x`` as 2-D rows of 8-byte words, one row per cell row (``s`` pixels), when the
    frame width is a whole number of cells and a cell row a whole number of words: numpy
    moves a cell row of a uint8 mask as one word ~8x faster than as ``s`` bytes (the
    host version of ``_words``)."""
    row_bytes = s * x.itemsize * int(np.prod(x.shape[3:], dtype=np.int64))
    if x.shape[2] % s or row_bytes % 8 or not x.flags.c_contiguous or x.size == 0:
        return None
    return x.reshape(-1).view(np.int64).reshape(-1, row_bytes // 8)


def _row_index(x: np.ndarray, n: np.ndarray, i: np.ndarray, j: np.ndarray, s: int) -> np.ndarray:
    """The rows of ``_cell_words(x, s)`` that hold the cells ``(n, i, j)``, cell by cell."""
    height, w = x.shape[1], x.shape[2] // s
    first = (n * height + i * s) * w + j  # the first row of each cell
    return (first[:, None] + np.arange(s) * w).reshape(-1)


def upsample_array(low: np.ndarray, n: np.ndarray, i: np.ndarray, j: np.ndarray, s: int) -> np.ndarray:
    """Bilinear values of the grid ``low`` ``(C,N,h,w)`` float32 (planes first) at the pixels
    of the cells ``(n, i, j)``: ``(C,K,s*s)`` (borders replicated, as ``cv2.resize`` does).

    Every cell's 3×3 neighbourhood times ``_bilinear_weights_array``, as ``cv2.transform``
    of a 9-channel image: a matrix product per pixel on one thread. A GEMM (numpy's or
    ``cv2.gemm``) goes to OpenBLAS, whose idle threads then spin for a while, taking CPU
    time from the model running beside it."""
    import cv2

    c, frames, h, w = low.shape
    padded = np.pad(low, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").reshape(c, -1)
    d = np.arange(3)
    near = ((n * (h + 2) + i)[:, None, None] + d[:, None]) * (w + 2) + j[:, None, None] + d  # (K,3,3)
    if n.size == 0:
        return np.empty((c, 0, s * s), np.float32)
    picked = padded.take(near.reshape(-1), axis=1).reshape(c * n.size, 1, 9)
    return cv2.transform(picked, _bilinear_weights_array(s)).reshape(c, n.size, s * s)

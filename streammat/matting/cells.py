"""The selected cells of a coarse grid of ``s×s`` pixels: write back only where needed.

Edge refinement and temporal smoothing change a matte only near its edges, a few percent
of a frame's pixels. Doing their arithmetic on every full-resolution pixel of a 720p batch
costs more than the model run, so both work on a grid ``s`` times coarser (the "Fast
Guided Filter" idea) and bring their results back to full resolution with bilinear
interpolation in the selected cells only (the grid itself: ``grid.py``). Rows and columns
past the last whole cell (when the frame size is not a multiple of ``s``) are never
selected.

Pixels are gathered one cell row (``s`` pixels, contiguous in memory) at a time with flat
``index_select``/``index_copy_``: on the CPU that is several times faster than indexing
with three broadcast index tensors. Those functions take torch tensors on any device.

The host functions (after them) do the same on numpy arrays for the CPU path, which never
imports torch: cell rows are gathered and written as 8-byte words where the frame width
allows (``gather_cells``, ``put_cells``), else as blocks of a strided view (``cell_blocks``).
"""

from __future__ import annotations

import bisect
import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["CELL", "Cells", "cell_blocks", "gather_cells", "put_cells", "upsample_array"]

#: the cell size (pixels) in which edge bands are chosen and pixels rewritten
CELL = 8


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


#: the most multiply-adds OpenBLAS computes on the calling thread (its GEMM multithreading
#: threshold, 4 × 65536): a larger product wakes its threads, which then spin for up to
#: ~0.1 s taking a core from the model running beside them
_ONE_THREAD_PRODUCT = 4 * 65536


def upsample_array(low: np.ndarray, n: np.ndarray, i: np.ndarray, j: np.ndarray, s: int) -> np.ndarray:
    """Bilinear values of the grid ``low`` ``(C,N,h,w)`` float32 (planes first) at the pixels
    of the cells ``(n, i, j)``: ``(C,K,s*s)`` (borders replicated, as ``cv2.resize`` does).
    Every cell's 3×3 neighbourhood times ``_bilinear_weights_array``, in products small
    enough to stay on this thread (``cv2.transform`` does it on one thread too, 5x slower)."""
    c, frames, h, w = low.shape
    padded = np.empty((c, frames, h + 2, w + 2), np.float32)  # edges replicated (``np.pad`` is slower)
    padded[:, :, 1:-1, 1:-1] = low
    padded[:, :, 0, 1:-1] = low[:, :, 0]
    padded[:, :, -1, 1:-1] = low[:, :, -1]
    padded[:, :, :, 0] = padded[:, :, :, 1]
    padded[:, :, :, -1] = padded[:, :, :, -2]
    d = np.arange(3)
    near = ((n * (h + 2) + i)[:, None, None] + d[:, None]) * (w + 2) + j[:, None, None] + d  # (K,3,3)
    picked = padded.reshape(c, -1).take(near.reshape(-1), axis=1).reshape(c * n.size, 9)
    weights = np.ascontiguousarray(_bilinear_weights_array(s).T)  # (9,s*s)
    out = np.empty((c * n.size, s * s), np.float32)
    rows = max(1, _ONE_THREAD_PRODUCT // weights.size)
    for a in range(0, len(picked), rows):
        np.matmul(picked[a : a + rows], weights, out=out[a : a + rows])
    return out.reshape(c, n.size, s * s)

"""A coarse grid of ``s×s`` pixel cells: compute at low resolution, write back only where needed.

Edge refinement and temporal smoothing change a matte only near its edges, a few percent
of a frame's pixels. Doing their arithmetic on every full-resolution pixel of a 720p batch
costs more than the model run, so both work on a grid ``s`` times coarser (the "Fast
Guided Filter" idea) and bring their results back to full resolution with bilinear
interpolation in the selected cells only. Rows and columns past the last whole cell (when
the frame size is not a multiple of ``s``) are never selected.

Pixels are gathered one cell row (``s`` pixels, contiguous in memory) at a time with flat
``index_select``/``index_copy_``: on the CPU that is several times faster than indexing
with three broadcast index tensors. All functions take torch tensors on any device.
"""

from __future__ import annotations

import bisect

import torch
import torch.nn.functional as F

__all__ = ["CELL", "Cells", "box_mean", "edge_cells", "grid_size", "sample"]

#: the cell size (pixels) in which edge bands are chosen and pixels rewritten
CELL = 8
#: coarse mask values (0..1) that count as "edge": neither background nor foreground
_EDGE_LO, _EDGE_HI = 0.02, 0.98


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
    ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
    rows = (ys + r).clamp(max=h - 1) - (ys - r).clamp(min=0) + 1
    cols = (xs + r).clamp(max=w - 1) - (xs - r).clamp(min=0) + 1
    return 1.0 / (rows.view(-1, 1) * cols.view(1, -1)).to(torch.float32)


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


def _bilinear_weights(s: int, device: torch.device) -> torch.Tensor:
    """``(s*s, 9)``: the weights of a cell's 3×3 neighbourhood for each of its pixels, the
    same as ``F.interpolate(mode="bilinear", align_corners=False)`` from the grid."""
    t = (torch.arange(s, dtype=torch.float32) + 0.5) / s - 0.5  # offset from the cell centre
    w1 = torch.zeros((s, 3), dtype=torch.float32)
    w1[:, 0] = (-t).clamp_min(0.0)
    w1[:, 2] = t.clamp_min(0.0)
    w1[:, 1] = 1.0 - w1[:, 0] - w1[:, 2]
    return torch.einsum("au,bv->abuv", w1, w1).reshape(s * s, 9).to(device)


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
    size = rows.shape[1] * rows.element_size()
    if rows.ndim != 2 or size % 8 or rows.data_ptr() % 8 or not rows.is_contiguous():
        return None
    return rows.view(torch.int64)


class Cells:
    """The selected cells of a batch (``selected``: ``(N,h,w)`` bool on the grid), packed
    frame by frame in grid order; ``span(i)`` is the range of frame ``i``'s cells."""

    def __init__(self, selected: torch.Tensor, s: int) -> None:
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
        c = low.shape[1]
        a, b = self._bounds(cells)
        nb = self._nb[a * 9 : b * 9]
        # channels first before padding: the padded grid is then flat per channel without a copy
        padded = F.pad(low.transpose(0, 1), (1, 1, 1, 1), mode="replicate").reshape(c, -1)
        picked = padded.index_select(1, nb).view(c * (b - a), 9)
        return (picked @ self._weights.T).view(c, b - a, self.s * self.s)  # one GEMM

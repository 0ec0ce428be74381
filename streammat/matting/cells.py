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


def _cell_rows(full: torch.Tensor, s: int, w: int) -> tuple[torch.Tensor, int]:
    """``full`` ``(N,H,W,...)`` as a 2-D view of cell rows, ``(N*H*w, s*C)``, when the frame
    width is a whole number of cells, else as ``(N*H, w, s*C)``; and ``C``."""
    n, height, width = full.shape[:3]
    c = full[0, 0, 0].numel()
    flat = full.reshape(n * height, width * c)
    if width == w * s:
        return flat.view(n * height * w, s * c), c
    return flat.as_strided((n * height, w, s * c), (width * c, s * c, 1)), c


class Cells:
    """The selected cells of a batch (``selected``: ``(N,h,w)`` bool on the grid)."""

    def __init__(self, selected: torch.Tensor, s: int) -> None:
        self.s = s
        h, w = selected.shape[1:]
        self.grid = (h, w)
        n, i, j = selected.nonzero(as_tuple=True)
        self.count = int(n.numel())
        off = torch.arange(s, device=selected.device)
        self._n, self._i, self._j = n, i, j
        self._weights = _bilinear_weights(s, selected.device)
        self._off = off
        # the flat index of each cell's 3×3 neighbourhood in the grid padded by one cell
        d = torch.arange(3, device=selected.device)
        nb = (n.view(-1, 1, 1) * (h + 2) + i.view(-1, 1, 1) + d.view(1, 3, 1)) * (w + 2)
        self._nb = (nb + j.view(-1, 1, 1) + d.view(1, 1, 3)).reshape(-1)

    def _rows(self, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame row index in ``N*H``, cell column) of every cell row, ``(K*s,)`` each."""
        s = self.s
        ny = ((self._n * height + self._i * s).view(-1, 1) + self._off).reshape(-1)
        return ny, self._j.view(-1, 1).expand(-1, s).reshape(-1)

    def pixels(self, full: torch.Tensor) -> torch.Tensor:
        """The selected cells' pixels of ``full`` ``(N,H,W[,C])`` → ``(K,s*s[,C])``."""
        rows, _ = _cell_rows(full, self.s, self.grid[1])
        ny, jj = self._rows(full.shape[1])
        if rows.ndim == 2:
            px = rows.index_select(0, ny * self.grid[1] + jj)
        else:
            px = rows[ny, jj]
        return px.reshape(self.count, self.s * self.s, *full.shape[3:])

    def put(self, full: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` ``(K,s*s)`` into the selected cells of ``full`` ``(N,H,W)``,
        which must be contiguous (it is written through a view)."""
        if not full.is_contiguous():
            raise ValueError("expected a contiguous tensor to write cells into")
        rows, _ = _cell_rows(full, self.s, self.grid[1])
        ny, jj = self._rows(full.shape[1])
        values = values.reshape(-1, self.s).to(full.dtype)
        if rows.ndim == 2:
            rows.index_copy_(0, ny * self.grid[1] + jj, values)
        else:
            rows[ny, jj] = values

    def upsample(self, low: torch.Tensor) -> torch.Tensor:
        """Bilinear values of the grid ``low`` ``(N,C,h,w)`` at the selected cells' pixels,
        channels first: ``(C,K,s*s)`` (borders replicated, as ``F.interpolate`` does)."""
        c = low.shape[1]
        padded = F.pad(low, (1, 1, 1, 1), mode="replicate").transpose(0, 1).reshape(c, -1)
        nb = padded.index_select(1, self._nb).view(c * self.count, 9)
        return (nb @ self._weights.T).view(c, self.count, self.s * self.s)  # one GEMM

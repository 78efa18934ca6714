"""Cortical depth from the Laplace equation in the cortex (matrix-free multigrid, float32).

The depth field ``u`` solves Laplace's equation on the cortex voxels of a tissue label volume with
Dirichlet conditions ``u = 0`` on background neighbours (the pial side) and ``u = 1`` on white-matter
neighbours (the gray/white boundary): depth 0 at the pial surface, 1 at the white surface, the
midsurface is ``u = 0.5`` (Leprince et al. 2015).

Discretisation: the 7-point (6-neighbourhood) finite-difference Laplacian on the voxel grid, with the
Dirichlet value placed on the face between a cortex voxel and its non-cortex neighbour (ghost value
``2 g - u``; ``boundary="centre"`` puts it at the neighbour's centre instead). Neighbours outside the array
are ignored (zero flux, Neumann). Anisotropic voxels weight each axis by ``1 / h_axis**2``. Cortex voxels
that touch neither background nor white matter are free unknowns. A connected cortex component with no
Dirichlet neighbour at all has no defined depth (this happens only when the whole volume is cortex);
it is set to NaN and counted in ``info["unconstrained_voxels"]``.

Solver: conjugate gradients preconditioned by one symmetric multigrid V-cycle, entirely matrix-free
and in float32 on the compact set of cortex voxels only (the volume is cropped to the cortex bounding
box; each unknown stores the int32 indices of its six neighbours in the compact vector). Multigrid
levels aggregate 2x2x2 blocks of the previous level (piecewise-constant prolongation, Galerkin coarse
operators, so the coarse problems see thin cortex exactly in the variational sense); red-black
Gauss-Seidel smoothing (red-black before, black-red after the coarse correction, so the preconditioner
is symmetric); coarse levels are visited as K-cycles (Notay 2008: two flexible-CG steps); the coarsest
level is factorised once with a sparse direct solver. The reported residual is the relative residual
``||b - A u||_2 / ||b||_2`` of the assembled system, recomputed at the end with float64 accumulation
(the same criterion as ``scipy.sparse.linalg.cg(rtol=...)``).

The kernels (assembly straight from the label volume, smoothing sweeps, restriction, Galerkin
coarsening, vector updates) are compiled with Numba: they are irregular gathers and scatters over a
compact unknown vector, which no sparse-matrix library runs without first building the matrix, and
the matrix (CSR, float64 in scipy) would cost three times the memory and half of the time. Each kernel
makes one pass over its arrays; the assembly makes two passes over the cortex bounding box and
allocates every array once, so its time does not depend on what earlier calls left in memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cortexgraph.errors import ConvergenceError, CortexgraphError

__all__ = ["solve_laplace_depth", "laplace_system"]

BACKGROUND_LABEL = 0
WHITE_LABEL = 1
CORTEX_LABEL = 2

# codes of the padded working box
_PIAL, _WHITE, _CORTEX, _OUTSIDE = 0, 1, 2, 3
# Dirichlet value placed on the face between voxels (ghost value 2 g - u) or at the neighbour centre
_BOUNDARY_FACTOR = {"face": 2.0, "centre": 1.0}
# the six directions; direction d and d ^ 1 are opposite (the kernels spell them out)
_DIRECTIONS = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
_OVERCORRECTION = 1.5  # scaling of the piecewise-constant coarse correction
_KCYCLE = True

_jit = numba.njit(cache=True, nogil=True)


# ------------------------------------------------------------------------------------ kernels


@_jit
def _cortex_bounds(labels, cortex):  # pragma: no cover - compiled
    """Inclusive bounding box (lo, hi) of ``labels == cortex``; hi[0] = -1 when there is none."""
    nx, ny, nz = labels.shape
    lo = np.array([nx, ny, nz], dtype=np.int64)
    hi = np.array([-1, -1, -1], dtype=np.int64)
    for i in range(nx):
        for j in range(ny):
            first = -1
            last = -1
            for k in range(nz):
                if labels[i, j, k] == cortex:
                    if first < 0:
                        first = k
                    last = k
            if first >= 0:
                lo[0] = min(lo[0], i)
                hi[0] = max(hi[0], i)
                lo[1] = min(lo[1], j)
                hi[1] = max(hi[1], j)
                lo[2] = min(lo[2], first)
                hi[2] = max(hi[2], last)
    return lo, hi


@_jit
def _fill_codes(labels, start, stop, pad, white, cortex, codes):  # pragma: no cover - compiled
    """Box codes of ``labels[start:stop]`` written at offset ``pad`` into ``codes``.

    Returns the number of red (even ``i + j + k`` in box coordinates) and black cortex voxels.
    """
    n_red = 0
    n_black = 0
    for i in range(start[0], stop[0]):
        ci = i - start[0] + pad[0]
        for j in range(start[1], stop[1]):
            cj = j - start[1] + pad[1]
            for k in range(start[2], stop[2]):
                ck = k - start[2] + pad[2]
                value = labels[i, j, k]
                code = _PIAL
                if value == cortex:
                    code = _CORTEX
                    if (ci + cj + ck) & 1 == 0:
                        n_red += 1
                    else:
                        n_black += 1
                elif value == white:
                    code = _WHITE
                codes[ci, cj, ck] = code
    return n_red, n_black


@_jit
def _assemble(
    codes, n_red, axis_weight, factor, neighbours, diag, rhs, flat
):  # pragma: no cover - compiled
    """Neighbour table, diagonal and right-hand side of the unknowns, from the box codes.

    Unknowns are the cortex voxels, red ones (even ``i + j + k``) first, each colour in flat order
    (``n_red`` counted by :func:`_fill_codes`; the outputs are preallocated for all of them). One pass in flat order: a voxel
    looks up the indices of its three backward neighbours in a two-slab buffer and writes both
    directions of each link, so no index volume of the whole box is needed. Fills ``neighbours``
    (6, n) int32 (n = none; direction ``2 a`` is ``+1`` along axis ``a``, ``2 a + 1`` is ``-1``),
    ``diag``, ``rhs`` and ``flat`` (int64 box index); returns whether any cortex voxel touches a
    Dirichlet voxel.
    """
    nx, ny, nz = codes.shape
    n = diag.size
    slab = np.empty((2, ny, nz), dtype=np.int32)  # unknown index of the current / previous slab
    w0, w1, w2 = axis_weight[0], axis_weight[1], axis_weight[2]
    next_red = 0
    next_black = n_red
    contact = False
    for i in range(1, nx - 1):
        here = i & 1
        before = here ^ 1
        for j in range(1, ny - 1):
            for k in range(1, nz - 1):
                if codes[i, j, k] != _CORTEX:
                    continue
                if (i + j + k) & 1 == 0:
                    g = next_red
                    next_red += 1
                else:
                    g = next_black
                    next_black += 1
                slab[here, j, k] = g
                flat[g] = (i * ny + j) * nz + k
                d_sum = 0.0
                r_sum = 0.0
                for axis in range(3):
                    w = w0 if axis == 0 else (w1 if axis == 1 else w2)
                    # forward neighbour: linked when it is reached, unless it is not cortex
                    if axis == 0:
                        fwd, bwd = codes[i + 1, j, k], codes[i - 1, j, k]
                    elif axis == 1:
                        fwd, bwd = codes[i, j + 1, k], codes[i, j - 1, k]
                    else:
                        fwd, bwd = codes[i, j, k + 1], codes[i, j, k - 1]
                    if fwd == _CORTEX:
                        d_sum += w
                    else:
                        neighbours[2 * axis, g] = n
                        if fwd <= _WHITE:
                            contact = True
                            d_sum += w * factor
                            if fwd == _WHITE:
                                r_sum += w * factor
                    if bwd == _CORTEX:
                        if axis == 0:
                            m = slab[before, j, k]
                        elif axis == 1:
                            m = slab[here, j - 1, k]
                        else:
                            m = slab[here, j, k - 1]
                        neighbours[2 * axis + 1, g] = m
                        neighbours[2 * axis, m] = g
                        d_sum += w
                    else:
                        neighbours[2 * axis + 1, g] = n
                        if bwd <= _WHITE:
                            contact = True
                            d_sum += w * factor
                            if bwd == _WHITE:
                                r_sum += w * factor
                diag[g] = d_sum
                rhs[g] = r_sum
    return contact


@_jit
def _aggregate(flat, dims, cdims, code, key):  # pragma: no cover - compiled
    """Mark the 2x2x2 aggregates of a level's unknowns and number them, red ones first.

    ``code`` (coarse box, all -1 on entry) receives each aggregate's coarse index, ``key`` (n,)
    each unknown's flat index in the coarse box. The fine unknowns are decoded incrementally
    (each colour is in flat order, so most steps stay within one row). Returns ``(n_red, n)``
    of the coarse level.
    """
    fy, fz = dims[1], dims[2]
    cy, cz = cdims[1], cdims[2]
    a = b = c = 0
    previous = 0
    for i in range(flat.size):
        f = flat[i]
        step = f - previous
        if 0 <= step < fz - c:
            c += step
        else:
            a = f // (fy * fz)
            rest = f - a * fy * fz
            b = rest // fz
            c = rest - b * fz
        previous = f
        q = ((a // 2 + 1) * cy + (b // 2 + 1)) * cz + (c // 2 + 1)
        key[i] = q
        code[q] = -2
    n_red = 0
    nc = 0
    for q in range(code.size):
        if code[q] == -2:
            nc += 1
            a = q // (cy * cz)
            rest = q - a * cy * cz
            b = rest // cz
            if (a + b + rest - b * cz) & 1 == 0:
                n_red += 1
    next_red = 0
    next_black = n_red
    for q in range(code.size):
        if code[q] == -2:
            a = q // (cy * cz)
            rest = q - a * cy * cz
            b = rest // cz
            if (a + b + rest - b * cz) & 1 == 0:
                code[q] = next_red
                next_red += 1
            else:
                code[q] = next_black
                next_black += 1
    return n_red, nc


@_jit
def _galerkin(
    neighbours, weight, wstep, diag, code, key, cdims, parent, cflat, cneighbours, cweight, cdiag
):  # pragma: no cover - compiled
    """Galerkin operator ``P^T A P`` of piecewise-constant aggregation (outputs preallocated).

    Internal faces of an aggregate lower its diagonal (once from each side); the other faces add
    up into the coarse face weight of their direction (float64 sums, stored as float32).
    """
    n = diag.size
    nc = cdiag.size
    for i in range(n):
        p = code[key[i]]
        parent[i] = p
        cflat[p] = key[i]
    acc_diag = np.zeros(nc, dtype=np.float64)
    acc = np.zeros((6, nc), dtype=np.float64)
    for i in range(n):
        p = parent[i]
        w = i * wstep
        s = np.float64(diag[i])
        for d in range(6):
            j = neighbours[d, i]
            if j < n:
                if parent[j] == p:
                    s -= weight[d, w]
                else:
                    acc[d, p] += weight[d, w]
        acc_diag[p] += s
    cy, cz = cdims[1], cdims[2]
    offset = (cy * cz, -cy * cz, cz, -cz, 1, -1)
    for d in range(6):
        step = offset[d]
        for p in range(nc):
            value = acc[d, p]
            cweight[d, p] = value
            cneighbours[d, p] = code[cflat[p] + step] if value > 0.0 else nc
    for p in range(nc):
        cdiag[p] = acc_diag[p]


@numba.njit(inline="always")
def _axis_sum(neighbours, a0, a1, a2, x, i):  # pragma: no cover - compiled
    """Neighbour sum with one weight per axis (the fine level)."""
    return (
        a0 * (x[neighbours[0, i]] + x[neighbours[1, i]])
        + a1 * (x[neighbours[2, i]] + x[neighbours[3, i]])
        + a2 * (x[neighbours[4, i]] + x[neighbours[5, i]])
    )


@numba.njit(inline="always")
def _weighted_sum(neighbours, weight, x, i):  # pragma: no cover - compiled
    """Neighbour sum with one weight per face (Galerkin coarse levels)."""
    return (
        (weight[0, i] * x[neighbours[0, i]] + weight[1, i] * x[neighbours[1, i]])
        + (weight[2, i] * x[neighbours[2, i]] + weight[3, i] * x[neighbours[3, i]])
        + (weight[4, i] * x[neighbours[4, i]] + weight[5, i] * x[neighbours[5, i]])
    )


# Every stencil kernel has two loops: ``wstep == 0`` (the fine level: one weight per axis, hoisted
# out of the loop) and per-face weights. The branch sits outside the loop.


@_jit
def _smooth(neighbours, weight, wstep, inv_diag, r, x, lo, hi):  # pragma: no cover - compiled
    """Gauss-Seidel update of unknowns ``lo:hi`` (one colour: their neighbours are the other).

    Returns ``r . x`` over ``lo:hi`` after the update (float64 accumulation).
    """
    total = 0.0
    if wstep == 0:
        a0, a1, a2 = weight[0, 0], weight[2, 0], weight[4, 0]
        for i in range(lo, hi):
            value = (r[i] + _axis_sum(neighbours, a0, a1, a2, x, i)) * inv_diag[i]
            x[i] = value
            total += np.float64(r[i]) * value
    else:
        for i in range(lo, hi):
            value = (r[i] + _weighted_sum(neighbours, weight, x, i)) * inv_diag[i]
            x[i] = value
            total += np.float64(r[i]) * value
    return total


@_jit
def _scale(r, inv_diag, x, lo, hi):  # pragma: no cover - compiled
    """First half sweep from a zero iterate: ``x = r / diag`` on ``lo:hi``; returns ``r . x``."""
    total = 0.0
    for i in range(lo, hi):
        value = r[i] * inv_diag[i]
        x[i] = value
        total += np.float64(r[i]) * value
    return total


@_jit
def _restrict_red(neighbours, weight, wstep, diag, r, x, n_red, parent, out):  # pragma: no cover
    """``out = P^T`` (residual on the red unknowns); the black residual is zero after a black sweep."""
    out[:] = 0.0
    if wstep == 0:
        a0, a1, a2 = weight[0, 0], weight[2, 0], weight[4, 0]
        for i in range(n_red):
            out[parent[i]] += r[i] - diag[i] * x[i] + _axis_sum(neighbours, a0, a1, a2, x, i)
    else:
        for i in range(n_red):
            out[parent[i]] += r[i] - diag[i] * x[i] + _weighted_sum(neighbours, weight, x, i)


@_jit
def _prolong_add(parent, coarse, alpha, x, n):  # pragma: no cover - compiled
    """``x[:n] += alpha * (P coarse)[:n]``."""
    a = np.float32(alpha)
    for i in range(n):
        x[i] += a * coarse[parent[i]]


@_jit
def _apply_dot(neighbours, weight, wstep, diag, x, out):  # pragma: no cover - compiled
    """``out = A x``; returns ``x . A x`` (float64 accumulation)."""
    total = 0.0
    if wstep == 0:
        a0, a1, a2 = weight[0, 0], weight[2, 0], weight[4, 0]
        for i in range(diag.size):
            s = diag[i] * x[i] - _axis_sum(neighbours, a0, a1, a2, x, i)
            out[i] = s
            total += np.float64(s) * x[i]
    else:
        for i in range(diag.size):
            s = diag[i] * x[i] - _weighted_sum(neighbours, weight, x, i)
            out[i] = s
            total += np.float64(s) * x[i]
    return total


@_jit
def _residual_norms(neighbours, weight, wstep, diag, x, b):  # pragma: no cover - compiled
    """``(||b - A x||, ||b||)`` with float64 products and accumulation."""
    rr = 0.0
    bb = 0.0
    for i in range(diag.size):
        w = i * wstep
        s = np.float64(diag[i]) * x[i]
        for d in range(6):
            s -= np.float64(weight[d, w]) * x[neighbours[d, i]]
        e = b[i] - s
        rr += e * e
        bb += np.float64(b[i]) * b[i]
    return np.sqrt(rr), np.sqrt(bb)


@_jit
def _residual(neighbours, weight, wstep, diag, x, b, out):  # pragma: no cover - compiled
    """``out = b - A x``."""
    for i in range(diag.size):
        w = i * wstep
        s = b[i] - diag[i] * x[i]
        for d in range(6):
            s += weight[d, w] * x[neighbours[d, i]]
        out[i] = s


@_jit
def _dot(a, b, n):  # pragma: no cover - compiled
    total = 0.0
    for i in range(n):
        total += np.float64(a[i]) * b[i]
    return total


@_jit
def _axpy_norm(r, v, alpha, out, n):  # pragma: no cover - compiled
    """``out = r + alpha v``; returns ``(||out||^2, ||r||^2)``."""
    oo = 0.0
    rr = 0.0
    a = np.float32(alpha)
    for i in range(n):
        value = r[i] + a * v[i]
        out[i] = value
        oo += np.float64(value) * value
        rr += np.float64(r[i]) * r[i]
    return oo, rr


@_jit
def _combine(x, a, y, b, n):  # pragma: no cover - compiled
    """``x = a x + b y``."""
    fa = np.float32(a)
    fb = np.float32(b)
    for i in range(n):
        x[i] = fa * x[i] + fb * y[i]


@_jit
def _cg_step(x, p, r, ap, z, step, n):  # pragma: no cover - compiled
    """``x += step p``, ``r -= step A p``; returns ``(||r||^2, r . z)`` of the new ``r``."""
    s = np.float32(step)
    rr = 0.0
    rz = 0.0
    for i in range(n):
        x[i] += s * p[i]
        value = r[i] - s * ap[i]
        r[i] = value
        rr += np.float64(value) * value
        rz += np.float64(value) * z[i]
    return rr, rz


@_jit
def _scatter(flat, dims, values, offset, out):  # pragma: no cover - compiled
    """``out[box voxel of unknown i + offset] = values[i]``."""
    fy, fz = dims[1], dims[2]
    for i in range(flat.size):
        a = flat[i] // (fy * fz)
        rest = flat[i] - a * fy * fz
        b = rest // fz
        out[a + offset[0], b + offset[1], rest - b * fz + offset[2]] = values[i]


# ------------------------------------------------------------------------------ the hierarchy


@dataclass
class _Level:
    """One multigrid level: a symmetric 7-point operator on ``n`` unknowns, red ones first.

    ``neighbours[d, i]`` is the unknown next to ``i`` in direction ``d`` (``n``: none; vectors
    carry a zero slot at position ``n``), ``weight[d, i * wstep]`` its coupling (``wstep`` 0: one
    weight per direction); direction-major, so each direction is one sequential stream, ``flat`` the unknown's flat index in the level's box of shape ``dims``.
    """

    n: int
    n_red: int
    neighbours: np.ndarray  # int32 (6, n)
    weight: np.ndarray  # float32 (6, n) or (6, 1)
    wstep: int
    diag: np.ndarray  # float32 (n,)
    flat: np.ndarray  # int64 (n,)
    dims: np.ndarray  # int64 (3,)
    parent: np.ndarray | None = None  # int32 (n,): aggregate on the next level
    direct: Callable[[np.ndarray], np.ndarray] | None = None  # coarsest level only

    def __post_init__(self) -> None:
        self.inv_diag = (1.0 / self.diag).astype(np.float32)

    def add_work_vectors(self) -> None:
        """Vectors of a coarse level (the fine level works on the CG vectors instead)."""
        f32 = np.float32
        self.rhs = np.zeros(self.n, dtype=f32)  # right-hand side handed down by the finer level
        self.xa = np.zeros(self.n + 1, dtype=f32)  # iterates (the zero slot stays zero)
        self.xb = np.zeros(self.n + 1, dtype=f32)
        self.va = np.zeros(self.n + 1, dtype=f32)
        self.vb = np.zeros(self.n + 1, dtype=f32)
        self.r2 = np.zeros(self.n, dtype=f32)

    def op(self) -> tuple:
        return self.neighbours, self.weight, self.wstep

    def smooth(self, x: np.ndarray, r: np.ndarray, red: bool, from_zero: bool = False) -> float:
        """One Gauss-Seidel half sweep on one colour (x with the zero slot); returns ``r . x``
        over that colour."""
        lo, hi = (0, self.n_red) if red else (self.n_red, self.n)
        if hi == lo:
            return 0.0
        if from_zero:
            return _scale(r, self.inv_diag, x, lo, hi)
        return _smooth(self.neighbours, self.weight, self.wstep, self.inv_diag, r, x, lo, hi)

    def apply_dot(self, x: np.ndarray, out: np.ndarray) -> float:
        """``out[:n] = A x``; returns ``x . A x``."""
        return _apply_dot(self.neighbours, self.weight, self.wstep, self.diag, x, out)


def _as_voxel_size(voxel_size_mm: float | Sequence[float]) -> tuple[float, float, float]:
    values = np.broadcast_to(np.asarray(voxel_size_mm, dtype=float), (3,))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise CortexgraphError(
            f"voxel_size_mm must be positive, got {voxel_size_mm!r}",
            fix="pass the voxel edge length in millimetres (one number or three)",
        )
    return (float(values[0]), float(values[1]), float(values[2]))


def _kernel_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` in a dtype the kernels take (native byte order, integer or float)."""
    if labels.dtype.kind in "iuf":
        return labels if labels.dtype.isnative else labels.astype(labels.dtype.newbyteorder("="))
    return labels.astype(np.int64)


def _crop_box(labels: np.ndarray) -> tuple | None:
    """Codes of the cortex bounding box with a one-voxel frame (``_OUTSIDE`` beyond the array).

    Returns the code box, the slices of ``labels`` that it covers (without the ``_OUTSIDE``
    frame), the offset of those slices inside the box and the numbers of red and black cortex
    voxels; None when there is no cortex.
    """
    lo, hi = _cortex_bounds(labels, CORTEX_LABEL)
    if hi[0] < 0:
        return None
    shape = np.array(labels.shape, dtype=np.int64)
    start = np.maximum(lo - 1, 0)
    stop = np.minimum(hi + 2, shape)
    pad = (start == 0).astype(np.int64)
    extent = stop - start + pad + (stop == shape)
    codes = np.full(tuple(int(v) for v in extent), _OUTSIDE, dtype=np.uint8)
    n_red, n_black = _fill_codes(labels, start, stop, pad, WHITE_LABEL, CORTEX_LABEL, codes)
    slices = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    return codes, slices, pad, int(n_red), int(n_black)


def _coarsen(fine: _Level) -> _Level:
    """The next level: 2x2x2 aggregates of ``fine`` with the Galerkin operator.

    Arrays are allocated here with numpy (which asks for transparent huge pages), not inside the
    kernels: first-touch page faults were the largest and most variable part of the setup.
    """
    cdims = fine.dims // 2 + 2
    code = np.full(int(np.prod(cdims)), -1, dtype=np.int32)
    key = np.empty(fine.n, dtype=np.int32 if code.size < 2**31 else np.int64)
    n_red, nc = _aggregate(fine.flat, fine.dims, cdims, code, key)
    parent = np.empty(fine.n, dtype=np.int32)
    flat = np.empty(nc, dtype=np.int64)
    neighbours = np.empty((6, nc), dtype=np.int32)
    weight = np.empty((6, nc), dtype=np.float32)
    diag = np.empty(nc, dtype=np.float32)
    _galerkin(
        fine.neighbours,
        fine.weight,
        fine.wstep,
        fine.diag,
        code,
        key,
        cdims,
        parent,
        flat,
        neighbours,
        weight,
        diag,
    )
    fine.parent = parent
    return _Level(
        n=nc,
        n_red=int(n_red),
        neighbours=neighbours,
        weight=weight,
        wstep=1,
        diag=diag,
        flat=flat,
        dims=cdims,
    )


def _level_matrix(level: _Level) -> sp.csr_matrix:
    """The level's operator as a float64 CSR matrix."""
    n = level.n
    matrix = sp.diags(level.diag.astype(np.float64)).tocsr()
    for d in range(6):  # one direction at a time keeps the peak memory low
        keep = level.neighbours[d] < n
        rows = np.flatnonzero(keep)
        weight = np.broadcast_to(level.weight[d], (n,))[keep].astype(np.float64)
        columns = level.neighbours[d][keep]
        matrix = matrix - sp.csr_matrix((weight, (rows, columns)), shape=(n, n))
    return matrix.tocsr()


@dataclass
class _System:
    """The discrete problem on the compact cortex unknowns (fine level + right-hand side)."""

    level: _Level
    rhs: np.ndarray  # float32 (n,)
    slices: tuple[slice, ...]
    pad: np.ndarray  # int64 (3,): offset of ``slices`` inside the box
    cortex_voxels: int
    unconstrained_voxels: int


def _build_system(
    labels: np.ndarray, voxel_size_mm: tuple[float, float, float], boundary: str
) -> _System | None:
    """Assemble the fine level straight from the labels; None when there is no cortex."""
    cropped = _crop_box(_kernel_labels(labels))
    if cropped is None:
        return None
    codes, slices, pad, n_red, n_black = cropped
    h_min = min(voxel_size_mm)
    axis_weight = np.array([(h_min / h) ** 2 for h in voxel_size_mm], dtype=np.float64)
    n = n_red + n_black
    neighbours = np.empty((6, n), dtype=np.int32)
    diag = np.empty(n, dtype=np.float32)
    rhs = np.empty(n, dtype=np.float32)
    flat = np.empty(n, dtype=np.int64)
    contact = _assemble(
        codes, n_red, axis_weight, _BOUNDARY_FACTOR[boundary], neighbours, diag, rhs, flat
    )
    dims = np.array(codes.shape, dtype=np.int64)
    del codes
    cortex_voxels = flat.size
    # A cortex component with no Dirichlet neighbour has no defined depth. Every non-cortex voxel
    # is a Dirichlet voxel, so such a component is bounded only by the array edges: it is the whole
    # volume, and that happens exactly when no cortex voxel touches a Dirichlet voxel.
    unconstrained = 0
    if not contact:
        unconstrained = cortex_voxels
        n_red, neighbours, diag, rhs, flat = 0, neighbours[:0], diag[:0], rhs[:0], flat[:0]
    weight = np.array([[axis_weight[d // 2]] for d in range(6)], dtype=np.float32)
    level = _Level(
        n=flat.size,
        n_red=int(n_red),
        neighbours=neighbours,
        weight=weight,
        wstep=0,
        diag=diag,
        flat=flat,
        dims=dims,
    )
    return _System(level, rhs, slices, pad, cortex_voxels, unconstrained)


def _build_hierarchy(fine: _Level, coarsest_unknowns: int, max_levels: int) -> list[_Level]:
    levels = [fine]
    while levels[-1].n > coarsest_unknowns and len(levels) < max_levels:
        coarse = _coarsen(levels[-1])
        if coarse.n >= levels[-1].n:  # cannot shrink further
            levels[-1].parent = None
            break
        coarse.add_work_vectors()
        levels.append(coarse)
    levels[-1].direct = spla.factorized(_level_matrix(levels[-1]).tocsc())
    return levels


# --------------------------------------------------------------------------------- the solver


def _cycle(
    levels: list[_Level], index: int, r: np.ndarray, out: np.ndarray, smoothing_steps: int
) -> float:
    """Approximate ``A^{-1} r`` on level ``index`` with one symmetric V-cycle into ``out``.

    Returns ``r . out`` (the smoothing sweeps compute it on the way).
    """
    level = levels[index]
    n = level.n
    out[n] = 0.0
    if level.direct is not None:
        out[:n] = level.direct(r.astype(np.float64))
        return _dot(r, out, n)
    for step in range(smoothing_steps):
        level.smooth(out, r, red=True, from_zero=step == 0)
        level.smooth(out, r, red=False)
    coarse = levels[index + 1]
    _restrict_red(
        level.neighbours,
        level.weight,
        level.wstep,
        level.diag,
        r,
        out,
        level.n_red,
        level.parent,
        coarse.rhs,
    )
    _coarse_solve(levels, index + 1, coarse.rhs, coarse.xa, smoothing_steps)
    # the black sweep below overwrites the black values without reading them: correct red only
    _prolong_add(level.parent, coarse.xa, _OVERCORRECTION, out, level.n_red)
    rz = 0.0
    for _ in range(smoothing_steps):
        rz = level.smooth(out, r, red=False)
        rz += level.smooth(out, r, red=True)
    return rz


def _coarse_solve(
    levels: list[_Level], index: int, r: np.ndarray, out: np.ndarray, smoothing_steps: int
) -> None:
    """K-cycle (Notay): two flexible-CG steps on a coarse level, each preconditioned by a cycle.

    The approximation of ``A^{-1} r`` is left in ``out``.
    """
    level = levels[index]
    if level.direct is not None or not _KCYCLE:
        _cycle(levels, index, r, out, smoothing_steps)
        return
    n = level.n
    z1 = out
    a1 = _cycle(levels, index, r, z1, smoothing_steps)
    v1 = level.va
    rho1 = level.apply_dot(z1, v1)
    if rho1 <= 0.0:
        return
    r2 = level.r2
    rr2, rr = _axpy_norm(r, v1, -a1 / rho1, r2, n)
    if rr2 <= 0.0625 * rr:  # ||r2|| <= 0.25 ||r||
        _combine(z1, a1 / rho1, z1, 0.0, n)
        return
    z2 = level.xb
    a2 = _cycle(levels, index, r2, z2, smoothing_steps)
    v2 = level.vb
    beta = level.apply_dot(z2, v2)
    gamma = _dot(z2, v1, n)
    rho2 = beta - gamma * gamma / rho1
    if rho2 <= 0.0:
        _combine(z1, a1 / rho1, z1, 0.0, n)
        return
    _combine(z1, a1 / rho1 - gamma * a2 / (rho1 * rho2), z2, a2 / rho2, n)


def _pcg(
    levels: list[_Level],
    rhs: np.ndarray,
    tol: float,
    max_iter: int,
    smoothing_steps: int,
) -> tuple[np.ndarray, int, float]:
    """Flexible multigrid-preconditioned CG from x = 0: (x with zero slot, iterations, residual).

    The K-cycle preconditioner is slightly nonlinear, hence the Polak-Ribiere form of beta.
    """
    fine = levels[0]
    n = fine.n
    x = np.zeros(n + 1, dtype=np.float32)
    norm_b = float(np.sqrt(_dot(rhs, rhs, n)))
    if norm_b == 0.0:
        return x, 0, 0.0
    r = rhs.copy()
    z = np.zeros(n + 1, dtype=np.float32)
    p = np.zeros(n + 1, dtype=np.float32)
    ap = np.zeros(n + 1, dtype=np.float32)
    iterations = 0
    true_relative = 0.0
    while True:
        # (re)start CG from the true residual
        rz = _cycle(levels, 0, r, z, smoothing_steps)
        p[:] = z
        # after a restart the float64 residual decides: the float32 one can lie at or just below
        # tol while the float64 one is just above it, and a restart that takes no step would
        # repeat forever; every restart takes at least one step, so max_iter bounds the loop
        relative = max(float(np.sqrt(_dot(r, r, n))) / norm_b, true_relative)
        while relative > tol and iterations < max_iter:
            pap = fine.apply_dot(p, ap)
            if pap <= 0.0:
                break
            step = rz / pap
            rr, z_r_old = _cg_step(x, p, r, ap, z, step, n)  # z_old . r_new, for Polak-Ribiere
            iterations += 1
            relative = float(np.sqrt(rr)) / norm_b
            if relative <= tol:
                break
            rz_new = _cycle(levels, 0, r, z, smoothing_steps)
            _combine(p, (rz_new - z_r_old) / rz, z, 1.0, n)
            rz = rz_new
        true_relative = _relative_residual(fine, x, rhs)
        if true_relative <= tol or iterations >= max_iter or relative > tol:
            return x, iterations, true_relative
        _residual(fine.neighbours, fine.weight, fine.wstep, fine.diag, x, rhs, r)


def _relative_residual(level: _Level, x: np.ndarray, rhs: np.ndarray) -> float:
    """``||b - A x|| / ||b||`` with float64 accumulation (x with the zero slot)."""
    norm_r, norm_b = _residual_norms(
        level.neighbours, level.weight, level.wstep, level.diag, x, rhs
    )
    return float(norm_r) if norm_b == 0.0 else float(norm_r / norm_b)


def solve_laplace_depth(
    labels: np.ndarray,
    voxel_size_mm: float | Sequence[float] = 1.0,
    *,
    tol: float = 1e-5,
    max_iter: int = 100,
    smoothing_steps: int = 1,
    coarsest_unknowns: int = 2000,
    max_levels: int = 16,
    boundary: str = "face",
) -> tuple[np.ndarray, dict]:
    """Cortical depth: Laplace's equation in the cortex, 0 at the pial side, 1 at the white side.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Tissue labels: 0 background/CSF, 1 white matter, 2 gray matter (cortex). Any other value
        is treated as background (pial side).
    voxel_size_mm : float or 3 floats
        Voxel edge lengths in mm; only their ratios matter (anisotropic stencil weights
        ``1 / h**2``). The depth itself is dimensionless.
    tol : float
        Stop when the relative residual ``||b - A u||_2 / ||b||_2`` of the discrete system is at most
        ``tol`` (the same criterion as ``scipy.sparse.linalg.cg(rtol=tol)``). The solver works in
        float32, so tolerances below about 1e-6 may not be reachable.
    max_iter : int
        Most preconditioned CG iterations (each is one multigrid V-cycle).
    smoothing_steps : int
        Red-black Gauss-Seidel sweeps before and after each coarse-grid correction.
    coarsest_unknowns : int
        Levels are added until one has at most this many unknowns; it is solved directly.
    max_levels : int
        Cap on the number of multigrid levels.
    boundary : {"face", "centre"}
        Where the Dirichlet value sits: on the face between a cortex voxel and its non-cortex
        neighbour (default; ghost value ``2 g - u``, unbiased for label volumes: RMS 0.009 on the
        0.3 mm shell) or at the neighbour's centre (classic; RMS 0.016, boundaries shifted by
        half a voxel into the non-cortex tissue).

    Returns
    -------
    depth : ndarray of float32, shape (X, Y, Z)
        Depth in [0, 1] on cortex voxels (0 pial, 1 white); NaN elsewhere and on cortex
        components that touch neither background nor white matter.
    info : dict
        ``iterations`` (CG iterations), ``residual`` (final relative residual, float64
        accumulation), ``residual_kind`` (``"relative_l2"``), ``converged`` (bool), ``unknowns``,
        ``cortex_voxels``, ``unconstrained_voxels``, ``levels`` (unknowns per multigrid level),
        ``setup_seconds``, ``solve_seconds``, ``seconds`` (total wall time).

    Raises
    ------
    ConvergenceError
        If the residual is above ``tol`` after ``max_iter`` iterations (message states both).
    CortexgraphError
        If ``labels`` is not a 3D array.
    """
    start = time.perf_counter()
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise CortexgraphError(
            f"labels must be a 3D volume, got shape {labels.shape}",
            fix="pass a tissue label volume (0 background, 1 white matter, 2 cortex)",
        )
    voxel = _as_voxel_size(voxel_size_mm)
    if boundary not in _BOUNDARY_FACTOR:
        raise CortexgraphError(
            f"unknown boundary placement {boundary!r}", fix='use "face" or "centre"'
        )
    depth = np.full(labels.shape, np.nan, dtype=np.float32)
    info: dict = {
        "iterations": 0,
        "residual": 0.0,
        "residual_kind": "relative_l2",
        "converged": True,
        "unknowns": 0,
        "cortex_voxels": 0,
        "unconstrained_voxels": 0,
        "levels": [],
        "setup_seconds": 0.0,
        "solve_seconds": 0.0,
        "seconds": 0.0,
    }
    system = _build_system(labels, voxel, boundary)
    if system is None:  # no cortex
        info["seconds"] = time.perf_counter() - start
        return depth, info
    info["cortex_voxels"] = system.cortex_voxels
    info["unconstrained_voxels"] = system.unconstrained_voxels
    info["unknowns"] = system.level.n
    if system.level.n > 0:
        levels = _build_hierarchy(system.level, coarsest_unknowns, max_levels)
        info["levels"] = [lv.n for lv in levels]
        setup_end = time.perf_counter()
        info["setup_seconds"] = setup_end - start
        x, iterations, residual = _pcg(levels, system.rhs, tol, max_iter, smoothing_steps)
        info["solve_seconds"] = time.perf_counter() - setup_end
        info["iterations"] = iterations
        info["residual"] = residual
        info["converged"] = residual <= tol
        offset = np.array([s.start for s in system.slices], dtype=np.int64) - system.pad
        _scatter(system.level.flat, system.level.dims, x, offset, depth)
    info["seconds"] = time.perf_counter() - start
    if not info["converged"]:
        raise ConvergenceError(
            f"Laplace depth solver did not converge: relative residual {info['residual']:.3e} > "
            f"tol {tol:.1e} after {info['iterations']} iterations ({info['unknowns']} unknowns)",
            fix="raise max_iter or tol, or check the label volume for isolated cortex",
        )
    return depth, info


def laplace_system(
    labels: np.ndarray, voxel_size_mm: float | Sequence[float] = 1.0, boundary: str = "face"
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The assembled sparse system that :func:`solve_laplace_depth` solves matrix-free.

    For comparison with other solvers (benchmarks, tests). Returns ``(A, b, index)``: ``A`` float64
    CSR (n, n) symmetric positive definite, ``b`` float64 (n,), and ``index`` int64 (n, 3), the
    voxel index of each unknown in ``labels``. Unconstrained cortex components are left out.
    """
    labels = np.asarray(labels)
    if boundary not in _BOUNDARY_FACTOR:
        raise CortexgraphError(
            f"unknown boundary placement {boundary!r}", fix='use "face" or "centre"'
        )
    system = _build_system(labels, _as_voxel_size(voxel_size_mm), boundary)
    if system is None:
        return sp.csr_matrix((0, 0)), np.zeros(0), np.zeros((0, 3), dtype=np.int64)
    level = system.level
    coords = np.stack(np.unravel_index(level.flat, tuple(int(v) for v in level.dims)), axis=1)
    coords += np.array([s.start for s in system.slices], dtype=np.int64) - system.pad
    return _level_matrix(level), system.rhs.astype(np.float64), coords

"""Binary median filter and small-component removal for 3D area maps, in memory and chunked.

The 3D map of an area is smoothed with an 11 x 11 x 11 median filter, then connected components
smaller than 27 mm^3 are removed (Schiffer et al. 2021, NeuroImage, Sect. 2.8 and
Fig. 7; Schiffer, PhD thesis, Sect. 5.2.6).

Median of a binary window
    For a binary volume the median of an odd-sized window of ``n`` voxels is 1 exactly when at least
    ``(n + 1) / 2`` of them are 1. So the median filter is a box count followed by a majority
    threshold. The box count is separable: three 1D running sums (cumulative sum, then difference),
    computed in unsigned 16-bit integer arithmetic. Intermediate cumulative sums may wrap modulo
    2**16, but every window sum is < 2**16 (n <= 65535 is checked), so the differences are exact.
    Cost is O(1) per voxel whatever the window size (scipy's generic median is O(n) per voxel).

Borders
    The volume is extended by half-sample symmetric reflection ``(d c b a | a b c d | d c b a)``,
    which is ``scipy.ndimage.median_filter``'s default ``mode='reflect'``, numpy's
    ``np.pad(mode='symmetric')`` and dask's ``boundary='reflect'``. The result therefore equals
    ``scipy.ndimage.median_filter(mask, size=size)`` voxel for voxel (tested).

Connectivity
    The publications do not state the connectivity of the component analysis. We default to
    26-connectivity (faces, edges and corners; ``scipy.ndimage.generate_binary_structure(3, 3)``),
    which merges diagonally touching pieces of a thin folded cortex band into one component;
    ``connectivity=6`` (faces only) is available.

Chunked versions
    ``binary_median_filter_blockwise`` (used by the map pipeline out of core) reads each block plus
    its halo straight from the source array (a ``np.memmap``) and writes into a destination array,
    with a fixed number of dask threads, so memory is bounded by the blocks in flight;
    ``remove_small_components_blockwise`` does the same for the two passes of the component
    analysis below.
    ``binary_median_filter_chunked`` overlaps dask chunks by ``size // 2`` voxels (reflecting at the
    volume border) and counts only the valid part of each block. ``remove_small_components_chunked``
    labels each chunk with scipy, merges labels that touch across chunk faces (a union-find over the
    label graph, solved with ``scipy.sparse.csgraph.connected_components``), sums component sizes,
    and relabels each chunk with a keep/drop lookup table (labels are recomputed per chunk in the
    second pass instead of storing a 32-bit label volume). Both give exactly the in-memory result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

__all__ = [
    "box_count",
    "binary_median_filter",
    "binary_median_filter_blockwise",
    "binary_median_filter_chunked",
    "min_component_voxels",
    "remove_small_components",
    "remove_small_components_blockwise",
    "remove_small_components_chunked",
]


def _as_sizes(size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    if isinstance(size, int | float | np.number):  # a scalar: the same on every axis
        sizes = (int(size),) * ndim
    else:
        sizes = tuple(int(s) for s in size)
    if len(sizes) != ndim:
        raise ValueError(f"size has {len(sizes)} entries for a {ndim}D volume")
    for s in sizes:
        if s < 1 or s % 2 == 0:
            raise ValueError(f"median window sizes must be odd and >= 1, got {sizes}")
    if math.prod(sizes) > np.iinfo(np.uint16).max:
        raise ValueError(f"window of {math.prod(sizes)} voxels is too large for 16-bit counts")
    return sizes


def _valid_running_sum(a: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Sums of ``width`` consecutive entries along ``axis`` (valid part only), uint16 arithmetic."""
    if width == 1:
        return a
    a = np.moveaxis(a, axis, 0)
    n_out = a.shape[0] - width + 1
    csum = np.empty((a.shape[0] + 1,) + a.shape[1:], dtype=np.uint16)
    csum[0] = 0
    np.cumsum(a, axis=0, dtype=np.uint16, out=csum[1:])
    out = csum[width : width + n_out] - csum[:n_out]  # modular difference: exact
    return np.moveaxis(out, 0, axis)


def _valid_box_count(padded: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    counts = padded.astype(np.uint16, copy=False) if padded.dtype != np.uint16 else padded
    for axis, width in enumerate(sizes):
        counts = _valid_running_sum(counts, width, axis)
    return counts


def box_count(mask: np.ndarray, size: int | Sequence[int] = 11) -> np.ndarray:
    """Number of foreground voxels in the box window around each voxel.

    Parameters
    ----------
    mask : ndarray of bool or 0/1 integers, any dimension
        Binary volume.
    size : int or sequence of int
        Odd window edge length in voxels (per axis if a sequence).

    Returns
    -------
    ndarray of uint16, same shape as ``mask``
        Window counts with half-sample symmetric reflection at the borders (scipy ``'reflect'``).
    """
    mask = np.asarray(mask)
    sizes = _as_sizes(size, mask.ndim)
    padded = np.pad(
        mask.astype(np.uint8, copy=False), [(s // 2, s // 2) for s in sizes], mode="symmetric"
    )
    return _valid_box_count(padded, sizes)


def binary_median_filter(mask: np.ndarray, size: int | Sequence[int] = 11) -> np.ndarray:
    """Median filter of a binary volume, computed as a box-count majority vote.

    Parameters
    ----------
    mask : ndarray of bool or 0/1 integers
        Binary volume (any dimension; 3D area maps in practice). Nonzero counts as foreground.
    size : int or sequence of int, default 11
        Odd window edge length in voxels. The method uses 11 (= 2 * 5 + 1: 100 um boundary
        precision at 20 um voxels).

    Returns
    -------
    ndarray of bool, same shape
        Equal to ``scipy.ndimage.median_filter(mask.astype(bool), size=size)`` (mode 'reflect').
    """
    mask = np.asarray(mask) != 0
    sizes = _as_sizes(size, mask.ndim)
    n_window = math.prod(sizes)
    return box_count(mask, sizes) >= (n_window + 1) // 2


def _min_chunks(chunks, min_sizes) -> tuple[tuple[int, ...], ...]:
    """Merge chunks smaller than the overlap depth into their neighbour (dask needs >= depth)."""
    out = []
    for axis, (c, m) in enumerate(zip(chunks, min_sizes, strict=True)):
        if sum(c) < m:
            raise ValueError(
                f"axis {axis} has {sum(c)} voxels, fewer than the filter half-width {m}"
            )
        merged: list[int] = []
        for n in c:
            if merged and (merged[-1] < m or n < m):
                merged[-1] += n
            else:
                merged.append(n)
        out.append(tuple(merged))
    return tuple(out)


def _median_block(block: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    # ``block`` already carries a halo of size // 2 on every side (overlap or border reflection).
    n_window = math.prod(sizes)
    return _valid_box_count((block != 0).view(np.uint8), sizes) >= (n_window + 1) // 2


def binary_median_filter_chunked(mask, size: int | Sequence[int] = 11, chunks=None):
    """Chunked (dask) binary median filter; same result as :func:`binary_median_filter`.

    Parameters
    ----------
    mask : dask.array.Array or ndarray
        Binary volume. A numpy array is wrapped with ``chunks``.
    size : int or sequence of int, default 11
        Odd window edge length in voxels.
    chunks : int, tuple or str, optional
        Chunking for a numpy input (default ``'auto'``), or a rechunk request for a dask input.
        Chunks smaller than ``size // 2`` along an axis are merged into a neighbour.

    Returns
    -------
    dask.array.Array of bool
        Lazy filtered volume with the input's chunks; call ``.compute()`` or ``dask.array.store``.
    """
    import dask.array as da

    if not isinstance(mask, da.Array):
        mask = da.from_array(np.asarray(mask), chunks="auto" if chunks is None else chunks)
    elif chunks is not None:
        mask = mask.rechunk(chunks)
    mask = mask != 0
    sizes = _as_sizes(size, mask.ndim)
    depth = {axis: s // 2 for axis, s in enumerate(sizes)}
    mask = mask.rechunk(_min_chunks(mask.chunks, [depth[a] for a in range(mask.ndim)]))
    halo = da.overlap.overlap(mask, depth=depth, boundary="reflect")
    return halo.map_blocks(_median_block, sizes, dtype=bool, chunks=mask.chunks)


def _chunk_per_axis(chunk_vox: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Block edge per axis: a scalar for every axis, or one per axis as given."""
    if isinstance(chunk_vox, int | float | np.number):
        return (int(chunk_vox),) * ndim
    return tuple(chunk_vox)


def _block_slices(shape: Sequence[int], chunk_vox: int | Sequence[int]):
    """Slices of a regular block grid over ``shape`` (last blocks may be smaller)."""
    chunk = _chunk_per_axis(chunk_vox, len(shape))
    if any(c < 1 for c in chunk):
        raise ValueError(f"chunk sizes must be >= 1, got {chunk}")
    ranges = [range(0, n, c) for n, c in zip(shape, chunk, strict=True)]
    for start in np.ndindex(*(len(r) for r in ranges)):
        yield tuple(
            slice(r[i], min(r[i] + c, n))
            for r, i, c, n in zip(ranges, start, chunk, shape, strict=True)
        )


def _median_from_source(mask, block: tuple[slice, ...], sizes: tuple[int, ...]) -> np.ndarray:
    """Median of one block of ``mask``, reading the block plus its halo straight from ``mask``.

    Where the halo leaves the volume it is filled by half-sample symmetric reflection of what was
    read; the region read always reaches ``size // 2`` voxels into the volume (or spans the whole
    axis), so this equals reflecting the whole volume (``np.pad(mode='symmetric')``).
    """
    read, pad = [], []
    for sl, s, n in zip(block, sizes, mask.shape, strict=True):
        half = s // 2
        lo, hi = max(0, sl.start - half), min(n, sl.stop + half)
        read.append(slice(lo, hi))
        pad.append((half - (sl.start - lo), half - (hi - sl.stop)))
    region = np.asarray(mask[tuple(read)]) != 0
    if any(p != (0, 0) for p in pad):
        region = np.pad(region, pad, mode="symmetric")
    return _median_block(region.view(np.uint8), sizes)


def _bool_output(out, shape: tuple[int, ...]):
    """The destination of a blockwise filter: ``out`` (ValueError unless of ``shape``, the input
    volume's shape in voxels), or a new all-False bool array of that shape when None."""
    if out is None:
        return np.zeros(shape, dtype=bool)
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {out.shape}, mask {shape}")
    return out


def binary_median_filter_blockwise(
    mask,
    size: int | Sequence[int] = 11,
    *,
    out=None,
    chunk_vox: int | Sequence[int] = 128,
    num_workers: int = 2,
):
    """Out-of-core binary median filter: blocks read from ``mask``, written into ``out``.

    Same result as :func:`binary_median_filter`, with bounded memory: the volume is cut into
    blocks of ``chunk_vox`` voxels; each block task reads its block plus a halo of ``size // 2``
    voxels directly from ``mask`` (no dask overlap graph: the overlap/concatenate tasks of
    :func:`binary_median_filter_chunked` let the threaded scheduler keep many neighbouring chunks
    alive), computes the box-count majority and writes it into ``out``. Tasks run on dask's
    threaded scheduler with ``num_workers`` threads, so at most ``num_workers`` blocks are in
    memory at a time (about ``(chunk_vox + size)^3 x 7`` bytes each: the region as uint8 and the
    uint16 running sums).

    Parameters
    ----------
    mask : 3D array-like of bool
        ndarray, ``np.memmap``, h5py or zarr dataset (anything sliceable that returns arrays).
    size : int or sequence of int, default 11
        Odd window edge length in voxels.
    out : writable 3D array of bool, optional
        Destination (e.g. an ``np.memmap``); must not be ``mask`` itself (blocks read halos of
        their neighbours). Default: a new in-memory array.
    chunk_vox : int or sequence of int, default 128
        Block edge in voxels.
    num_workers : int, default 2
        Threads of the dask scheduler.

    Returns
    -------
    ``out``, filled.
    """
    import dask

    shape = tuple(mask.shape)
    sizes = _as_sizes(size, len(shape))
    out = _bool_output(out, shape)
    if out is mask:
        raise ValueError("out must not be the input volume (blocks read their neighbours)")

    def task(block):
        out[block] = _median_from_source(mask, block, sizes)

    tasks = [dask.delayed(task)(b) for b in _block_slices(shape, chunk_vox)]
    dask.compute(*tasks, scheduler="threads", num_workers=max(1, int(num_workers)))
    return out


def _structure(ndim: int, connectivity: int) -> np.ndarray:
    if ndim == 3:
        rank = {6: 1, 18: 2, 26: 3}.get(connectivity)
    elif ndim == 2:
        rank = {4: 1, 8: 2}.get(connectivity)
    else:
        rank = {1: 1, ndim: ndim}.get(connectivity)
    if rank is None:
        raise ValueError(f"connectivity {connectivity} is not defined for {ndim}D volumes")
    return ndimage.generate_binary_structure(ndim, rank)


def min_component_voxels(
    min_volume_mm3: float, voxel_size_mm: float | Sequence[float] | np.ndarray
) -> int:
    """Smallest voxel count whose volume reaches ``min_volume_mm3`` (27 mm^3 -> 3,375,000 at 20 um).

    ``voxel_size_mm`` is a scalar edge length or one edge per axis (mm).
    """
    sizes = np.atleast_1d(np.asarray(voxel_size_mm, dtype=float))
    voxel_mm3 = float(np.prod(sizes)) if sizes.size > 1 else float(sizes[0]) ** 3
    if voxel_mm3 <= 0:
        raise ValueError(f"voxel size must be positive, got {voxel_size_mm}")
    # relative tolerance so that 27 / 0.02**3 = 3375000.0000000005 gives 3375000, not 3375001
    return int(math.ceil(min_volume_mm3 / voxel_mm3 * (1.0 - 1e-9)))


def remove_small_components(
    mask: np.ndarray,
    min_volume_mm3: float = 27.0,
    voxel_size_mm: float | Sequence[float] = 0.02,
    connectivity: int = 26,
) -> np.ndarray:
    """Keep only connected components whose volume is at least ``min_volume_mm3``.

    Parameters
    ----------
    mask : ndarray of bool
        Binary 3D volume.
    min_volume_mm3 : float, default 27.0
        Smallest kept component volume (method: 27 mm^3 = 3 x 3 x 3 mm).
    voxel_size_mm : float or sequence of 3 floats, default 0.02
        Voxel edge length(s) in mm (20 um in BigBrain).
    connectivity : {26, 18, 6}
        Voxel neighbourhood (26 by default; the publications do not specify it).

    Returns
    -------
    ndarray of bool
        ``mask`` without the small components.
    """
    mask = np.asarray(mask) != 0
    labels, n = ndimage.label(mask, structure=_structure(mask.ndim, connectivity))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_component_voxels(min_volume_mm3, voxel_size_mm)
    keep[0] = False
    return keep[labels]


# ---------------------------------------------------------------- chunked connected components


def _block_summary(block: np.ndarray, structure: np.ndarray):
    labels, n = ndimage.label(block != 0, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
    faces = []
    for axis in range(block.ndim):
        lo = np.take(labels, 0, axis=axis).astype(np.int32)
        hi = np.take(labels, labels.shape[axis] - 1, axis=axis).astype(np.int32)
        faces.append((lo, hi))
    return n, sizes, faces


def _plane_pairs(a: np.ndarray, b: np.ndarray, shifts: list[tuple[int, ...]]):
    """Label pairs (a[p], b[p + s]) for in-plane shifts s, both labels nonzero."""
    out = []
    for shift in shifts:
        sa, sb = [], []
        for d, n in zip(shift, a.shape, strict=True):
            sa.append(slice(max(0, -d), n - max(0, d)))
            sb.append(slice(max(0, d), n - max(0, -d)))
        la, lb = a[tuple(sa)].ravel(), b[tuple(sb)].ravel()
        both = (la > 0) & (lb > 0)
        if both.any():
            out.append(np.stack([la[both], lb[both]], axis=1))
    return out


def _keep_block(block: np.ndarray, *, structure: np.ndarray, luts: dict, block_id=None):
    labels, _ = ndimage.label(block != 0, structure=structure)
    return luts[block_id][labels]


def remove_small_components_chunked(
    mask,
    min_volume_mm3: float = 27.0,
    voxel_size_mm: float | Sequence[float] = 0.02,
    connectivity: int = 26,
    chunks=None,
):
    """Chunked (dask) :func:`remove_small_components`; exactly the in-memory result.

    Two passes over the chunks: (1) label each chunk, record component sizes and the labels on the
    chunk's six faces; merge labels that touch across chunk faces (all in-plane offsets allowed by
    the connectivity, so edge and corner contacts between diagonal chunks are included) and sum
    sizes per merged component; (2) relabel each chunk and keep the voxels of large components.
    Pass 1 is computed when this function is called; pass 2 is returned lazily.

    Parameters
    ----------
    mask : dask.array.Array or ndarray
        Binary 3D volume (a numpy input is wrapped with ``chunks``, default ``'auto'``).
    min_volume_mm3, voxel_size_mm, connectivity
        As in :func:`remove_small_components`.
    chunks : optional
        Chunking for a numpy input or rechunk request for a dask input.

    Returns
    -------
    dask.array.Array of bool
        Lazy cleaned volume with the input's chunks.
    """
    import dask
    import dask.array as da

    if not isinstance(mask, da.Array):
        mask = da.from_array(np.asarray(mask), chunks="auto" if chunks is None else chunks)
    elif chunks is not None:
        mask = mask.rechunk(chunks)
    ndim = mask.ndim
    structure = _structure(ndim, connectivity)
    grid = mask.numblocks
    block_ids = list(np.ndindex(*grid))
    delayed_blocks = mask.to_delayed()
    tasks = [dask.delayed(_block_summary)(delayed_blocks[b], structure) for b in block_ids]
    summaries = dict(zip(block_ids, dask.compute(*tasks), strict=True))
    luts = _merge_components(summaries, grid, structure, min_volume_mm3, voxel_size_mm)
    return mask.map_blocks(
        functools.partial(_keep_block, structure=structure, luts=luts), dtype=bool
    )


def remove_small_components_blockwise(
    mask,
    min_volume_mm3: float = 27.0,
    voxel_size_mm: float | Sequence[float] = 0.02,
    connectivity: int = 26,
    *,
    out=None,
    chunk_vox: int | Sequence[int] = 128,
    num_workers: int = 2,
):
    """Out-of-core :func:`remove_small_components`: blocks read from ``mask``, written into ``out``.

    The two passes of :func:`remove_small_components_chunked` (label each block and merge labels
    across block faces; relabel each block and keep the large components), with block tasks that
    read their block straight from ``mask`` and write into ``out`` on dask's threaded scheduler
    (``num_workers`` threads). Unlike a dask array built with ``from_array``, whose reader tasks
    the scheduler may run far ahead of the labelling, at most ``num_workers`` blocks are in memory
    at a time (plus the six face planes of every block's labels, kept for the merge).

    Parameters
    ----------
    mask : 3D array-like of bool (ndarray, ``np.memmap``, h5py or zarr dataset)
    min_volume_mm3, voxel_size_mm, connectivity
        As in :func:`remove_small_components`.
    out : writable array of bool, optional
        Destination (may be ``mask`` itself: pass 2 reads and writes each block once). Default: a
        new in-memory array.
    chunk_vox, num_workers
        As in :func:`binary_median_filter_blockwise` (block edge in voxels, default 128; threads of
        the dask scheduler, default 2).

    Returns
    -------
    ``out``, filled; equal to :func:`remove_small_components` voxel for voxel.
    """
    import dask

    shape = tuple(mask.shape)
    structure = _structure(len(shape), connectivity)
    out = _bool_output(out, shape)
    chunk = _chunk_per_axis(chunk_vox, len(shape))
    grid = tuple(-(-n // c) for n, c in zip(shape, chunk, strict=True))
    slices = {
        b: tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(b, chunk, shape, strict=True))
        for b in np.ndindex(*grid)
    }
    workers = max(1, int(num_workers))

    def summary(b):
        return _block_summary(np.asarray(mask[slices[b]]), structure)

    block_ids = list(slices)
    results = dask.compute(
        *[dask.delayed(summary)(b) for b in block_ids], scheduler="threads", num_workers=workers
    )
    luts = _merge_components(
        dict(zip(block_ids, results, strict=True)), grid, structure, min_volume_mm3, voxel_size_mm
    )
    del results

    def keep(b):
        block = np.asarray(mask[slices[b]])
        out[slices[b]] = _keep_block(block, structure=structure, luts=luts, block_id=b)

    dask.compute(
        *[dask.delayed(keep)(b) for b in block_ids], scheduler="threads", num_workers=workers
    )
    return out


def _merge_components(summaries: dict, grid, structure, min_volume_mm3, voxel_size_mm) -> dict:
    """Merge per-block component labels across block faces; keep/drop lookup table per block.

    ``summaries[block_id] = (n_labels, sizes, faces)`` from :func:`_block_summary` on a regular
    block grid ``grid``. Returns ``{block_id: bool lut}`` (index = local label, 0 = background).
    """
    ndim = len(grid)
    block_ids = list(np.ndindex(*grid))

    # global label = offset[block] + local label (local labels start at 1; 0 stays background)
    offsets, total = {}, 0
    for b in block_ids:
        offsets[b] = total
        total += summaries[b][0]
    sizes = np.zeros(total + 1, dtype=np.int64)
    for b in block_ids:
        n = summaries[b][0]
        sizes[offsets[b] + 1 : offsets[b] + 1 + n] = summaries[b][1]

    def glob(face: np.ndarray, b) -> np.ndarray:
        return np.where(face > 0, face + np.int64(offsets[b]), 0)

    # pairs across every internal chunk boundary; assemble the two global planes on either side
    pairs = []
    for axis in range(ndim):
        other = [d for d in range(ndim) if d != axis]
        # in-plane shifts s such that (1, s) (inserted at `axis`) is in the structuring element
        shifts = []
        for s in np.ndindex(*(3,) * (ndim - 1)):
            offset = [1] * ndim
            offset[axis] = 2
            for d, v in zip(other, s, strict=True):
                offset[d] = v
            if structure[tuple(offset)]:
                shifts.append(tuple(v - 1 for v in s))
        for i in range(grid[axis] - 1):
            hi_plane = _assemble_plane(summaries, offsets, grid, axis, i, "hi", glob)
            lo_plane = _assemble_plane(summaries, offsets, grid, axis, i + 1, "lo", glob)
            found = _plane_pairs(hi_plane, lo_plane, shifts)
            if found:
                # one entry per touching label pair (a face voxel gives up to 9 duplicates)
                both = np.concatenate(found)
                keys = np.unique(both[:, 0] * np.int64(total + 1) + both[:, 1])
                pairs.append(np.stack([keys // (total + 1), keys % (total + 1)], axis=1))

    if pairs:
        edges = np.concatenate(pairs)
        graph = sparse.coo_matrix(
            (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
            shape=(total + 1, total + 1),
        )
        _, root = csgraph.connected_components(graph, directed=False)
    else:
        root = np.arange(total + 1)
    merged = np.bincount(root, weights=sizes, minlength=root.max() + 1)
    keep_root = merged >= min_component_voxels(min_volume_mm3, voxel_size_mm)
    luts = {}
    for b in block_ids:
        n = summaries[b][0]
        lut = np.zeros(n + 1, dtype=bool)
        lut[1:] = keep_root[root[offsets[b] + 1 : offsets[b] + 1 + n]]
        luts[b] = lut
    return luts


def _assemble_plane(summaries, offsets, grid, axis, index, side, glob):
    """Global label plane on one side (``'lo'`` or ``'hi'``) of block row ``index`` along ``axis``."""
    other = [d for d in range(len(grid)) if d != axis]

    def build(prefix: tuple[int, ...]):
        depth = len(prefix)
        if depth == len(other):
            b = [0] * len(grid)
            b[axis] = index
            for d, v in zip(other, prefix, strict=True):
                b[d] = v
            key = tuple(b)
            lo, hi = summaries[key][2][axis]
            return glob(lo if side == "lo" else hi, key)
        parts = [build(prefix + (j,)) for j in range(grid[other[depth]])]
        return np.concatenate(parts, axis=depth)

    return build(())

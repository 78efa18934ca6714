"""build_graph/surfaces.py: the check for midsurface pieces in gray matter too thick to be cortex,
on an analytic volume (1 mm voxels): a 3 mm cortex on a white-matter slab, and a 16 mm block of
gray matter without white matter (a cerebellum that an exclusion mask missed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexgraph.build_graph.parameters import BuildGraphParameters
from cortexgraph.build_graph.stage import noncortical_piece_text
from cortexgraph.build_graph.surfaces import noncortical_pieces
from cortexgraph.reconstruct.clean import BACKGROUND, GRAY, WHITE


def surface(xs: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A triangulated sheet over x = xs, y in 2..17 mm (1 mm steps), at height zs[i] over xs[i]."""
    ys = np.arange(2.0, 18.0, 1.0)
    vertices = np.array([[x, y, z] for x, z in zip(xs, zs, strict=True) for y in ys])
    n = len(ys)
    faces = []
    for i in range(len(xs) - 1):
        for j in range(n - 1):
            a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
            faces += [[a, b, c], [b, d, c]]
    return vertices, np.array(faces)


def sheet(x0: float, x1: float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat sheet over x in [x0, x1] at height z (mm)."""
    xs = np.arange(x0, x1 + 1e-9, 1.0)
    return surface(xs, np.full(len(xs), z))


def volume() -> np.ndarray:
    tissue = np.full((60, 20, 60), BACKGROUND, dtype=np.uint8)
    tissue[:, :, 10:20] = WHITE
    tissue[:, :, 20:23] = GRAY  # cortex 3 mm thick: d_background + d_white <= 3 mm
    tissue[40:58, :, 30:50] = GRAY  # 18 x 20 x 20 mm of gray, 10 mm above the white matter
    return tissue


def both(*meshes):
    vertices, faces, offset = [], [], 0
    for v, f in meshes:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    return np.vstack(vertices), np.vstack(faces)


def test_a_sheet_through_thick_gray_matter_is_reported_and_the_cortex_is_not():
    tissue, affine = volume(), np.eye(4)
    cortex = sheet(2, 38, 21.5)
    block = sheet(44, 54, 40.0)
    excluded = np.zeros(tissue.shape, dtype=bool)
    found = noncortical_pieces(
        {"lh": both(cortex, block), "rh": cortex}, tissue, excluded, affine, 5.0
    )
    assert list(found) == ["lh"]
    (piece,) = found["lh"]
    # the block's sheet lies at z = 40, 20 mm above the white matter: d_background + d_white > 5 mm
    # at every one of its nodes, so all of them are in thick gray matter
    assert piece["vertices"] == len(block[0]) == piece["component_vertices"]
    assert piece["clusters"] == 1 and piece["mesh_vertices"] == len(cortex[0]) + len(block[0])
    assert piece["bbox_mm"] == [[44.0, 2.0, 40.0], [54.0, 17.0, 40.0]]
    text = noncortical_piece_text(piece, BuildGraphParameters())
    assert text.startswith(f"{len(block[0])} of {piece['mesh_vertices']} midsurface nodes")
    assert "at x 44.0..54.0, y 2.0..17.0, z 40.0..40.0 mm" in text and "exclusion mask" in text
    assert "--exclusion automatic" in noncortical_piece_text(
        piece, BuildGraphParameters(exclusion="none")
    )


def test_a_sheet_joined_to_the_cortex_is_reported_as_its_nodes_in_thick_gray():
    """One connected sheet: the cortex at z = 21.5 continues up a ramp into the block."""
    tissue, affine = volume(), np.eye(4)
    xs = np.arange(2.0, 55.0, 1.0)
    vertices, faces = surface(xs, np.interp(xs, [2, 38, 44, 54], [21.5, 21.5, 40.0, 40.0]))
    excluded = np.zeros(tissue.shape, dtype=bool)
    found = noncortical_pieces({"lh": (vertices, faces)}, tissue, excluded, affine, 5.0)
    (piece,) = found["lh"]
    assert piece["component_vertices"] == len(vertices)  # one piece: the cortex and the ramp
    in_block = (vertices[:, 0] >= 44) & (vertices[:, 2] >= 35)
    assert piece["vertices"] >= in_block.sum()  # at least the nodes on the block's plateau
    assert piece["bbox_mm"][0][0] >= 38.0  # none of the flat cortex


def test_nothing_is_reported_when_the_exclusion_removed_the_block():
    tissue = volume()
    excluded = tissue == GRAY
    excluded[:, :, :30] = False  # the block only
    tissue[excluded] = BACKGROUND
    mesh = both(sheet(2, 38, 21.5), sheet(44, 54, 40.0))
    assert noncortical_pieces({"lh": mesh}, tissue, excluded, np.eye(4), 5.0) == {}


def test_the_thickness_limit_decides():
    tissue, affine = volume(), np.eye(4)
    mesh = {"lh": sheet(44, 54, 40.0)}
    excluded = np.zeros(tissue.shape, dtype=bool)
    assert noncortical_pieces(mesh, tissue, excluded, affine, 5.0)
    # the block's centre is 9 mm from the background and 20 mm from the white matter
    assert noncortical_pieces(mesh, tissue, excluded, affine, 40.0) == {}


def test_stopping_the_remeshing_pool_ends_its_busy_workers():
    """Ctrl-C or SIGTERM during the two-process remeshing: the workers are ended at once, not
    after their hemisphere (minutes on a whole brain)."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from cortexgraph.build_graph.surfaces import _stop_process_pool

    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    deadline = time.monotonic() + 60
    while not all(f.running() for f in futures) and time.monotonic() < deadline:
        time.sleep(0.05)
    processes = list(pool._processes.values())
    assert len(processes) == 2 and all(p.is_alive() for p in processes)
    pids = [p.pid for p in processes]
    start = time.monotonic()
    _stop_process_pool(pool)
    # asked of the system, not of the Process objects: the pool's own thread reaps the workers,
    # and a Process that lost that race to waitpid says "alive" for ever
    while any(_process_runs(pid) for pid in pids) and time.monotonic() - start < 30:
        time.sleep(0.05)
    assert not any(_process_runs(pid) for pid in pids)
    assert time.monotonic() - start < 30


def _process_runs(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"

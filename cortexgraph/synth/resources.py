"""The real anatomy the phantom is made of, loaded from files shipped inside installed packages.

* MNI152 2009 gray- and white-matter probability maps at 1 mm, shipped by nilearn
  (``nilearn.datasets.load_mni152_gm_template`` / ``load_mni152_wm_template``).
* The conte69 32k midthickness surfaces of both hemispheres in MNI mm, their spheres, medial-wall masks,
  and the Schaefer-400 parcellation on them, shipped as data files by brainspace (no brainspace code is
  imported). fs_LR spheres are in vertex correspondence between hemispheres (the right sphere is the left
  one mirrored), so one vertex index names homologous points of both hemispheres.

Nothing is downloaded; a missing package raises a :class:`~cortexgraph.errors.CortexgraphError` that
says what to install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexgraph.errors import CortexgraphError

if TYPE_CHECKING:
    from nibabel.gifti import GiftiImage
    from nibabel.spatialimages import SpatialImage

HEMISPHERES = ("lh", "rh")
SCHAEFER_PARCELS = 400


def brainspace_data_dir() -> Path:
    """Folder of brainspace's data files (``brainspace/datasets``)."""
    spec = importlib.util.find_spec("brainspace")
    if spec is None or not spec.submodule_search_locations:
        raise CortexgraphError(
            "the phantom generator needs the data files of the 'brainspace' package",
            fix="pip install 'cortexgraph[phantom]' (brainspace==0.3.0, which pins vtk<9.7)",
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets"


@dataclass(frozen=True)
class Surface:
    """One hemisphere's conte69 midthickness surface (MNI mm) with its sphere and medial-wall mask."""

    hemi: str
    vertices_mm: np.ndarray  # (N, 3) float64
    faces: np.ndarray  # (F, 3) int64
    sphere: np.ndarray  # (N, 3) float64, radius 100
    cortex: np.ndarray  # (N,) bool, False on the medial wall
    parcels: np.ndarray  # (N,) int, Schaefer-400 parcel of this hemisphere (0 = medial wall)


@lru_cache(maxsize=1)
def load_surfaces() -> dict[str, Surface]:
    """Both conte69 hemispheres (cached)."""
    import nibabel as nib

    root = brainspace_data_dir()
    parcels = np.loadtxt(
        root / "parcellations" / f"schaefer_{SCHAEFER_PARCELS}_conte69.csv", dtype=np.int64
    )
    out = {}
    for k, hemi in enumerate(HEMISPHERES):
        mesh = cast("GiftiImage", nib.load(str(root / "surfaces" / f"conte69_32k_{hemi}.gii")))
        sphere = cast(
            "GiftiImage", nib.load(str(root / "surfaces" / f"conte69_32k_{hemi}_sphere.gii"))
        )
        mask = np.loadtxt(root / "surfaces" / f"conte69_32k_{hemi}_mask.csv") > 0
        vertices = np.asarray(mesh.darrays[0].data, dtype=np.float64)
        n = len(vertices)
        out[hemi] = Surface(
            hemi=hemi,
            vertices_mm=vertices,
            faces=np.asarray(mesh.darrays[1].data, dtype=np.int64),
            sphere=np.asarray(sphere.darrays[0].data, dtype=np.float64),
            cortex=mask,
            parcels=parcels[k * n : (k + 1) * n],
        )
    return out


@dataclass(frozen=True)
class TissueMaps:
    """MNI152 2009 gray / white matter probabilities (float32, 1 mm) and their voxel->mm affine."""

    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray


GM_FILE = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
WM_FILE = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
TEMPLATE_SPACE = "MNI152NLin2009aSym"
"""The reference space of nilearn's shipped maps (ICBM 2009a nonlinear symmetric)."""


@lru_cache(maxsize=1)
def load_tissue_maps() -> TissueMaps:
    """nilearn's MNI152 2009 GM and WM probability maps at 1 mm (cached).

    Read with nibabel from nilearn's data folder (the same files ``load_mni152_gm_template(resolution=1)``
    returns), which avoids importing nilearn.
    """
    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise CortexgraphError(
            "the phantom generator needs the MNI152 maps shipped by nilearn",
            fix="pip install 'cortexgraph[phantom]' (nilearn)",
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    gm_img = cast("SpatialImage", nib.load(str(folder / GM_FILE)))
    wm_img = cast("SpatialImage", nib.load(str(folder / WM_FILE)))
    gm = np.asarray(gm_img.get_fdata(), dtype=np.float32)
    wm = np.asarray(wm_img.get_fdata(), dtype=np.float32)
    return TissueMaps(gm=gm, wm=wm, affine=np.asarray(gm_img.affine, dtype=np.float64))

"""Canonical coordinates of every section by registering the stacked tissue volume to MNI152
(``cortexgraph register``).

Steps:

1. The tissue classes of the sections are stacked into a volume in the brain's world frame
   (:func:`cortexgraph.reconstruct.volume.stack_tissue_volume`: the section masks placed by the
   transforms of transforms.tsv, docs/conventions.md).
2. Both the volume and the template become intensity images with the same scale: background 0, gray
   matter 1, white matter 2 (the template: ``p_gray + 2 p_white`` of the MNI152 2009 gray- and
   white-matter probability maps shipped with nilearn, the maps the phantom is made from).
3. Start: the volume is scaled by each of ``scales`` (shrinkage of processed tissue) and the
   translation of each scale found by FFT cross-correlation with the template at ``search_mm``
   voxels; the best correlation wins. This finds a slab (part of a brain) as well as a whole brain.
   The brain is assumed to be roughly in RAS orientation (the world frame's convention: x right,
   y anterior, z superior); rotations are left to the affine step.
4. Affine registration, then a B-spline (free-form) registration with control points every
   ``bspline_mm``, both with SimpleITK (ITK's registration framework; correlation metric, multi-
   resolution). The volume is the fixed image, so the resulting transform maps **world mm ->
   template mm**, and its metric is evaluated on the brain's own domain only (a slab is not pulled
   to fill the whole template).
5. Every section pixel of the coordinate map grid (``coords`` spacing of brain.toml, or
   ``spacing_um``) is placed in the world (section -> base section -> world), moved into the template
   by the transform (a displacement field sampled on the volume's grid, interpolated trilinearly),
   normalised by the cohort's canonical box (:meth:`Cohort.to_canonical`), and set to NaN outside
   the tissue mask, as docs/data-format.md requires of coordinate maps.

SimpleITK is an optional dependency (``pip install cortexgraph[scans]``); without it
:func:`register_brain` raises an error that says so. (ANTs' Python package would downgrade the numpy
and scipy that cortexgraph pins, so ITK is used through SimpleITK.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from cortexgraph.errors import CortexgraphError, DataFormatError

GRAY_VALUE, WHITE_VALUE = 1.0, 2.0


@dataclass(frozen=True)
class RegisterParameters:
    """Every number that changes the registration.

    template : ``"ribbon"`` (MNI152 with a folded cortical ribbon) or ``"maps"`` (MNI152 probability
        maps), :func:`template_intensity`.
    voxel_mm : voxel of the stacked volume and of the registration grid.
    search_mm : voxel of the initial translation search.
    scales : template mm per world mm tried by the search (processed tissue is shrunken).
    affine_iterations, bspline_iterations : optimiser iterations per resolution level.
    bspline_mm : control-point spacing of the free-form deformation (0 = affine only).
    smooth_mm : Gaussian s.d. applied to both intensity images.
    spacing_um : pixel spacing of the coordinate maps (default: brain.toml's ``coords`` spacing, else
        640 µm).
    seed : random sampling of the metric.
    """

    template: str = "ribbon"
    voxel_mm: float = 1.2
    search_mm: float = 3.0
    scales: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4)
    affine_iterations: int = 200
    bspline_iterations: int = 60
    bspline_mm: float = 20.0
    smooth_mm: float = 1.0
    spacing_um: float | None = None
    seed: int = 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["scales"] = list(self.scales)
        return out


def require_simpleitk():
    """The SimpleITK module, or a CortexgraphError naming the extra that installs it."""
    try:
        import SimpleITK as sitk
    except ImportError:
        raise CortexgraphError(
            "cortexgraph register needs SimpleITK (ITK's registration framework)",
            fix="pip install 'cortexgraph[scans]' (or pip install SimpleITK)",
        ) from None
    return sitk


TEMPLATES = ("ribbon", "maps")


def template_intensity(kind: str = "ribbon") -> tuple[np.ndarray, np.ndarray]:
    """The template as an intensity volume (float32, x y z) and its voxel -> mm affine (MNI mm).

    ``"maps"``: ``p_gray + 2 p_white`` of the MNI152 2009 probability maps (nilearn). Their gray
    matter is an average: sulci are filled, the hull is smooth and larger than a folded cortex.
    ``"ribbon"``: MNI152 tissue classes with the folded cortex of the conte69 midthickness surface
    (the cortical ribbon of local thickness around it; MNI152 maps elsewhere), the anatomy
    :mod:`cortexgraph.synth.template` builds on a 1 mm grid, mapped through
    :func:`class_intensity`.
    """
    if kind == "maps":
        from cortexgraph.synth.resources import load_tissue_maps

        maps = load_tissue_maps()
        return (GRAY_VALUE * maps.gm + WHITE_VALUE * maps.wm).astype(np.float32), maps.affine
    if kind != "ribbon":
        from cortexgraph.errors import ParameterError

        raise ParameterError(f"unknown template {kind!r}", fix=f"use one of {', '.join(TEMPLATES)}")
    from cortexgraph.synth.template import build_template, sample_template

    template = build_template(1.0)
    shape = template.shape
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    points = grid.reshape(-1, 3) @ template.affine[:3, :3].T + template.affine[:3, 3]
    classes = sample_template(template, points).tissue.reshape(shape)
    return class_intensity(classes), np.asarray(template.affine, dtype=np.float64)


def class_intensity(volume: np.ndarray) -> np.ndarray:
    """Tissue classes (0 background, 1 white, 2 gray) -> 0, WHITE_VALUE, GRAY_VALUE (float32)."""
    lut = np.array([0.0, WHITE_VALUE, GRAY_VALUE], dtype=np.float32)
    return lut[np.clip(volume, 0, 2)]


def _to_sitk(sitk, array_xyz: np.ndarray, affine: np.ndarray):
    """A numpy (x, y, z) volume with a diagonal voxel -> mm affine as a SimpleITK image."""
    diag = np.diag(affine)[:3]
    if not np.allclose(affine[:3, :3], np.diag(diag)) or np.any(diag <= 0):
        raise DataFormatError(
            "registration needs volumes with axis-aligned, positive voxel axes",
            fix="resample the volume to RAS orientation",
        )
    image = sitk.GetImageFromArray(
        np.ascontiguousarray(array_xyz.transpose(2, 1, 0), dtype=np.float32)
    )
    image.SetSpacing([float(v) for v in diag])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    return image


def _resample_to(
    array: np.ndarray, affine: np.ndarray, spacing_mm: float, lo_mm, shape
) -> np.ndarray:
    """Trilinear resampling of an (x, y, z) volume onto an axis-aligned grid."""
    inverse = np.linalg.inv(affine)
    axes = [lo_mm[k] + spacing_mm * np.arange(shape[k]) for k in range(3)]
    grid = np.meshgrid(*axes, indexing="ij")
    points = np.stack([g.ravel() for g in grid])
    vox = inverse[:3, :3] @ points + inverse[:3, 3:4]
    return ndimage.map_coordinates(array, vox, order=1, mode="constant", cval=0.0).reshape(shape)


def initial_similarity(
    volume: np.ndarray,
    affine: np.ndarray,
    template: np.ndarray,
    template_affine: np.ndarray,
    params: RegisterParameters,
) -> tuple[float, np.ndarray, float]:
    """Scale and translation of ``template_mm = s world_mm + t`` by FFT cross-correlation.

    Returns (s, t (3,), normalised correlation of the best).
    """
    h = params.search_mm
    # template on a grid of h
    t_lo = template_affine[:3, 3]
    t_hi = t_lo + np.array(template.shape) * np.diag(template_affine)[:3]
    t_shape = tuple(int(np.ceil((t_hi[k] - t_lo[k]) / h)) for k in range(3))
    small_t = _resample_to(
        ndimage.gaussian_filter(template, h / 2), template_affine, h, t_lo, t_shape
    )
    lo = affine[:3, 3]
    hi = lo + np.array(volume.shape) * np.diag(affine)[:3]
    best = (-np.inf, 1.0, np.zeros(3))
    for scale in params.scales:
        # the volume in template-sized mm: voxel k at s * (lo + k h / s)
        step = h / scale
        shape = tuple(max(1, int(np.ceil((hi[k] - lo[k]) / step))) for k in range(3))
        small_v = _resample_to(
            ndimage.gaussian_filter(volume, max(0.5, step / (2 * affine[0, 0]))),
            affine,
            step,
            lo,
            shape,
        )
        pad = tuple(t_shape[k] + shape[k] for k in range(3))
        v0 = small_v - small_v.mean() * (small_v > 0)
        corr = np.fft.irfftn(
            np.fft.rfftn(small_t, s=pad, axes=(0, 1, 2))
            * np.conj(np.fft.rfftn(v0, s=pad, axes=(0, 1, 2))),
            s=pad,
            axes=(0, 1, 2),
        )
        k = int(np.argmax(corr))
        # local normalisation by the template energy under the volume's footprint
        footprint = (small_v > 0).astype(np.float32)
        energy = np.fft.irfftn(
            np.fft.rfftn(small_t**2, s=pad, axes=(0, 1, 2))
            * np.conj(np.fft.rfftn(footprint, s=pad, axes=(0, 1, 2))),
            s=pad,
            axes=(0, 1, 2),
        )
        score_map = corr / np.sqrt(np.maximum(energy, 1e-6) * float((v0**2).sum()))
        score_map[energy < 1e-3 * energy.max()] = -np.inf
        k = int(np.argmax(score_map))
        score = float(score_map.flat[k])
        if score > best[0]:
            shift = np.array(np.unravel_index(k, pad))
            shift = np.where(shift > np.array(pad) // 2, shift - np.array(pad), shift)
            # small_v voxel j lies at template-grid voxel j + shift: s*(lo + j step) + t = t_lo + (j + shift) h
            translation = t_lo + shift * h - scale * lo
            best = (score, float(scale), translation)
    score, scale, translation = best
    return scale, translation, score


@dataclass
class Registration:
    """The registration of one brain: world mm -> template mm.

    transform : the SimpleITK composite transform (affine, then B-spline).
    grid_lo_mm, grid_spacing_mm, field : the displacement ``template - world`` sampled on a grid
        covering the volume (x y z, 3), for fast mapping of many points.
    info : scores, iterations, seconds.
    """

    transform: object
    grid_lo_mm: np.ndarray
    grid_spacing_mm: float
    field: np.ndarray
    info: dict

    def world_to_template(self, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, 3) template mm (trilinear in the displacement field)."""
        points = np.asarray(points_mm, dtype=np.float64)
        vox = ((points - self.grid_lo_mm) / self.grid_spacing_mm).T
        disp = np.stack(
            [
                ndimage.map_coordinates(self.field[..., k], vox, order=1, mode="nearest")
                for k in range(3)
            ],
            axis=1,
        )
        return points + disp


def register_volume(
    volume: np.ndarray,
    affine: np.ndarray,
    params: RegisterParameters,
    progress: Callable[[str, int, int], None] | None = None,
) -> Registration:
    """Register a tissue-class volume (x y z, world mm) to the MNI152 template (module docstring)."""
    sitk = require_simpleitk()
    report = progress or (lambda stage, done, total: None)
    start = time.perf_counter()
    template, template_affine = template_intensity(params.template)
    moving_np = ndimage.gaussian_filter(template, params.smooth_mm / template_affine[0, 0])
    fixed_np = ndimage.gaussian_filter(class_intensity(volume), params.smooth_mm / affine[0, 0])
    report("register: search", 0, 1)
    scale, translation, search_score = initial_similarity(
        fixed_np, affine, moving_np, template_affine, params
    )
    report("register: search", 1, 1)
    fixed = _to_sitk(sitk, fixed_np, affine)
    moving = _to_sitk(sitk, moving_np, template_affine)
    initial = sitk.AffineTransform(3)
    initial.SetMatrix([scale, 0, 0, 0, scale, 0, 0, 0, scale])
    initial.SetTranslation([float(v) for v in translation])
    centre = affine[:3, 3] + 0.5 * np.array(volume.shape) * np.diag(affine)[:3]
    # re-express about the volume centre (better conditioned optimisation)
    centred = sitk.AffineTransform(3)
    centred.SetCenter([float(v) for v in centre])
    centred.SetMatrix(initial.GetMatrix())
    centred.SetTranslation([float(v) for v in (scale * centre + translation - centre)])

    def method(iterations: int, shrink: Sequence[int], smooth: Sequence[float]):
        reg = sitk.ImageRegistrationMethod()
        # one thread: ITK's multi-threaded metric sums in a varying order (same inputs, same result)
        reg.SetNumberOfThreads(1)
        reg.SetMetricAsCorrelation()
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # SimpleITK reads seed 0 as "the wall clock": offset by one so a seed repeats
        reg.SetMetricSamplingPercentage(0.3, params.seed + 1)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetShrinkFactorsPerLevel(list(shrink))
        reg.SetSmoothingSigmasPerLevel(list(smooth))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        return reg

    report("register: affine", 0, 1)
    reg = method(params.affine_iterations, (4, 2, 1), (2.0, 1.0, 0.0))
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=params.affine_iterations,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(centred, inPlace=False)
    affine_tx = reg.Execute(fixed, moving)
    affine_metric = reg.GetMetricValue()
    affine_iterations = reg.GetOptimizerIteration()
    report("register: affine", 1, 1)
    composite = sitk.CompositeTransform(affine_tx)
    composite.FlattenTransform()
    bspline_metric = float("nan")
    if params.bspline_mm > 0:
        report("register: b-spline", 0, 1)
        physical = np.array(volume.shape) * np.diag(affine)[:3]
        mesh = [max(1, int(round(p / params.bspline_mm))) for p in physical]
        bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
        reg = method(params.bspline_iterations, (2, 1), (1.0, 0.0))
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=params.bspline_iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=1000,
            costFunctionConvergenceFactor=1e7,
        )
        reg.SetMovingInitialTransform(affine_tx)
        reg.SetInitialTransform(bspline, inPlace=True)
        reg.Execute(fixed, moving)
        bspline_metric = reg.GetMetricValue()
        composite = sitk.CompositeTransform([affine_tx, bspline])
        composite.FlattenTransform()
        report("register: b-spline", 1, 1)
    # displacement field on the volume grid (with a margin) for fast point mapping
    h = float(params.voxel_mm)
    margin = 10.0
    lo = affine[:3, 3] - margin
    size = [
        int(np.ceil((np.array(volume.shape)[k] * affine[k, k] + 2 * margin) / h)) + 1
        for k in range(3)
    ]
    field_image = sitk.TransformToDisplacementField(
        composite,
        sitk.sitkVectorFloat64,
        size,
        [float(v) for v in lo],
        [h, h, h],
        [1, 0, 0, 0, 1, 0, 0, 0, 1],
    )
    field = sitk.GetArrayFromImage(field_image).transpose(2, 1, 0, 3)
    info = {
        "search_scale": scale,
        "search_correlation": search_score,
        "affine_metric": float(affine_metric),
        "affine_iterations": int(affine_iterations),
        "bspline_metric": float(bspline_metric),
        "affine_matrix": [float(v) for v in affine_tx.GetParameters()],
        "seconds": time.perf_counter() - start,
    }
    return Registration(composite, lo, h, field.astype(np.float64), info)


def section_coordinates(
    stack, section: int, registration: Registration, cohort, spacing_um: float
) -> np.ndarray:
    """Canonical coordinate map (rows, cols, 3) float32 of one section, NaN outside its tissue mask.

    The grid covers the section's canvas at ``spacing_um`` (pixel centres at ``(j + 0.5) s``).
    """
    width_mm, height_mm = stack.section_extent_mm(section)
    rows = max(1, int(round(height_mm * 1000 / spacing_um)))
    cols = max(1, int(round(width_mm * 1000 / spacing_um)))
    mask = stack.raster(section, "mask").read_at_spacing(spacing_um)
    mask = mask[:rows, :cols]
    s = spacing_um / 1000.0
    yy, xx = np.mgrid[0:rows, 0:cols]
    points = np.column_stack([(xx.ravel() + 0.5) * s, (yy.ravel() + 0.5) * s])
    world = stack.section_to_world(section, points)
    template_mm = registration.world_to_template(world)
    coords = cohort.to_canonical(template_mm).reshape(rows, cols, 3).astype(np.float32)
    coords = np.clip(coords, -1.0, 1.0)
    tissue = np.zeros((rows, cols), dtype=bool)
    tissue[: mask.shape[0], : mask.shape[1]] = mask[:rows, :cols] > 0
    coords[~tissue] = np.nan
    return coords


def coordinate_errors_mm(estimated: np.ndarray, truth: np.ndarray, cohort) -> np.ndarray:
    """Distances in template mm between two canonical coordinate maps, over pixels finite in both."""
    both = np.all(np.isfinite(estimated), axis=-1) & np.all(np.isfinite(truth), axis=-1)
    a = cohort.from_canonical(estimated[both].astype(np.float64))
    b = cohort.from_canonical(truth[both].astype(np.float64))
    return np.linalg.norm(a - b, axis=1)


def summarize_errors(errors_mm: np.ndarray) -> dict:
    """Median, mean, 95th percentile and maximum of distances (mm)."""
    if not len(errors_mm):
        return {"pixels": 0}
    return {
        "pixels": int(len(errors_mm)),
        "median_mm": float(np.median(errors_mm)),
        "mean_mm": float(np.mean(errors_mm)),
        "p95_mm": float(np.percentile(errors_mm, 95)),
        "max_mm": float(np.max(errors_mm)),
    }


# -- the stage ----------------------------------------------------------------------------------------
#: folder of a brain that ``install_registration`` copies the coordinate maps into
INSTALLED_COORDS_FOLDER = "coords-registered"


def register_outputs(brain, sections: Sequence[int]) -> dict[str, Path]:
    """Files of the register stage under ``<derivatives>/<brain>/register/``."""
    folder = brain.derivatives / "register"
    out = {f"coords:{s}": folder / "coords" / f"s{s:04d}.h5" for s in sections}
    out["transform"] = folder / "world_to_template.h5"
    out["report"] = folder / "register.json"
    return out


def truth_coordinate_files(brain, sections: Sequence[int]) -> dict[int, Path]:
    """The true coordinate maps of a phantom brain that has none in its own folder, or ``{}``.

    Looks in ``<cohort>/ground_truth/<brain>/coords/`` and, for a phantom made with
    ``synth --scans-only`` (the brain's true inputs kept with the truth), in
    ``<cohort>/ground_truth/<brain>/inputs/coords/``; a folder counts only when it holds
    ``sNNNN.h5`` for every one of ``sections``.
    """
    if brain.cohort is None:
        return {}
    truth = brain.ground_truth
    for folder in (truth / "coords", truth / "inputs" / "coords"):
        found = {s: folder / f"s{s:04d}.h5" for s in sections}
        if all(p.is_file() for p in found.values()):
            return found
    return {}


def run_register(
    brain,
    params: RegisterParameters | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    wait_s: float = 0.0,
) -> dict:
    """``cortexgraph register``: canonical coordinate maps of a brain under the stage contract.

    Reads the tissue masks and transforms.tsv (the volume), writes under
    ``<cohort>/derivatives/cortexgraph/<brain>/register/``: ``coords/sNNNN.h5`` (one coordinate map
    per available section, the raster format of docs/data-format.md, NaN outside tissue),
    ``world_to_template.h5`` (the ITK transform, world mm -> template mm) and ``register.json``
    (parameters, registration scores, seconds; on a brain whose sections.tsv lists coordinate maps,
    e.g. a phantom, or whose phantom keeps them in ``ground_truth/<brain>/coords/sNNNN.h5`` or, made
    with ``synth --scans-only``, ``ground_truth/<brain>/inputs/coords/sNNNN.h5``, the
    error in mm against those maps per section and overall; maps installed by
    :func:`install_registration` are this stage's own output and never the reference). The brain's
    own coordinate maps are not touched.
    """
    from cortexgraph.data.raster import Raster, write_raster
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.derivatives.inputs import brain_inputs
    from cortexgraph.derivatives.stage import Derivatives, StageRun, run_stage
    from cortexgraph.derivatives.stages import StageId
    from cortexgraph.outputs import atomic_path
    from cortexgraph.reconstruct.volume import stack_tissue_volume

    sitk = require_simpleitk()
    params = params or RegisterParameters()
    report_progress = progress or (lambda stage, done, total: None)
    stack = SectionStack(brain)
    sections = list(stack.sections)
    # maps this stage installed earlier (``install_registration``) are its own output, not a
    # reference to measure against
    own_coords = all(
        brain.section(s).coords
        and Path(brain.section(s).coords).parts[0] != INSTALLED_COORDS_FOLDER
        for s in sections
    )
    kinds = ("mask", "coords") if own_coords else ("mask",)
    manifest_values, files = brain_inputs(brain, kinds)
    truth_files = {} if own_coords else truth_coordinate_files(brain, sections)
    files.extend(truth_files.values())
    has_truth = own_coords or bool(truth_files)
    spacing_um = params.spacing_um or brain.coords_spacing_um or 640.0
    outputs = register_outputs(brain, sections)
    cohort = brain.cohort

    def compute(run: StageRun) -> dict:
        start = time.perf_counter()
        volume, affine, volume_info = stack_tissue_volume(
            stack, params.voxel_mm, crop_to_tissue=True, margin_voxels=4
        )
        registration = register_volume(volume, affine, params, report_progress)
        with atomic_path(outputs["transform"], suffix=".h5") as tmp:
            sitk.WriteTransform(registration.transform, str(tmp))
        per_section = {}
        errors = []
        report_progress("register: coordinate maps", 0, len(sections))
        for k, s in enumerate(sections):
            coords = section_coordinates(stack, s, registration, cohort, spacing_um)
            write_raster(
                outputs[f"coords:{s}"], coords, spacing_um, kind="intensity", attrs={"section": s}
            )
            if has_truth:
                if own_coords:
                    truth = stack.coords(s, spacing_um)
                else:
                    with Raster(truth_files[s]) as raster:
                        truth = raster.read_at_spacing(spacing_um)
                rows = min(truth.shape[0], coords.shape[0])
                cols = min(truth.shape[1], coords.shape[1])
                err = coordinate_errors_mm(coords[:rows, :cols], truth[:rows, :cols], cohort)
                errors.append(err)
                per_section[str(s)] = summarize_errors(err)
            report_progress("register: coordinate maps", k + 1, len(sections))
        report = {
            "brain": brain.id,
            "parameters": params.as_dict(),
            "coords_spacing_um": spacing_um,
            "volume": {k: v for k, v in volume_info.items() if k != "seconds"},
            "registration": registration.info,
            "seconds": time.perf_counter() - start,
        }
        if has_truth:
            report["error_against_coords"] = summarize_errors(np.concatenate(errors))
            report["error_per_section"] = per_section
        return run.commit_report(outputs, report)

    return run_stage(
        Derivatives.of(brain),
        StageId("register", brain.id),
        compute,
        parameters={
            "register": params.as_dict(),
            "coords_spacing_um": spacing_um,
            "canonical_box": [list(cohort.canonical_box_min_mm), list(cohort.canonical_box_max_mm)],
            **manifest_values,
        },
        inputs=files,
        overwrite=overwrite,
        wait_s=wait_s,
    )


def install_registration(brain, wait_s: float = 0.0) -> list[Path]:
    """Copy the register stage's coordinate maps into the brain's own files, so that ``features``
    (CO, PM) and the web app read them like coordinate maps a lab supplies.

    The maps go to ``<brain>/coords-registered/sNNNN.h5`` (a folder of their own: coordinate maps
    the brain already has are never overwritten); sections.tsv's ``coords`` column points to them
    and brain.toml's ``[spacing_um] coords`` becomes the maps' spacing. The brain's sections.tsv
    and brain.toml are first copied to ``sections.before-register.tsv`` /
    ``brain.before-register.toml`` beside them (when no such copy exists). Every file is written
    atomically. Raises ParameterError when the stage has not run (or its maps are incomplete).
    Holds the register stage's lock and the brain's install lock
    (:func:`cortexgraph.derivatives.installing`; StageBusyError when another process holds one after
    ``wait_s`` seconds). Returns the paths written.
    """
    from cortexgraph.derivatives import installing

    with installing(brain, "register", wait_s):
        return _install_registration(brain)


def _install_registration(brain) -> list[Path]:
    """:func:`install_registration` with its locks held."""
    import json
    import shutil
    from dataclasses import replace

    from cortexgraph.errors import ParameterError
    from cortexgraph.outputs import atomic_path

    available = [r.section for r in brain.sections if not r.missing]
    outputs = register_outputs(brain, available)
    if not outputs["report"].is_file():
        raise ParameterError(
            "no registration to install",
            file=str(outputs["report"]),
            fix=f"run `cortexgraph register {brain.id}` first",
        )
    missing = [s for s in available if not outputs[f"coords:{s}"].is_file()]
    if missing:
        raise ParameterError(
            f"the registration has no coordinate map of {len(missing)} available section(s), "
            f"first {missing[0]}",
            file=str(outputs[f"coords:{missing[0]}"]),
            section=missing[0],
            fix=f"run `cortexgraph register {brain.id}` again (the sections changed since)",
        )
    report = json.loads(outputs["report"].read_text(encoding="utf-8"))
    written: list[Path] = []
    for table in (brain.section_table_path, brain.manifest_path):
        backup = table.with_name(f"{table.stem}.before-register{table.suffix}")
        if table.is_file() and not backup.exists():
            shutil.copy2(table, backup)
            written.append(backup)
    names = {s: f"{INSTALLED_COORDS_FOLDER}/s{s:04d}.h5" for s in available}
    for s, name in names.items():
        with atomic_path(brain.root / name) as tmp:
            shutil.copyfile(outputs[f"coords:{s}"], tmp)
        written.append(brain.root / name)
    brain.coords_spacing_um = float(report["coords_spacing_um"])
    written.append(brain.write_manifest())
    records = [r if r.missing else replace(r, coords=names[r.section]) for r in brain.sections]
    written.append(brain.write_sections(records))
    return written

"""The ``map3d`` stage: one area's 3D map from one label source; the demo's areal volumes.

Stage executions and their files (``<brain>`` = ``<cohort>/derivatives/cortexgraph/<brain>``,
``<area>`` = the area name's file-name form, :func:`cortexgraph.data.names.slug`)::

    map3d@<source>@<area>    <brain>/maps3d/<source>/<area>.nii.gz, .gii, .ply, _preview.gii, .ply

The morphometry of the maps (stages ``stats@<source>@<area>`` and ``stats-table@<source>``) is
:mod:`cortexgraph.maps3d.stats_stage`.

``<source>`` names the model run (``gnn-<run>``, ``lsm-<name>``) or ``truth`` / ``annotation``
(:func:`cortexgraph.maps3d.brainmap.label_source`), so maps of different models never share a file,
and every picture names its source.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from cortexgraph.data.manifest import Brain, brain_in_cohort
from cortexgraph.data.names import check_name, slug
from cortexgraph.derivatives import Derivatives, StageId, StageRun
from cortexgraph.derivatives.inputs import brain_inputs
from cortexgraph.derivatives.layout import maps3d_dir
from cortexgraph.errors import ParameterError

__all__ = [
    "MapOptions",
    "map3d_area",
    "demo_volumes",
    "format_volume_table",
    "VOLUME_COLUMNS",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class MapOptions:
    """Parameters of an area map: the keywords of the same names of
    :func:`cortexgraph.maps3d.brainmap.map_area`.

    voxel_size_mm : voxel edge; ``None`` = the labels' pixel spacing (at least 0.02 mm).
    exclude_sections : sections treated as gaps (besides those flagged in sections.tsv).
    median_size : median window in voxels (odd); ``None`` = 2 round(0.1 mm / voxel) + 1.
    min_component_mm3 : connected components smaller than this are removed.
    interpolation : gap filling, ``laplace`` (3D Laplace equation over each gap) or ``linear``
        (linear blend of the signed distance along the stack).
    preview_factor : preview downsampling; ``None`` = max(2, round(0.1 mm / voxel)).
    memory_budget_gb : above this working memory the map is built out of core (dask).
    chunk_vox : block edge in voxels when out of core.
    num_workers : threads of the out-of-core filters.
    """

    voxel_size_mm: float | None = None
    exclude_sections: tuple[int, ...] = ()
    median_size: int | None = None
    min_component_mm3: float = 27.0
    interpolation: str = "laplace"
    preview_factor: int | None = None
    memory_budget_gb: float = 4.0
    chunk_vox: int = 128
    num_workers: int = 2

    def __post_init__(self) -> None:
        if self.voxel_size_mm is not None and not 0.001 <= self.voxel_size_mm <= 10:
            raise ParameterError(
                f"voxel size {self.voxel_size_mm} mm is out of range", fix="give 0.001..10 mm"
            )
        if self.median_size is not None and (self.median_size < 1 or self.median_size % 2 == 0):
            raise ParameterError(
                f"median size {self.median_size} must be odd and >= 1", fix="give 1, 3, 5, ..."
            )
        if not self.min_component_mm3 >= 0:
            raise ParameterError("min component volume must be >= 0", fix="give a value >= 0")
        from cortexgraph.maps3d.interpolate import interpolation_method

        try:  # 'harmonic' (the former name of the Laplacian field) becomes 'laplace'
            object.__setattr__(self, "interpolation", interpolation_method(self.interpolation))
        except ValueError:
            raise ParameterError(
                f"unknown interpolation {self.interpolation!r}", fix="use laplace or linear"
            ) from None
        if self.preview_factor is not None and self.preview_factor < 1:
            raise ParameterError("preview factor must be >= 1", fix="give 1 or more")
        if not self.memory_budget_gb > 0 or self.chunk_vox < 16 or self.num_workers < 1:
            raise ParameterError(
                "memory budget must be > 0 GB, chunks >= 16 voxels, workers >= 1",
                fix="check --memory-gb, --chunk-vox and --workers",
            )

    def key_parameters(self) -> dict:
        """The parameters that change the map (out-of-core control does not)."""
        values = asdict(self)
        for name in ("memory_budget_gb", "chunk_vox", "num_workers"):
            values.pop(name)
        values["exclude_sections"] = sorted(int(s) for s in self.exclude_sections)
        return values


def _source(source: str) -> str:
    return check_name(source, "label source")


def _areas(brain: Brain):
    """The brain's cohort area table (areas.tsv); refuses a brain outside a cohort."""
    return brain_in_cohort(brain)[1].areas


def _area(brain: Brain, area: str | int):
    return _areas(brain).resolve(area)


def map3d_area(
    brain: Brain,
    area: str | int,
    source: str,
    options: MapOptions | None = None,
    *,
    overwrite: bool = False,
    wait_s: float = 0.0,
    progress=None,
) -> dict:
    """Stage ``map3d@<source>@<area>``: build and write one area's 3D map (module docstring).

    Returns
    -------
    What the map measured (voxel counts, sections used, seconds) with ``files`` (paths written),
    ``reused`` and ``why``. Raises :class:`~cortexgraph.maps3d.brainmap.AreaNotLabelledError` when the
    source shows the area on no section.
    """
    from cortexgraph.data.stack import SectionStack
    from cortexgraph.maps3d.brainmap import label_source, map_area, remove_workdir, write_area_map

    options = options or MapOptions()
    source = _source(source)
    rec = _area(brain, area)
    stem = slug(rec.name)
    store = Derivatives.of(brain)
    out_dir = maps3d_dir(store.root, brain.id, source)
    with SectionStack(brain) as stack:
        labels = label_source(brain, stack, source, options.exclude_sections, area=rec.id)
    values, geometry_files = brain_inputs(brain, ("mask",))
    with StageRun(
        store,
        StageId("map3d", brain.id, (source, stem)),
        parameters={
            **values,
            "area_id": rec.id,
            "area": rec.name,
            "source": source,
            **options.key_parameters(),
        },
        inputs=[*geometry_files, *labels.inputs],
        upstream=labels.upstream,
        overwrite=overwrite,
        wait_s=wait_s,
    ) as run:
        if run.reuse:
            return run.summary(files=run.reused_outputs())
        workdir = out_dir / f".work-{stem}"
        amap = map_area(
            brain,
            rec.id,
            source,
            **asdict(options),  # the fields are map_area's keywords of the same names
            workdir=workdir,
            progress=progress or (lambda step: log.debug("%s %s: %s", brain.id, rec.name, step)),
        )
        files = write_area_map(out_dir, stem, amap)
        measured = {k: v for k, v in amap.info.items() if k not in ("workdir", "mask_file")}
        remove_workdir(amap)
        run.commit(files, measured)
    return run.summary(measured, files=files)


# -- the demo's areal volumes -----------------------------------------------------------------------
VOLUME_COLUMNS = (
    "brain",
    "role",
    "area",
    "hemisphere",
    "volume_mm3_gnn",
    "volume_mm3_truth_labels",
    "volume_mm3_true",
    "volume_gnn_vs_truth_labels_pct",
    "pial_mm2_gnn",
    "pial_mm2_truth_labels",
    "pial_mm2_true",
    "pial_gnn_vs_truth_labels_pct",
)


def _true_measures(brain: Brain) -> dict[tuple[str, str], dict]:
    """The phantom's exact area measures (``ground_truth/<brain>/area_measures.tsv``), keyed by
    (area name, hemisphere) with ``both`` summed; empty for a real cohort."""
    from cortexgraph.data.manifest import read_tsv

    if brain.cohort is None:
        return {}
    path = brain.ground_truth / "area_measures.tsv"
    if not path.is_file():
        return {}
    out: dict[tuple[str, str], dict] = {}
    for row in read_tsv(path, ("name", "hemisphere", "volume_mm3", "pial_area_mm2")):
        values = {"volume": float(row["volume_mm3"]), "pial": float(row["pial_area_mm2"])}
        out[(row["name"], row["hemisphere"])] = values
        both = out.setdefault((row["name"], "both"), {"volume": 0.0, "pial": 0.0})
        both["volume"] += values["volume"]
        both["pial"] += values["pial"]
    return out


def demo_volumes(
    cohort,
    run_name: str,
    areas,
    brains=None,
    *,
    out: Path | None = None,
    options: MapOptions | None = None,
) -> tuple[Path | None, list[dict]]:
    """Areal volumes and pial areas from a GNN run's projected labels next to those from the true
    labels, for the demo (``cortexgraph demo``) and as a recipe for a real cohort.

    For every brain and area, :func:`stats_area` runs on the label sources ``gnn-<run_name>`` (what
    ``cortexgraph project BRAIN --run RUN`` wrote) and ``truth`` (a phantom's full true labels): each
    builds its map first (``map3d``) and writes its own files under ``<brain>/maps3d/<source>/``,
    with records; then :func:`stats_table` per source. The rows of both, and the phantom's exact
    measures (``ground_truth/<brain>/area_measures.tsv``) where they exist, go into one table.

    Parameters
    ----------
    cohort : the cohort (:class:`~cortexgraph.data.manifest.Cohort`).
    run_name : the model run whose projected labels are measured.
    areas : area names or ids.
    brains : brain ids (default: the run's transfer brain, else the cohort's first brain).
    out : the comparison table (TSV, :data:`VOLUME_COLUMNS`); None writes none.
    options : map parameters (default :class:`MapOptions`).

    Returns
    -------
    (``out`` or None, rows): one row per brain, area and hemisphere (``lh``, ``rh``, ``both``).
    Volumes are as measured (no shrinkage correction), pial areas the method's (triangles of depth
    below 0.25); ``role`` says how the run saw the brain (``transfer``: never in training).
    """
    from cortexgraph.data.manifest import format_tsv
    from cortexgraph.gnn.stage import resolve_run, run_config
    from cortexgraph.maps3d.stats_stage import stats_area, stats_table
    from cortexgraph.outputs import write_text_atomic

    config = run_config(resolve_run(run_name, cohort.root))
    if brains is None:
        transfer = config.get("transfer")
        brains = [transfer] if transfer in cohort.brain_ids else cohort.brain_ids[:1]
    sources = {"gnn": f"gnn-{run_name}", "truth_labels": "truth"}
    rows: list[dict] = []
    for brain_id in brains:
        brain = cohort.brain(brain_id)
        role = (
            "transfer"
            if brain_id == config.get("transfer")
            else "training" if brain_id in config.get("train_brains", ()) else "not used"
        )
        true = _true_measures(brain)
        measured: dict[str, dict[tuple[str, str], dict]] = {}
        for key, source in sources.items():
            measured[key] = {}
            for area in areas:
                result = stats_area(brain, area, source, options)
                for row in result["rows"]:
                    measured[key][(row["area"], row["hemisphere"])] = row
            stats_table(brain, source)
        order = {"lh": 0, "rh": 1, "both": 2}
        for area_key, hemi in sorted(measured["gnn"], key=lambda k: (str(k[0]), order[k[1]])):
            gnn = measured["gnn"][(area_key, hemi)]
            ref = measured["truth_labels"].get((area_key, hemi), {})
            exact = true.get((area_key, hemi), {})

            def pct(a, b):
                return 100.0 * (a - b) / b if a is not None and b else float("nan")

            rows.append(
                {
                    "brain": brain_id,
                    "role": role,
                    "area": area_key,
                    "hemisphere": hemi,
                    "volume_mm3_gnn": gnn.get("volume_mm3"),
                    "volume_mm3_truth_labels": ref.get("volume_mm3"),
                    "volume_mm3_true": exact.get("volume"),
                    "volume_gnn_vs_truth_labels_pct": pct(
                        gnn.get("volume_mm3"), ref.get("volume_mm3")
                    ),
                    "pial_mm2_gnn": gnn.get("surface_mm2"),
                    "pial_mm2_truth_labels": ref.get("surface_mm2"),
                    "pial_mm2_true": exact.get("pial"),
                    "pial_gnn_vs_truth_labels_pct": pct(
                        gnn.get("surface_mm2"), ref.get("surface_mm2")
                    ),
                }
            )
    if out is not None:

        def cell(value):
            if value is None:
                return ""
            return f"{value:.1f}" if isinstance(value, float) else str(value)

        write_text_atomic(
            Path(out),
            format_tsv(VOLUME_COLUMNS, [[cell(r[c]) for c in VOLUME_COLUMNS] for r in rows]),
        )
    return (Path(out) if out is not None else None), rows


def format_volume_table(rows: list[dict]) -> str:
    """The rows of :func:`demo_volumes` as an aligned text table (for logs and the terminal)."""
    header = ("brain", "role", "area", "hemi", "vol GNN", "vol truth", "vol true", "diff %",
              "pial GNN", "pial truth", "pial true", "diff %")  # fmt: skip
    keys = ("brain", "role", "area", "hemisphere", "volume_mm3_gnn", "volume_mm3_truth_labels",
            "volume_mm3_true", "volume_gnn_vs_truth_labels_pct", "pial_mm2_gnn",
            "pial_mm2_truth_labels", "pial_mm2_true", "pial_gnn_vs_truth_labels_pct")  # fmt: skip

    def cell(value):
        if value is None:
            return "-"
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    table = [header] + [tuple(cell(r[k]) for k in keys) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in table)

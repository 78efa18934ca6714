"""``cortexgraph map3d <brain>`` and ``cortexgraph stats <brain>``: 3D area maps and morphometry.

A thin layer over :mod:`cortexgraph.maps3d.stage` (map3d) and
:mod:`cortexgraph.maps3d.stats_stage` (stats).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    ParametersFile,
    StageFlags,
    command,
    console,
    parameters_group,
    reuse_state,
    split_list,
)
from cortexgraph.errors import CortexgraphError, ParameterError

if TYPE_CHECKING:
    from cortexgraph.maps3d.stage import MapOptions

LabelsOption = typer.Option(
    ...,
    "--labels",
    help="Label source: truth (phantom ground truth), annotation, gnn-<run> (cortexgraph project "
    "--run <run>) or lsm-<name> / gsm-<name> (cortexgraph lsm predict).",
)
AreaOption = typer.Option(
    None, "--area", help="Area name or id (several: repeat the option or separate by commas)."
)
VoxelOption = typer.Option(
    None, "--voxel-mm", help="Voxel edge in mm (default: the labels' pixel spacing, >= 0.02)."
)
ExcludeOption = typer.Option(
    "",
    "--exclude-sections",
    help="Sections to treat as gaps, e.g. 120,180-240 (besides those flagged in sections.tsv).",
)
MedianOption = typer.Option(
    None,
    "--median-size",
    help="Median window in voxels (odd; default 2 round(0.1 mm / voxel) + 1: 11 at 20 um).",
)
MinComponentOption = typer.Option(
    27.0, "--min-component-mm3", help="Remove connected components smaller than this."
)
InterpolationOption = typer.Option(
    "laplace",
    "--interpolation",
    help="Gap filling: laplace (the method's Laplacian field: 3D Laplace equation over each gap) "
    "or linear (linear blend of the signed distance along the stack).",
)
PreviewOption = typer.Option(
    None, "--preview-factor", help="Preview downsampling (default max(2, round(0.1 mm / voxel)))."
)
MemoryOption = typer.Option(
    4.0, "--memory-gb", help="Above this working memory the map is built out of core (dask)."
)
ChunkOption = typer.Option(128, "--chunk-vox", help="Block edge (voxels) when out of core.")
WorkersOption = typer.Option(2, "--workers", help="Threads of the out-of-core filters.")


def parse_sections(text: str) -> list[int]:
    """``"120,180-240"`` -> [120, 180, 181, ..., 240] (inclusive ranges)."""
    out: list[int] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                if abs(b - a) > 100_000:
                    raise ValueError
                out.extend(range(min(a, b), max(a, b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ParameterError(
                f"bad section list {text!r}", fix="use numbers and ranges, e.g. 120,180-240"
            ) from None
    return out


def _brain(name: str, root: Path | None):
    from cortexgraph.data.manifest import find_brain

    brain = find_brain(name, root)
    if brain.cohort is None:
        raise CortexgraphError(
            "the brain is not inside a cohort", file=brain.root, fix="use a cohort folder"
        )
    return brain


#: MapOptions in a parameters file (--params, docs/conventions.md "Parameters"); options whose
#: parameter name differs from their field
MAP_PARAMETERS = "cortexgraph.maps3d.stage:MapOptions"
MAP_OPTION_NAMES = {
    "voxel_size_mm": "voxel_mm",
    "memory_budget_gb": "memory_gb",
    "num_workers": "workers",
}


def map_options(
    voxel_mm: float = VoxelOption,
    exclude_sections: str = ExcludeOption,
    median_size: int = MedianOption,
    min_component_mm3: float = MinComponentOption,
    interpolation: str = InterpolationOption,
    preview_factor: int = PreviewOption,
    memory_gb: float = MemoryOption,
    chunk_vox: int = ChunkOption,
    workers: int = WorkersOption,
) -> MapOptions:
    """The map options of ``map3d`` and ``stats`` (:func:`cortexgraph.cli.common.option_group`)
    -> :class:`cortexgraph.maps3d.stage.MapOptions`."""
    from cortexgraph.maps3d.stage import MapOptions

    return MapOptions(
        voxel_size_mm=voxel_mm,
        exclude_sections=tuple(parse_sections(exclude_sections)),
        median_size=median_size,
        min_component_mm3=min_component_mm3,
        interpolation=interpolation,
        preview_factor=preview_factor,
        memory_budget_gb=memory_gb,
        chunk_vox=chunk_vox,
        num_workers=workers,
    )


def stats_options(
    reference: str = typer.Option(
        "auto",
        "--reference",
        help="Population the z-scores compare with: auto (a phantom cohort: its own "
        "population; otherwise human), human (the published hOc1/hOc2/hOc5 values of 5 male "
        "brains, Schiffer et al. 2021, NeuroImage, Table 2), phantom (the cohort's other "
        "phantom brains), none (no z-scores), or a TSV (area, quantity, mean, sd[, hemisphere]).",
    ),
    shrinkage: float = typer.Option(
        None, "--shrinkage", help="Volume shrinkage factor (default: brain.toml's)."
    ),
    max_depth: float = typer.Option(
        0.25, "--max-depth", help="Pial triangles: cortical depth below this."
    ),
    midline_x_mm: float = typer.Option(
        None,
        "--midline-x-mm",
        help="Hemisphere split: lh where world x is below this (default: the "
        "interhemispheric plane build-graph found).",
    ),
    depth_voxel_mm: float = typer.Option(
        None,
        "--depth-voxel-mm",
        help="Voxel of the tissue volume and depth field (default: the map's voxel size).",
    ),
    depth_model: str = typer.Option(
        "equivolumetric",
        "--depth-model",
        help="Cortical depth of the 0.25 cut: equivolumetric (Bok; the method's) or laplace "
        "(the Laplace potential).",
    ),
) -> dict:
    """The morphometry options of ``stats`` (keywords of
    :func:`cortexgraph.maps3d.stats_stage.stats_brain`)."""
    return dict(locals())


def _skipped(exc) -> None:
    console.print(f"[yellow]skipped[/] {exc}", highlight=False)


def _exit_if_missing(missing: list[str], labels: str) -> None:
    """Exit status 1 naming the areas the source labels on no section (the others were done)."""
    if missing:
        console.print(f"[bold yellow]not labelled by {labels}: {', '.join(missing)}[/]")
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    @command(
        app, "map3d", ("options", map_options), parameters_group(MAP_PARAMETERS, "map3d"), STAGE
    )
    def map3d(
        brain_name: str = BrainArgument,
        area: list[str] = AreaOption,
        labels: str = LabelsOption,
        *,
        options: MapOptions,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """3D map of areas from the per-section labels of one source: assemble in the
        reconstruction's world frame, fill gaps, median filter, remove components < 27 mm^3,
        surfaces.

        Writes <brain>/maps3d/<source>/<area>.nii.gz, .gii/.ply and _preview.gii/.ply.
        Exit status 1 when the source labels some of the areas on no section (the others are
        written), 2 on errors. Every MapOptions field can come from a TOML file (--params; all
        of them: --params-template); the options given win over it.
        """
        from cortexgraph.maps3d.brainmap import AreaNotLabelledError
        from cortexgraph.maps3d.stage import map3d_area

        options = parameters.resolve(asdict(options), MAP_OPTION_NAMES)

        if not area:
            raise ParameterError("no area given", fix="add --area <name or id>")
        brain = _brain(brain_name, flags.root)
        missing = []
        records = [brain.cohort.areas.resolve(key) for key in split_list(area)]  # all, first
        for rec in records:
            try:
                info = map3d_area(brain, rec.id, labels, options, **flags.stage_keywords)
            except AreaNotLabelledError as exc:
                _skipped(exc)
                missing.append(rec.name)
                continue
            volume = info["voxels"]["final"] * info["voxel_size_mm"] ** 3
            state = reuse_state(info)
            console.print(
                f"[bold green]{rec.name}[/] from {labels}: {state}: {volume:.1f} mm^3, "
                f"{info['sections_showing_area']} sections show it, "
                f"{info['surface_triangles']} triangles -> {info['files'][0].parent}",
                highlight=False,
                soft_wrap=True,
            )
        _exit_if_missing(missing, labels)

    @command(
        app,
        "stats",
        ("measure", stats_options),
        ("options", map_options),
        parameters_group(MAP_PARAMETERS, "stats"),
        STAGE,
    )
    def stats(
        brain_name: str = BrainArgument,
        area: list[str] = AreaOption,
        labels: str = LabelsOption,
        *,
        measure: dict,
        options: MapOptions,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """Volume and pial surface area of area maps (built first where missing), shrinkage-
        corrected, with z-scores against a reference table.

        Writes <brain>/maps3d/<source>/<area>_stats.tsv, <area>.png and stats.tsv (all areas of
        the source measured so far). Exit status 1 when the source labels some of the areas on
        no section (the others are measured), 2 on errors. The map's MapOptions can come from a
        TOML file (--params, as for map3d).
        """
        from cortexgraph.maps3d.stats_stage import stats_brain

        options = parameters.resolve(asdict(options), MAP_OPTION_NAMES)

        def show(entry: dict) -> None:
            if "skipped" in entry:
                _skipped(entry["skipped"])
                return
            both = entry["rows"][-1]
            console.print(
                f"[bold]{entry['area']}[/] ({labels}): volume {both['volume_mm3']:.1f} mm^3 "
                f"(corrected {both['volume_corrected_mm3']:.1f}), pial surface "
                f"{both['surface_mm2']:.1f} mm^2 (corrected {both['surface_corrected_mm2']:.1f})",
                highlight=False,
            )

        result = stats_brain(
            _brain(brain_name, flags.root),
            labels,
            split_list(area),
            options,
            **measure,
            **flags.stage_keywords,
            on_area=show,
        )
        if result["table"] is not None:
            console.print(
                f"[bold green]report: {result['table']}[/]", highlight=False, soft_wrap=True
            )
        _exit_if_missing(result["missing"], labels)

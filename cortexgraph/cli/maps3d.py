"""``cortexgraph map3d <brain>`` and ``cortexgraph stats <brain>``: 3D area maps and morphometry."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    OverwriteOption,
    RootOption,
    VerboseOption,
    console,
    log,
    reports_errors,
    setup_logging,
)
from cortexgraph.errors import CortexgraphError

LabelsOption = typer.Option(
    ...,
    "--labels",
    help="Label source: truth (phantom ground truth), annotation, or a folder under "
    "<brain>/labels/ such as gnn-<run> or lsm-<arch>.",
)
AreaOption = typer.Option(None, "--area", help="Area name or id (repeat for several).")
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
    "linear", "--interpolation", help="Gap filling: linear (along y) or harmonic (3D Laplace)."
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
                out.extend(range(min(a, b), max(a, b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise CortexgraphError(
                f"bad section list {text!r}", fix="use numbers and ranges, e.g. 120,180-240"
            ) from None
    return out


def _build_and_write(brain, area, source, options: dict, out_dir: Path):
    """Build one area map, write it, and return it (out-of-core work folder removed)."""
    from cortexgraph.maps3d.brainmap import map_area, map_stem, remove_workdir, write_area_map

    area_rec = brain.cohort.areas.resolve(area) if brain.cohort is not None else None
    name = area_rec.name if area_rec is not None else str(area)
    workdir = out_dir / f".work-{map_stem(name, source)}"
    amap = map_area(
        brain,
        area,
        source,
        workdir=workdir,
        progress=lambda step: log.debug("%s %s: %s", brain.id, name, step),
        **options,
    )
    parameters = {"brain": brain.id, "area": amap.area_name, "source": source}
    parameters.update({k: v for k, v in options.items() if k != "exclude_sections"})
    parameters["exclude_sections"] = list(options.get("exclude_sections", ()))
    inputs = [brain.section_table_path, brain.transform_table_path, amap.info["label_location"]]
    written = write_area_map(out_dir, amap, parameters, inputs)
    remove_workdir(amap)
    return amap, written


def register(app: typer.Typer) -> None:
    @app.command("map3d")
    @reports_errors
    def map3d(
        brain_name: str = typer.Argument(..., metavar="BRAIN", help="Brain id or folder."),
        area: list[str] = AreaOption,
        labels: str = LabelsOption,
        voxel_mm: float = VoxelOption,
        exclude_sections: str = ExcludeOption,
        median_size: int = MedianOption,
        min_component_mm3: float = MinComponentOption,
        interpolation: str = InterpolationOption,
        preview_factor: int = PreviewOption,
        memory_gb: float = MemoryOption,
        chunk_vox: int = ChunkOption,
        workers: int = WorkersOption,
        root: Path = RootOption,
        overwrite: bool = OverwriteOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """3D map of areas from per-section labels: assemble in the reconstruction's world frame,
        fill gaps (Laplace interpolation), median filter, remove components < 27 mm^3, surfaces.

        Writes <brain>/maps3d/<area>_<source>.nii.gz, .gii/.ply and _preview.gii/.ply.
        Exit status 1 when the source labels some of the areas on no section (the others are
        written), 2 on errors.
        """
        from cortexgraph.data.manifest import find_brain
        from cortexgraph.maps3d.brainmap import AreaNotLabelledError, map_stem
        from cortexgraph.outputs import should_compute

        setup_logging(verbose)
        if not area:
            raise CortexgraphError("no area given", fix="add --area <name or id>")
        brain = find_brain(brain_name, root)
        if brain.cohort is None:
            raise CortexgraphError(
                "the brain is not inside a cohort", file=brain.root, fix="use a cohort folder"
            )
        out_dir = brain.derivatives / "maps3d"
        options = {
            "voxel_size_mm": voxel_mm,
            "exclude_sections": parse_sections(exclude_sections),
            "median_size": median_size,
            "min_component_mm3": min_component_mm3,
            "interpolation": interpolation,
            "preview_factor": preview_factor,
            "memory_budget_gb": memory_gb,
            "chunk_vox": chunk_vox,
            "num_workers": workers,
        }
        missing = []
        for key in area:
            rec = brain.cohort.areas.resolve(key)
            target = out_dir / f"{map_stem(rec.name, labels)}.nii.gz"
            if not should_compute(target, overwrite):
                console.print(f"{target} exists (--overwrite to recompute)", highlight=False)
                continue
            try:
                amap, _ = _build_and_write(brain, rec.id, labels, options, out_dir)
            except AreaNotLabelledError as exc:
                console.print(f"[yellow]skipped[/] {exc}", highlight=False)
                missing.append(rec.name)
                continue
            info = amap.info
            volume = info["voxels"]["final"] * info["voxel_size_mm"] ** 3
            console.print(
                f"[bold green]{rec.name}[/] from {labels}: {volume:.1f} mm^3, "
                f"{info['sections_showing_area']} sections show it, "
                f"{info['surface_triangles']} triangles "
                f"({'out of core' if info['out_of_core'] else 'in memory'}) -> {target}",
                highlight=False,
            )
        if missing:
            console.print(f"[bold yellow]not labelled by {labels}: {', '.join(missing)}[/]")
            raise typer.Exit(code=1)

    @app.command("stats")
    @reports_errors
    def stats(
        brain_name: str = typer.Argument(..., metavar="BRAIN", help="Brain id or folder."),
        area: list[str] = AreaOption,
        labels: str = LabelsOption,
        reference: Path = typer.Option(
            None,
            "--reference",
            help="Reference TSV (area, quantity, mean, sd[, hemisphere]); default: the seeds' "
            "hOc1/hOc2/hOc5 values.",
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
            "interhemispheric fissure found in the stacked tissue volume).",
        ),
        depth_voxel_mm: float = typer.Option(
            None,
            "--depth-voxel-mm",
            help="Voxel of the tissue volume and depth field (default: the map's voxel size; "
            "coarser for maps too large for an in-memory depth field).",
        ),
        voxel_mm: float = VoxelOption,
        exclude_sections: str = ExcludeOption,
        median_size: int = MedianOption,
        min_component_mm3: float = MinComponentOption,
        interpolation: str = InterpolationOption,
        preview_factor: int = PreviewOption,
        memory_gb: float = MemoryOption,
        chunk_vox: int = ChunkOption,
        workers: int = WorkersOption,
        root: Path = RootOption,
        overwrite: bool = OverwriteOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """Volume and pial surface area of area maps (built first where missing), shrinkage-
        corrected, with z-scores against a reference table.

        Writes <brain>/maps3d/<area>_<source>_stats.tsv, <area>_<source>.png and
        stats_<source>.tsv (all areas of the source measured so far). Exit status 1 when the
        source labels some of the areas on no section (the others are measured), 2 on errors.
        """
        import nibabel as nib
        import numpy as np

        from cortexgraph.build_graph import interhemispheric_x_mm
        from cortexgraph.data.manifest import find_brain
        from cortexgraph.data.stack import SectionStack
        from cortexgraph.maps3d.brainmap import AreaNotLabelledError, map_stem, read_area_map
        from cortexgraph.maps3d.morphometry import load_reference_table, sample_at_vertices
        from cortexgraph.maps3d.stats import (
            area_picture,
            hemisphere_measures,
            merge_reports,
            morphometry_rows,
            tissue_depth_volume,
            write_report,
        )
        from cortexgraph.meshes.io import read_gifti_surface
        from cortexgraph.outputs import should_compute, write_provenance
        from cortexgraph.reconstruct.volume import stack_tissue_volume

        setup_logging(verbose)
        brain = find_brain(brain_name, root)
        if brain.cohort is None:
            raise CortexgraphError(
                "the brain is not inside a cohort", file=brain.root, fix="use a cohort folder"
            )
        table = brain.cohort.areas
        out_dir = brain.derivatives / "maps3d"
        if area:
            records = [table.resolve(a) for a in area]
        else:
            records = [
                a for a in table.areas if (out_dir / f"{map_stem(a.name, labels)}.nii.gz").exists()
            ]
            if not records:
                raise CortexgraphError(
                    f"no area maps of source {labels!r}",
                    file=out_dir,
                    fix=f"run `cortexgraph map3d {brain.id} --area ... --labels {labels}` or "
                    "give --area",
                )
        options = {
            "voxel_size_mm": voxel_mm,
            "exclude_sections": parse_sections(exclude_sections),
            "median_size": median_size,
            "min_component_mm3": min_component_mm3,
            "interpolation": interpolation,
            "preview_factor": preview_factor,
            "memory_budget_gb": memory_gb,
            "chunk_vox": chunk_vox,
            "num_workers": workers,
        }
        reference_table = load_reference_table(reference)
        f_volume = float(shrinkage) if shrinkage is not None else float(brain.shrinkage_factor)

        exclusion = None
        if brain.exclusion_mask and brain.path(brain.exclusion_mask).is_file():
            image = nib.load(str(brain.path(brain.exclusion_mask)))
            exclusion = (np.asarray(image.dataobj) > 0, np.asarray(image.affine, dtype=float))
        stack = SectionStack(brain)
        tissue: dict[float, tuple] = {}  # stacked tissue volume and midline per voxel size
        missing = []
        for rec in records:
            stem = map_stem(rec.name, labels)
            map_path = out_dir / f"{stem}.nii.gz"
            if should_compute(map_path, overwrite):
                try:
                    _build_and_write(brain, rec.id, labels, options, out_dir)
                except AreaNotLabelledError as exc:
                    console.print(f"[yellow]skipped[/] {exc}", highlight=False)
                    missing.append(rec.name)
                    continue
            mask, affine = read_area_map(map_path)
            verts, faces = read_gifti_surface(out_dir / f"{stem}.gii")
            pverts, pfaces = read_gifti_surface(out_dir / f"{stem}_preview.gii")
            # the depth field of the map's own box, so an area's numbers do not depend on
            # which other areas are measured in the same run
            h = round(float(abs(affine[0, 0])), 6)
            hd = round(float(depth_voxel_mm), 6) if depth_voxel_mm else h
            if len(verts):
                if hd not in tissue:
                    volume, volume_affine, _ = stack_tissue_volume(stack, hd)
                    midline = (
                        float(midline_x_mm)
                        if midline_x_mm is not None
                        else interhemispheric_x_mm(volume, volume_affine)
                    )
                    tissue[hd] = (volume, volume_affine, midline)
                depth_vol, depth_aff, depth_info = tissue_depth_volume(
                    stack,
                    hd,
                    verts.min(axis=0),
                    verts.max(axis=0),
                    exclusion=exclusion,
                    tissue=tissue[hd][:2],
                )
                midline = tissue[hd][2]
                log.info("%s: depth field %s", rec.name, depth_info)
                depth = sample_at_vertices(depth_vol, depth_aff, verts)
                pdepth = sample_at_vertices(depth_vol, depth_aff, pverts)
                del depth_vol
            else:
                depth_info = {}
                depth, pdepth = np.zeros(0), np.zeros(0)
                midline = float(midline_x_mm or 0.0)
            measures = hemisphere_measures(
                mask, affine, verts, faces, depth, midline_x_mm=midline, max_depth=max_depth
            )
            rows = morphometry_rows(
                measures,
                brain=brain.id,
                source=labels,
                area_id=rec.id,
                area=rec.name,
                voxel_size_mm=h,
                f_volume=f_volume,
                reference_table=reference_table,
                max_depth=max_depth,
                midline_x_mm=midline,
            )
            parameters = {
                "brain": brain.id,
                "area": rec.name,
                "source": labels,
                "max_depth": max_depth,
                "midline_x_mm": midline,
                "depth_voxel_mm": hd,
                "f_volume": f_volume,
                "reference": str(reference) if reference else "shipped reference_values.tsv",
            }
            inputs = [out_dir / f"{stem}.nii.gz", out_dir / f"{stem}.gii"]
            if reference:
                inputs.append(reference)
            report = write_report(out_dir / f"{stem}_stats.tsv", rows)
            write_provenance(report, parameters, inputs, {"depth": depth_info})
            pial = (
                np.asarray(pdepth)[np.asarray(pfaces)].max(axis=1) < max_depth
                if len(pfaces)
                else np.zeros(0, bool)
            )
            picture = area_picture(
                out_dir / f"{stem}.png",
                pverts,
                pfaces,
                pial,
                color_rgb=rec.rgb,
                title=f"{brain.id} {rec.name} (id {rec.id}), labels: {labels}",
                rows=rows,
            )
            write_provenance(picture, parameters, inputs)
            both = rows[-1]
            console.print(
                f"[bold]{rec.name}[/]: volume {both['volume_mm3']:.1f} mm^3 "
                f"(corrected {both['volume_corrected_mm3']:.1f}), pial surface "
                f"{both['surface_mm2']:.1f} mm^2 (corrected {both['surface_corrected_mm2']:.1f})",
                highlight=False,
            )
        reports = [
            out_dir / f"{map_stem(a.name, labels)}_stats.tsv"
            for a in table.areas
            if (out_dir / f"{map_stem(a.name, labels)}_stats.tsv").exists()
        ]
        stack.close()
        if reports:
            merged = merge_reports(reports, out_dir / f"stats_{labels}.tsv")
            console.print(f"[bold green]report: {merged}[/]", highlight=False)
        if missing:
            console.print(f"[bold yellow]not labelled by {labels}: {', '.join(missing)}[/]")
            raise typer.Exit(code=1)

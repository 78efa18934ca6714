"""From scans to a brain (docs/scans-in.md): ``cortexgraph ingest COHORT BRAIN`` (the images),
``cortexgraph segment BRAIN`` (tissue masks), ``cortexgraph align BRAINS`` and ``cortexgraph register
BRAINS`` (transforms and canonical coordinates from the images)."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    LOGGING,
    STAGE,
    BrainArgument,
    BrainsArgument,
    OverwriteOption,
    StageFlags,
    command,
    console,
    each_brain,
    on_brain,
    reuse_state,
    split_list,
    with_progress,
)


def register(app: typer.Typer) -> None:
    @command(app, "ingest", LOGGING)
    def ingest(
        cohort: Path = typer.Argument(..., help="Cohort folder (created when it does not exist)."),
        brain: str = typer.Argument(
            ..., metavar="BRAIN", help="Id (and folder name) of the brain to make."
        ),
        scans: Path = typer.Option(
            ..., "--scans", help="Folder of the scans; its sections.tsv is the section list."
        ),
        sections: Path = typer.Option(
            None, "--sections", help="Section list (default: SCANS/sections.tsv)."
        ),
        spacing_um: float = typer.Option(
            None, "--spacing-um", help="Pixel spacing of every scan in µm (overrides metadata)."
        ),
        downscale: int = typer.Option(
            1, "--downscale", help="Store the mean of N x N scan pixels (level-0 spacing x N)."
        ),
        digitization_step: int = typer.Option(
            1, "--digitization-step", help="Every n-th physical section was digitized (new brain)."
        ),
        shrinkage_factor: float = typer.Option(
            None, "--shrinkage-factor", help="Volume shrinkage factor for brain.toml."
        ),
        thickness_um: float = typer.Option(
            20.0, "--section-thickness-um", help="Section thickness (new cohort.toml)."
        ),
        chunk_px: int = typer.Option(2048, "--chunk-px", help="HDF5 chunk and tile edge."),
        overwrite: bool = OverwriteOption,
        *,
        verbose: bool,
    ) -> None:
        """Scans (OME-TIFF/BigTIFF, OME-Zarr, TIFF/PNG) + a section list -> brain images, streamed.

        Sections done before from the same scan (size, head/tail digest) and options are skipped.
        """
        from cortexgraph.scans.ingest import ingest_brain

        report = with_progress(
            ingest_brain,
            cohort,
            brain,
            sections or Path(scans) / "sections.tsv",
            spacing_um=spacing_um,
            downscale=downscale,
            digitization_step=digitization_step,
            shrinkage_factor=shrinkage_factor,
            section_thickness_um=thickness_um,
            chunk_px=chunk_px,
            overwrite=overwrite,
        )
        console.print(
            f"[bold green]{brain}: {len(report.written)} section(s) written, "
            f"{len(report.skipped)} already done, {len(report.missing)} missing; "
            f"{report.spacing_um:g} um/px -> {report.brain}[/]"
        )

    @command(app, "segment", STAGE)
    def segment(
        brain: str = BrainArgument,
        spacing_um: float = typer.Option(
            64.0, "--spacing-um", help="Working and mask spacing in µm (at least the image's)."
        ),
        overrides: Path = typer.Option(
            None, "--overrides", help="Per-section overrides (TSV: section, tissue_threshold, ...)."
        ),
        sections: str = typer.Option(
            None, "--sections", help="Comma-separated section numbers (default: all)."
        ),
        iterations: int = typer.Option(
            40, "--chan-vese-iterations", help="Morphological Chan-Vese iterations."
        ),
        otsu_classes: int = typer.Option(
            3, "--otsu-classes", help="2: the thesis' Otsu reference; 3: glass vs all tissue."
        ),
        qc: bool = typer.Option(True, "--qc/--no-qc", help="A QC picture per section."),
        replace_masks: bool = typer.Option(
            False, "--replace-masks", help="Replace masks that segment did not write."
        ),
        *,
        flags: StageFlags,
    ) -> None:
        """Tissue masks (background / white / gray) from the section images (Schiffer 2023)."""
        from cortexgraph.errors import ParameterError
        from cortexgraph.scans.segment import SegmentParameters, segment_brain

        if otsu_classes not in (2, 3):
            raise ParameterError(
                f"--otsu-classes must be 2 or 3, got {otsu_classes}", fix="pass 2 or 3"
            )
        chosen = None
        if sections:
            try:
                chosen = [int(s) for s in split_list(sections)]
            except ValueError:
                raise ParameterError(
                    f"--sections {sections!r} is not a list of integers",
                    fix="pass e.g. --sections 1201,1261",
                ) from None
        params = SegmentParameters(
            spacing_um=spacing_um, chan_vese_iterations=iterations, otsu_classes=otsu_classes
        )
        found, summary = on_brain(
            brain,
            flags,
            segment_brain,
            params,
            overrides=overrides,
            sections=chosen,
            qc=qc,
            replace_masks=replace_masks,
        )
        line = f"{found.id}: {summary.get('segmented', 0)} mask(s) at {summary['spacing_um']:g} um"
        if "dice_gray_mean" in summary:
            line += (
                f"; Dice vs truth: gray {summary['dice_gray_mean']:.3f} (min "
                f"{summary['dice_gray_min']:.3f}), white {summary['dice_white_mean']:.3f}, "
                f"background {summary['dice_background_mean']:.3f}; worst gray: "
                + ", ".join(f"s{n} {d:.3f}" for n, d in summary["worst_gray"])
            )
        console.print(f"[bold green]{line}[/] ({summary['why']})")
        fallback = summary.get("brain_threshold") or []
        if fallback:
            console.print(
                f"[yellow]{len(fallback)} section(s) took the brain's tissue threshold (their own "
                f"was an outlier): {', '.join(f's{n}' for n in fallback[:12])}"
                f"{' ...' if len(fallback) > 12 else ''}; check their QC pictures "
                "(segment.tsv lists each section's threshold)[/]",
                highlight=False,
            )

    @command(app, "align", STAGE)
    def align_command(
        brains: list[str] = BrainsArgument,
        spacing_um: float = typer.Option(64.0, help="Working pixel spacing (the thesis: 64 µm)."),
        features: str = typer.Option("sift", help="Feature detector: sift, orb or none."),
        min_inliers: int = typer.Option(
            8, help="Fewer RANSAC inliers: the feature estimate failed."
        ),
        min_ncc: float = typer.Option(
            0.6, help="Flag pairs whose refined overlap correlation is lower (large residual)."
        ),
        max_angle_deg: float = typer.Option(
            180.0, help="Rotation search range (+-) between consecutive sections."
        ),
        detect_mirrored: bool = typer.Option(
            True, help="Try every section flipped; report sections found mirrored."
        ),
        install: bool = typer.Option(
            False,
            "--install",
            help="Also write the transforms (and detected mirror flags) into the brain's own "
            "transforms.tsv / sections.tsv (the old files are kept as *.before-align.tsv).",
        ),
        accept_flagged: bool = typer.Option(
            False, "--accept-flagged", help="With --install: install even with flagged pairs."
        ),
        *,
        flags: StageFlags,
    ) -> None:
        """Rigid transforms between consecutive sections, estimated from the section images.

        Features + k-NN matching + RANSAC + least-squares rigid fit (Schiffer 2023, PhD thesis, ch.
        3), checked against an exhaustive rotation search and refined to sub-pixel accuracy by
        intensity-based Gauss-Newton; mirrored scans detected. Writes
        <cohort>/derivatives/cortexgraph/<brain>/align/: transforms.tsv, pairs.tsv (residual and
        status per pair; flagged pairs name their reasons), mirrored.tsv, align.json (on a phantom
        also the errors against the true transforms). The brain's transforms.tsv is replaced only
        with --install.
        """
        from rich.markup import escape

        from cortexgraph.scans.align import AlignParameters, install_alignment, run_align

        params = AlignParameters(
            spacing_um=spacing_um,
            features=features,
            min_inliers=min_inliers,
            min_ncc=min_ncc,
            max_angle_deg=max_angle_deg,
            detect_mirrored=detect_mirrored,
        )
        for brain, report in each_brain(brains, flags, run_align, params):
            console.print(
                f"[bold]{escape(brain.id)}[/]: {reuse_state(report)}: {report['pairs']} pairs, "
                f"{report['pairs_flagged']} flagged, median overlap correlation "
                f"{report['ncc_median']:.3f}",
                highlight=False,
            )
            for item in report["flagged"]:
                console.print(
                    f"  [yellow]flagged[/] {item['moving']} -> {item['fixed']}: "
                    f"{', '.join(item['reasons'])}",
                    highlight=False,
                )
            for section in report["mirror_changes"]:
                console.print(
                    f"  [yellow]mirrored[/] section {section}: the images say its mirror flag in "
                    "sections.tsv is wrong (mirrored.tsv)",
                    highlight=False,
                )
            accuracy = report.get("accuracy")
            if accuracy:
                console.print(
                    f"  against the true transforms: rotation error median "
                    f"{accuracy['pair_rotation_error_deg_median']:.3f} deg (worst "
                    f"{accuracy['pair_rotation_error_deg_max']:.3f}), translation median "
                    f"{accuracy['pair_translation_error_px_median']:.2f} px of 64 µm (worst "
                    f"{accuracy['pair_translation_error_px_max']:.2f}), drift to the base section "
                    f"worst {accuracy['drift_translation_error_um_max'] / 1000:.2f} mm; unflagged "
                    f"failures: {len(accuracy['unflagged_failures'])}",
                    highlight=False,
                )
            if install:
                written = install_alignment(
                    brain, accept_flagged=accept_flagged, wait_s=flags.wait_s
                )
                console.print(
                    "  installed: " + ", ".join(escape(str(p)) for p in written), highlight=False
                )

    @command(app, "register", STAGE)
    def register_command(
        brains: list[str] = BrainsArgument,
        voxel_mm: float = typer.Option(1.2, help="Voxel of the stacked volume and registration."),
        bspline_mm: float = typer.Option(
            20.0, help="B-spline control point spacing (0: affine only)."
        ),
        spacing_um: float = typer.Option(
            None, help="Pixel spacing of the coordinate maps [default: brain.toml's coords]."
        ),
        install: bool = typer.Option(
            False,
            "--install",
            help="Copy the coordinate maps into the brain folder (coords-registered/, the coords "
            "column of sections.tsv; the old tables kept as *.before-register.*).",
        ),
        *,
        flags: StageFlags,
    ) -> None:
        """Canonical coordinate maps: register the stacked tissue volume to MNI152 (SimpleITK:
        affine, then B-spline) and push the mapping back to every section's pixels.

        Needs SimpleITK (pip install 'cortexgraph[scans]'). Writes
        <cohort>/derivatives/cortexgraph/<brain>/register/: coords/sNNNN.h5, world_to_template.h5,
        register.json (with the error in mm against the brain's coordinate maps when it has them,
        e.g. on a phantom). With --install: <brain>/coords-registered/sNNNN.h5 and the coords
        column of sections.tsv, so that features reads CO and PM from them.
        """
        from rich.markup import escape

        from cortexgraph.scans.register import (
            INSTALLED_COORDS_FOLDER,
            RegisterParameters,
            install_registration,
            run_register,
        )

        params = RegisterParameters(voxel_mm=voxel_mm, bspline_mm=bspline_mm, spacing_um=spacing_um)
        for brain, report in each_brain(brains, flags, run_register, params):
            line = f"[bold]{escape(brain.id)}[/]: {reuse_state(report)}"
            error = report.get("error_against_coords")
            if error:
                line += (
                    f"; error against the coordinate maps: median {error['median_mm']:.2f} mm, "
                    f"mean {error['mean_mm']:.2f}, 95th percentile {error['p95_mm']:.2f}"
                )
            console.print(line, highlight=False)
            if install:
                written = install_registration(brain, wait_s=flags.wait_s)
                console.print(
                    f"  installed: {len(written)} files ("
                    f"{escape(str(brain.root / INSTALLED_COORDS_FOLDER))}, "
                    f"{escape(str(brain.section_table_path))})",
                    highlight=False,
                )

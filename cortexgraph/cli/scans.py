"""``cortexgraph ingest COHORT BRAIN`` and ``cortexgraph segment BRAIN`` (docs/scans-in.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    OverwriteOption,
    StageFlags,
    VerboseOption,
    command,
    console,
    reports_errors,
    setup_logging,
    split_list,
    with_progress,
)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    @reports_errors
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
        verbose: bool = VerboseOption,
    ) -> None:
        """Scans (OME-TIFF/BigTIFF, OME-Zarr, TIFF/PNG) + a section list -> brain images, streamed.

        Sections done before from the same scan (size, head/tail digest) and options are skipped.
        """
        from cortexgraph.scans.ingest import ingest_brain

        setup_logging(verbose)
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
        from cortexgraph.data.manifest import find_brain
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
        found = find_brain(brain, flags.root)
        summary = with_progress(
            segment_brain,
            found,
            params,
            overrides=overrides,
            sections=chosen,
            qc=qc,
            replace_masks=replace_masks,
            **flags.stage_keywords,
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

"""``cortexgraph align BRAIN`` and ``cortexgraph register BRAIN``: transforms and canonical
coordinates from the images (docs/scans-in.md)."""

from __future__ import annotations

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainsArgument,
    StageFlags,
    command,
    console,
    each_brain,
    reuse_state,
)

EXIT_FLAGGED = 2
"""Exit status of ``align --install`` refused because pairs are flagged (a data problem)."""


def register(app: typer.Typer) -> None:
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
                written = install_alignment(brain, accept_flagged=accept_flagged)
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
                written = install_registration(brain)
                console.print(
                    f"  installed: {len(written)} files ("
                    f"{escape(str(brain.root / INSTALLED_COORDS_FOLDER))}, "
                    f"{escape(str(brain.section_table_path))})",
                    highlight=False,
                )

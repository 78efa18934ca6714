"""``cortexgraph build-graph <brain>``: volume -> depth -> midsurfaces -> graphs -> node points."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    OverwriteOption,
    RootOption,
    VerboseOption,
    WaitOption,
    console,
    reports_errors,
    setup_logging,
    stage_progress,
)


def register(app: typer.Typer) -> None:
    @app.command("build-graph")
    @reports_errors
    def build_graph_command(
        brains: list[str] = typer.Argument(..., help="Brain ids (e.g. B03) or brain folders."),
        root: Path = RootOption,
        voxel_mm: float = typer.Option(
            None, help="Voxel size of the reconstruction [default: distance between sections]."
        ),
        edge_mm: float = typer.Option(
            None, help="Target edge length of the remeshed midsurface [default: the voxel size]."
        ),
        exclusion: str = typer.Option(
            "auto",
            help="Non-cortical gray matter: auto (the brain's mask, else automatic), mask, "
            "automatic, none.",
        ),
        poisson_depth: int = typer.Option(
            None, help="Octree depth of Poisson surface reconstruction [default: skip it]."
        ),
        no_refine: bool = typer.Option(
            False, "--no-refine", help="Do not move section points to the cortical midline."
        ),
        qc_picture: bool = typer.Option(True, help="Draw qc/build-graph.png."),
        overwrite: bool = OverwriteOption,
        wait: float = WaitOption,
        verbose: bool = VerboseOption,
    ) -> None:
        """Reconstruct a brain, extract its midsurfaces and graphs, map nodes to section points.

        Writes under <cohort>/derivatives/cortexgraph/<brain>/ (docs/derivatives.md): reconstruct/
        (tissue, excluded, depth NIfTI), meshes/ (midsurface_lh|rh .surf.gii/.ply), graph/ (lh|rh .h5 and
        node tables), qc/ (build-graph.json and .png). On a phantom cohort it also measures accuracy
        against the ground truth (qc/build-graph-accuracy.json).
        """
        from cortexgraph.build_graph import BuildGraphParameters, build_graph
        from cortexgraph.data.manifest import find_brain
        from cortexgraph.synth.accuracy import truth_folder, write_build_graph_accuracy

        setup_logging(verbose)
        params = BuildGraphParameters(
            voxel_size_mm=voxel_mm,
            target_edge_mm=edge_mm,
            exclusion=exclusion,
            poisson_depth=poisson_depth,
            refine=not no_refine,
        )
        for name in brains:
            brain = find_brain(name, root)
            progress, callback = stage_progress()
            with progress:
                report = build_graph(
                    brain,
                    params,
                    overwrite=overwrite,
                    qc_picture=qc_picture,
                    progress=callback,
                    wait_s=wait,
                )
            if report["reused"]:
                head = f"[bold]{brain.id}[/]: up to date, reused (key {report['key'][:12]})"
            else:
                head = (
                    f"[bold]{brain.id}[/] ({report['seconds']['total']:.0f} s; computed because: "
                    f"{report['why']}):"
                )
            lines = [head]
            for hemi in ("lh", "rh"):
                mesh = report["midsurfaces"][hemi]
                mapped = report["mapping"][hemi]
                lines.append(
                    f"  {hemi}: {mesh['vertices']} nodes, edges {mesh['edge_mm_mean']:.3f} "
                    f"+- {mesh['edge_mm_std']:.3f} mm ({100 * mesh['edges_within_30pct']:.1f}% "
                    f"within 30% of {report['target_edge_mm']:.2f} mm), "
                    f"{mapped['nodes_valid']} nodes with a valid section point"
                )
            lap = report["laplace"]
            lines.append(
                f"  Laplace: {lap['unknowns']} cortex voxels, {lap['iterations']} iterations, "
                f"relative residual {lap['residual']:.1e}"
            )
            if truth_folder(brain) is not None:
                accuracy = write_build_graph_accuracy(brain)
                for hemi in ("lh", "rh"):
                    acc = accuracy[hemi]
                    lines.append(
                        f"  phantom {hemi}: distance to the true midsurface "
                        f"{acc['distance_mm_mean']:.3f} mm (mean), "
                        f"{100 * acc['valid_points_in_cortex']:.1f}% of valid points in true cortex"
                    )
                if "automatic_exclusion" in accuracy:
                    ex = accuracy["automatic_exclusion"]
                    lines.append(
                        f"  phantom automatic exclusion: removes {100 * ex['noncortical_removed']:.1f}%"
                        f" of non-cortical gray, {100 * ex['cortex_removed']:.2f}% of cortex "
                        f"({100 * ex['cortex_removed_beyond_tolerance']:.2f}% beyond "
                        f"{ex['tolerance_mm']:.1f} mm of the true border)"
                    )
            lines.append(f"  outputs: {brain.derivatives}")
            console.print("\n".join(lines), highlight=False)

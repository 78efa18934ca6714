"""``cortexgraph build-graph <brain>``: volume -> depth -> midsurfaces -> graphs -> node points."""

from __future__ import annotations

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainsArgument,
    ParametersFile,
    StageFlags,
    command,
    console,
    each_brain,
    parameters_group,
)

#: the stage's parameters dataclass (imported when the command runs)
PARAMETERS = "cortexgraph.build_graph.parameters:BuildGraphParameters"
#: options whose parameter name differs from their field of BuildGraphParameters
OPTION_NAMES = {"voxel_size_mm": "voxel_mm", "target_edge_mm": "edge_mm", "refine": "no_refine"}


def register(app: typer.Typer) -> None:
    @command(app, "build-graph", parameters_group(PARAMETERS, "build-graph"), STAGE)
    def build_graph_command(
        brains: list[str] = BrainsArgument,
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
        max_cortex_thickness_mm: float = typer.Option(
            5.0,
            "--max-cortex-thickness-mm",
            help="Automatic exclusion: gray matter farther than half of this from white matter and "
            "background is non-cortical (raise it for thicker cortex).",
        ),
        exclusion_grow_mm: float = typer.Option(
            2.0, "--exclusion-grow-mm", help="Automatic exclusion: grow the excluded core by this."
        ),
        min_cortex_fraction: float = typer.Option(
            0.01,
            "--min-cortex-fraction",
            help="After exclusion, gray components below this share of the largest become "
            "background.",
        ),
        max_gap_planes: int = typer.Option(
            3,
            "--max-gap-planes",
            help="Runs of up to this many empty planes (missing sections) are bridged by copying "
            "the nearest plane; longer ones leave the surface open (with a warning).",
        ),
        min_component_fraction: float = typer.Option(
            0.1,
            "--min-component-fraction",
            help="Midsurface pieces below this share of the largest piece are dropped (a hemisphere's "
            "cortex is one sheet; lower it for slabs whose cortex falls apart into pieces).",
        ),
        hemispheres: str = typer.Option(
            "auto",
            "--hemispheres",
            help="auto (brain.toml's hemispheres, else found from the tissue), both, lh or rh.",
        ),
        qc_picture: bool = typer.Option(True, help="Draw qc/build-graph.png."),
        *,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """Reconstruct a brain, extract its midsurfaces and graphs, map nodes to section points.

        Writes under <cohort>/derivatives/cortexgraph/<brain>/ (docs/derivatives.md): reconstruct/
        (tissue, excluded, depth NIfTI), meshes/ (midsurface_lh|rh .surf.gii/.ply), graph/ (lh|rh .h5 and
        node tables), qc/ (build-graph.json and .png). On a phantom cohort it also measures accuracy
        against the ground truth (qc/build-graph-accuracy.json).

        Every parameter (BuildGraphParameters) can be set in a TOML file given to --params (print
        one with --params-template); the options above win over the file. The stage records the
        resolved parameters: a rerun with the same values reuses the outputs.
        """
        from cortexgraph.build_graph import build_graph
        from cortexgraph.build_graph.accuracy import truth_folder, write_build_graph_accuracy
        from cortexgraph.build_graph.stage import noncortical_piece_text

        options = {
            "voxel_size_mm": voxel_mm,
            "target_edge_mm": edge_mm,
            "exclusion": exclusion,
            "poisson_depth": poisson_depth,
            "refine": not no_refine,
            "max_cortex_thickness_mm": max_cortex_thickness_mm,
            "exclusion_grow_mm": exclusion_grow_mm,
            "min_cortex_fraction": min_cortex_fraction,
            "max_gap_planes": max_gap_planes,
            "min_component_fraction": min_component_fraction,
            "hemispheres": hemispheres,
        }
        params = parameters.resolve(options, OPTION_NAMES)
        for brain, report in each_brain(brains, flags, build_graph, params, qc_picture=qc_picture):
            if report["reused"]:
                head = f"[bold]{brain.id}[/]: up to date, reused (key {report['key'][:12]})"
            else:
                head = (
                    f"[bold]{brain.id}[/] ({report['seconds']['total']:.0f} s; computed because: "
                    f"{report['why']}):"
                )
            lines = [head]
            built = report["midsurfaces"].get("hemispheres", ["lh", "rh"])
            if len(built) == 1:
                lines.append(
                    f"  one hemisphere ({report['midsurfaces'].get('hemispheres_from', '')}): "
                    f"{built[0]}"
                )
            for hemi in built:
                mesh = report["midsurfaces"][hemi]
                mapped = report["mapping"][hemi]
                lines.append(
                    f"  {hemi}: {mesh['vertices']} nodes, edges {mesh['edge_mm_mean']:.3f} "
                    f"+- {mesh['edge_mm_std']:.3f} mm ({100 * mesh['edges_within_30pct']:.1f}% "
                    f"within 30% of {report['target_edge_mm']:.2f} mm), "
                    f"{mapped['nodes_valid']} nodes with a valid section point"
                )
                q = mesh.get("quality")
                if q:
                    lines.append(
                        f"      mesh: {q['components']} component(s), genus {q['genus']}, "
                        f"{q['boundary_edges']} boundary edges in {q['boundary_loops']} loop(s), "
                        f"max curvature {q['max_curvature_per_mm']:.2f}/mm, {q['spikes']} spike(s)"
                    )
                for piece in report["midsurfaces"].get("noncortical_pieces", {}).get(hemi, []):
                    text = noncortical_piece_text(piece, params)
                    lines.append(f"      [yellow]warning:[/] {text}")
            for gap in report["reconstruct"].get("open_gaps", []):
                lines.append(
                    f"  [yellow]open gap[/] at y {gap['y_mm'][0]:.1f}..{gap['y_mm'][1]:.1f} mm "
                    f"(sections {', '.join(str(s) for s in gap['sections']) or '-'}): the surface "
                    "is cut there"
                )
            lap = report["laplace"]
            lines.append(
                f"  Laplace: {lap['unknowns']} cortex voxels, {lap['iterations']} iterations, "
                f"relative residual {lap['residual']:.1e}"
            )
            if truth_folder(brain) is not None:
                accuracy = write_build_graph_accuracy(brain)
                for hemi in [h for h in built if h in accuracy]:
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

"""``cortexgraph synth OUT --preset tiny|demo|full``."""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    LOGGING,
    ParametersFile,
    command,
    console,
    parameters_group,
    split_list,
    stage_progress,
)

#: the parameters dataclass of synth (imported when the command runs)
PARAMETERS = "cortexgraph.synth.parameters:SynthParameters"


def synth_options(
    preset: str = typer.Option(
        "demo", help="tiny (seconds), demo (minutes), full (the publications' scale)."
    ),
    brains: str = typer.Option(None, help="Comma-separated brain ids (default: the preset's)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
    area_seed: int = typer.Option(
        None,
        "--area-seed",
        help="Seed of the area layout and laminar profiles (default 20211): another value "
        "gives held-out cytoarchitecture.",
    ),
    profile_variability: float = typer.Option(
        None,
        "--profile-variability",
        help="Log-normal s.d. of each brain's laminar profiles around its areas' (default 0: "
        "identical in every brain; 0.1: a 10% spread).",
    ),
    transition_mm: float = typer.Option(
        None,
        "--transition-mm",
        help="Mean width (mm, 10-90%) of the transition zones of the laminar pattern at "
        "area borders (default 0: abrupt borders).",
    ),
    transform_noise_deg: float = typer.Option(
        None,
        "--transform-noise-deg",
        help="S.d. of the rotation error of the supplied section transforms (default 0.05).",
    ),
    transform_noise_um: float = typer.Option(
        None,
        "--transform-noise-um",
        help="S.d. of the translation error of the supplied transforms (default 20 um).",
    ),
    distortion_scale_sd: float = typer.Option(
        None,
        "--distortion-scale-sd",
        help="Log-normal s.d. of each section's shrinkage or stretch on the slide (default 0).",
    ),
    distortion_warp_mm: float = typer.Option(
        None,
        "--distortion-warp-mm",
        help="S.d. of the amplitude (mm) of a smooth 30 mm wave of each mounted section "
        "(default 0).",
    ),
    scans_only: bool = typer.Option(
        False,
        "--scans-only",
        help="Keep only scans + section lists (scans/<brain>/); the brain folders move to "
        "ground_truth/<brain>/inputs/ (docs/scans-in.md).",
    ),
    scan_format: str = typer.Option(
        "ome-tiff", "--scan-format", help="Scans of --scans-only: ome-tiff, ome-zarr or png."
    ),
) -> dict:
    """The options of ``synth`` that are fields of
    :class:`~cortexgraph.synth.parameters.SynthParameters` (:func:`cortexgraph.cli.common.option_group`),
    as a dict by field name; ``brains`` as given (comma-separated)."""
    return dict(locals())


def register(app: typer.Typer) -> None:
    @command(
        app, "synth", ("options", synth_options), parameters_group(PARAMETERS, "synth"), LOGGING
    )
    def synth(
        out: Path = typer.Argument(..., help="Folder of the new cohort (new or empty)."),
        overwrite: bool = typer.Option(
            False,
            "--overwrite",
            help="Replace the phantom cohort in OUT (deleted first; a folder holding anything "
            "synth does not write is refused).",
        ),
        *,
        options: dict,
        parameters: ParametersFile,
        verbose: bool,
    ) -> None:
        """Make a phantom cohort from real anatomy, with ground truth for every stage.

        The options after --seed make it harder than the preset: new cytoarchitecture, brains
        that differ in their laminar profiles, gradual area borders, less exact transforms,
        sections distorted by mounting. Their
        values are recorded in synth.json; the exact values per brain are in ground_truth/.

        Every parameter (SynthParameters: these options and every number of the preset) can be
        set in a TOML file given to --params (print one with --params-template); the options
        given win over the file. synth.json records the resolved preset.
        """
        from cortexgraph.synth.cohort import synthesize_cohort

        brain_ids = split_list(options["brains"])
        options = {**options, "brains": tuple(brain_ids) if brain_ids else None}
        params = parameters.resolve(options)
        progress, callback = stage_progress()
        with progress:
            root = synthesize_cohort(
                out,
                preset=params.preset_spec(),
                seed=params.seed,
                progress=callback,
                overwrite=overwrite,
            )
            if params.scans_only:
                from cortexgraph.scans.strip import strip_to_scans

                strip_to_scans(root, params.scan_format, progress=callback)
        console.print(f"[bold green]phantom cohort written to {root}[/]")
        if params.scans_only:
            console.print(
                f"scans and section lists in {root / 'scans'}; make each brain with "
                f"`cortexgraph ingest {root} <brain> --scans {root / 'scans'}/<brain>`"
            )

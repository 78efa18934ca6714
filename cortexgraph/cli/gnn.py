"""``cortexgraph train-gnn``, ``evaluate`` and ``predict``: node classifiers on the midsurface graphs.

A thin layer over :mod:`cortexgraph.gnn.stage` and :mod:`cortexgraph.gnn.evaluate` (docs/gnn.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainsArgument,
    DeviceOption,
    ParametersFile,
    StageFlags,
    check_device,
    command,
    console,
    log,
    parameters_group,
    progress_bar,
    with_progress,
)
from cortexgraph.errors import CortexgraphError


def _cohort_root(root: Path | None) -> Path:
    from cortexgraph.data.manifest import find_cohort

    return find_cohort(root).root


def _transfer_brain(cohort_root: Path, transfer: str | None) -> str | None:
    """The transfer brain given, ``none`` -> None; without one, B07 in a phantom cohort (the thesis's
    choice, Schiffer, PhD thesis, Sect. 6.1.4, made by ``cortexgraph synth``), else an error: a lab's cohort has no default."""
    from cortexgraph.errors import ParameterError

    if transfer is not None:
        return None if transfer.lower() == "none" else transfer
    if (cohort_root / "synth.json").is_file():
        return "B07"
    raise ParameterError(
        "which brain is the transfer brain (held out entirely, scored as an unseen brain)?",
        file=cohort_root / "cohort.toml",
        fix="pass --transfer BRAIN (the same brain the encoder held out), or --transfer none",
    )


#: the parameters dataclass of train-gnn (imported when the command runs)
PARAMETERS = "cortexgraph.gnn.parameters:TrainGNNParameters"


def _fmt(value) -> str:
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return "-"


def register(app: typer.Typer) -> None:
    @command(app, "train-gnn", parameters_group(PARAMETERS, "train-gnn"), STAGE)
    def train_gnn_cmd(
        model: str = typer.Option("gat", "--model", help="gat, sage, mlp or linear."),
        layers: int = typer.Option(3, "--layers", help="GNN/FC layers (3, 5, 7 in the method)."),
        features: str = typer.Option(
            "cy,pm,co", "--features", help="Comma-separated subset of cy, pm, co."
        ),
        transfer: str = typer.Option(
            None,
            "--transfer",
            help="Brain held out entirely ('none': train on all). Required on your own cohort; "
            "a phantom cohort defaults to B07 ('auto').",
        ),
        epochs: int = typer.Option(None, "--epochs", help="Epochs (default: the preset's)."),
        name: str = typer.Option(None, "--name", help="Run name (default: e.g. gat3-cy-pm-co)."),
        preset: str = typer.Option(
            "auto",
            "--preset",
            help="auto (seeds on a GPU, demo on a CPU), seeds (the method: width 512, 100 epochs; "
            "hours on a CPU) or demo (width 64, 6 epochs: a minute on a CPU). The preset and an "
            "estimate of the training time are printed before training.",
        ),
        hidden: int = typer.Option(None, "--hidden", help="Layer width (default: preset)."),
        batch_size: int = typer.Option(
            None, "--batch-size", help="Output nodes per step (default: preset)."
        ),
        lr: float = typer.Option(None, "--lr", help="LARS learning rate (default: preset)."),
        full_batch: bool = typer.Option(
            False, "--full-batch", help="One step per epoch on all graphs at once (small graphs)."
        ),
        sampler: str = typer.Option("auto", "--sampler", help="auto, own or pyg."),
        seed: int = typer.Option(0, "--seed", help="Random seed."),
        encoder: str = typer.Option(
            None,
            "--encoder",
            help="Encoder whose CY features to use (default: the only one computed for every "
            "training brain).",
        ),
        device: str = DeviceOption,
        *,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """Train a node classifier over all brains but the transfer brain.

        The run (derivatives/cortexgraph/runs/NAME) is reused when its settings and inputs are
        unchanged; an interrupted run of the same settings resumes from its last epoch.

        Every parameter (TrainGNNParameters) can be set in a TOML file given to --params (print
        one with --params-template); the options above win over the file. The run records the
        resolved settings: a rerun with the same values reuses it.
        """
        check_device(device)  # exit 2 before any work for a device this machine lacks
        from cortexgraph.gnn.stage import PRESETS, resolve_preset, train_gnn
        from cortexgraph.training.runtime import pick_device

        options = {
            "model": model,
            "layers": layers,
            "features": features,
            "transfer": transfer,
            "preset": preset,
            "epochs": epochs,
            "hidden": hidden,
            "batch_size": batch_size,
            "lr": lr,
            "full_batch": full_batch,
            "sampler": sampler,
            "seed": seed,
            "encoder": encoder,
        }
        # checked before the progress bar shows a run that cannot start
        params = parameters.resolve(options)
        cohort_root = _cohort_root(flags.root)
        transfer_brain = _transfer_brain(
            cohort_root, None if params.transfer == "auto" else params.transfer
        )
        chosen = resolve_preset(params.preset, pick_device(device).type)
        total = params.epochs or PRESETS.get(chosen, {}).get("epochs")
        with progress_bar(f"train-gnn {params.model}{params.layers}", total=total) as advance:

            def on_epoch(record: dict) -> None:
                advance(1)
                log.info(
                    "epoch %d: loss %.4f, train acc %.3f, %.1f s, %.0f nodes/s",
                    record["epoch"],
                    record["loss"],
                    record["train_acc"],
                    record["seconds"],
                    record["nodes_per_s"],
                )

            run_dir = train_gnn(
                cohort_root,
                **params.stage_arguments(),
                transfer=transfer_brain,
                name=name,
                device=device,
                **flags.stage_keywords,
                progress=on_epoch,
            )
        console.print(f"[bold green]run written to {run_dir}[/]")

    @command(app, "evaluate", STAGE)
    def evaluate_cmd(
        runs: list[str] = typer.Argument(
            None, metavar="RUNS", help="Run names or folders to score."
        ),
        compare: str = typer.Option(
            None,
            "--compare",
            help="depth or features: train (or reuse) and score the runs of the GNN paper's comparison.",
        ),
        preset: str = typer.Option(
            "auto", "--preset", help="Preset of runs trained by --compare (auto, seeds, demo)."
        ),
        epochs: int = typer.Option(None, "--epochs", help="Epochs of runs trained by --compare."),
        transfer: str = typer.Option("B07", "--transfer", help="Transfer brain for --compare."),
        seed: int = typer.Option(0, "--seed", help="Seed of runs trained by --compare."),
        device: str = DeviceOption,
        *,
        flags: StageFlags,
    ) -> None:
        """Macro F1 on test sections and on the transfer brain, per-area F1, comparisons."""
        check_device(device)  # exit 2 before any work for a device this machine lacks
        from rich.table import Table

        from cortexgraph.gnn.evaluate import compare_models, evaluate_run

        root = flags.root
        if not runs and not compare:
            raise CortexgraphError("nothing to evaluate", fix="name runs, or use --compare")
        table = Table("run", "test F1", "test nodes", "transfer F1", "transfer nodes")
        for run in runs or []:
            result = evaluate_run(run, root, device=device, **flags.stage_keywords)
            table.add_row(
                result["name"],
                _fmt(result["test_f1"]),
                str(result["test_nodes"]),
                _fmt(result["transfer_f1"]),
                str(result["transfer_nodes"]),
            )
            console.print(f"evaluation of {result['name']}: {result['evaluation_dir']}")
        if runs:
            console.print(table)
        if compare:
            from cortexgraph.gnn.evaluate import comparison_runs

            cohort_root = _cohort_root(root)
            total = len(comparison_runs(compare))
            with progress_bar(f"compare {compare}", total=total) as advance:
                tsv, png, rows = compare_models(
                    cohort_root,
                    compare,
                    transfer=None if transfer.lower() == "none" else transfer,
                    preset=preset,
                    epochs=epochs,
                    seed=seed,
                    device=device,
                    progress=lambda _m, _d, _t: advance(1),
                    **flags.stage_keywords,
                )
            comparison = Table("model", "test F1", "transfer F1")
            for row in rows:
                comparison.add_row(row["label"], _fmt(row["test_f1"]), _fmt(row["transfer_f1"]))
            console.print(comparison)
            console.print(f"[bold green]comparison written to {tsv} and {png}[/]")

    @command(app, "predict", STAGE)
    def predict_cmd(
        run: str = typer.Argument(..., metavar="RUN", help="Run name or folder."),
        brains: list[str] = BrainsArgument,
        device: str = DeviceOption,
        *,
        flags: StageFlags,
    ) -> None:
        """Per-node class probabilities (proba) and labels (pred) of one model run.

        Writes derivatives/cortexgraph/BRAIN/predictions/RUN/<hemi>.h5 (the graph files are not
        touched); reused when the run and the brain's features are unchanged.
        """
        check_device(device)  # exit 2 before any work for a device this machine lacks
        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.gnn.stage import cohort_of_run, predict_brain, resolve_run

        # every brain is checked before the first is predicted
        find_cohort(cohort_of_run(resolve_run(run, flags.root), flags.root)).require_listed(brains)
        for brain in brains:
            for path in with_progress(
                predict_brain, run, brain, flags.root, device=device, **flags.stage_keywords
            ):
                console.print(f"proba, pred of {run}: {path}", highlight=False, soft_wrap=True)

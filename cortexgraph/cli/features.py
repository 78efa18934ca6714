"""``cortexgraph train-encoder`` and ``cortexgraph features <brain>``."""

from __future__ import annotations

import json

import typer

from cortexgraph.cli.common import (
    STAGE,
    BrainArgument,
    DeviceOption,
    NoAmpOption,
    ParametersFile,
    StageFlags,
    check_device,
    command,
    console,
    log,
    on_brain,
    parameters_group,
    reuse_state,
    stage_progress,
)

#: the parameters dataclass of features (imported when the command runs)
FEATURES_PARAMETERS = "cortexgraph.features.parameters:FeaturesParameters"
#: the parameters dataclass of train-encoder
ENCODER_PARAMETERS = "cortexgraph.features.parameters:TrainEncoderParameters"
#: fields of TrainEncoderParameters whose option has another name
ENCODER_OPTION_NAMES = {
    "scl_epochs": "epochs",
    "recompute_batch_norm": "keep_running_bn",
    "distance_patches_per_brain": "distance_patches",
}


def _announce_encoder(
    cohort, preset, device: str, epochs: int | None = None, *, auto: bool = False
) -> None:
    """Before training: the preset (a name, ``auto``: by the image spacing, or the resolved
    :class:`~cortexgraph.features.presets.EncoderPreset`, picked by the image spacing where
    ``auto``), and on a CPU the estimated time (a timed training step of the preset's encoder on
    this machine, :func:`cortexgraph.features.presets.estimate_training_seconds`); a warning with
    the fix when it is more than a few hours. ``epochs`` replaces a named preset's SCL epochs."""
    from cortexgraph.features.presets import (
        GPU_PRESETS,
        estimate_training_seconds,
        get_preset,
        preset_for_spacing,
    )
    from cortexgraph.gnn.stage import _duration
    from cortexgraph.training.runtime import pick_device

    if isinstance(preset, str):
        auto = preset == "auto"
        spacing_um = cohort.brain(cohort.brain_ids[0]).spacing_of("image")
        preset = preset_for_spacing(spacing_um) if auto else get_preset(preset)
        if epochs is not None:
            preset = preset.with_overrides(scl_epochs=epochs)
    chosen = preset
    kind = pick_device(device).type
    how = " (auto: by the image spacing)" if auto else ""
    if kind != "cpu":
        log.info("train-encoder: preset %s%s on %s", chosen.name, how, kind)
        return
    seconds, _ = estimate_training_seconds(chosen, len(cohort.areas))
    log.info(
        "train-encoder: preset %s%s: %s, %d px patches, %d + %d epochs; about %s on this CPU "
        "(rough: one timed training step scaled to the run, as if all %d areas of the table had "
        "training patches)",
        chosen.name, how, chosen.encoder, chosen.patch_px, chosen.scl_epochs,
        chosen.linear_epochs, _duration(seconds), len(cohort.areas),
    )  # fmt: skip
    if chosen.name in GPU_PRESETS or seconds > 4 * 3600:
        log.warning(
            "train-encoder: preset %s is sized for GPUs (about %s here). Fix: run it on a GPU, or "
            "try the pipeline with --preset demo (4 mm patches at 100 um, a small encoder)",
            chosen.name,
            _duration(seconds),
        )


def register(app: typer.Typer) -> None:
    @command(app, "train-encoder", parameters_group(ENCODER_PARAMETERS, "train-encoder"), STAGE)
    def train_encoder_cmd(
        preset: str = typer.Option(
            "auto",
            help="Encoder preset: full, full-base, phantom-full, demo, tiny, or auto (by the "
            "cohort's image spacing).",
        ),
        name: str = typer.Option(None, help="Encoder name (output folder; default: the preset)."),
        seed: int = typer.Option(0, help="Seed of weights, resampling and augmentation."),
        device: str = DeviceOption,
        epochs: int = typer.Option(None, help="Override the preset's SCL epochs."),
        linear_epochs: int = typer.Option(None, help="Override the linear-evaluation epochs."),
        samples_per_area: int = typer.Option(None, help="Override patches per area and epoch."),
        batch_size: int = typer.Option(None, help="Override the batch size (patches per step)."),
        scl_lr: float = typer.Option(None, help="Override the SCL learning rate."),
        linear_lr: float = typer.Option(None, help="Override the linear-evaluation rate."),
        ce_lr: float = typer.Option(None, help="Override the CE baseline learning rate."),
        keep_running_bn: bool = typer.Option(
            False,
            "--keep-running-bn",
            help="Keep the batch-norm running averages of training (do not recompute them).",
        ),
        no_amp: bool = NoAmpOption,
        tsne: bool = typer.Option(False, "--tsne", help="Add a t-SNE panel to embedding.png."),
        transfer: str = typer.Option(
            None,
            "--transfer",
            help="Brain held out entirely (default: the preset's, B07); GNN runs that use this "
            "encoder must hold out the same brain. 'none' holds out no brain.",
        ),
        method: str = typer.Option(
            "scl",
            "--method",
            help="scl (supervised contrastive + linear evaluation, and the CE baseline) or "
            "distance (self-supervised Siamese pre-training on 3D distances between patches; needs "
            "build-graph of the brains).",
        ),
        init: str = typer.Option(
            None,
            "--init",
            help="Start the SCL and CE encoders from a distance pre-training of this name.",
        ),
        distance: str = typer.Option(
            "euclidean",
            "--distance",
            help="method distance: euclidean (3D, in the reconstruction) or geodesic (along the "
            "midsurface, as the publication).",
        ),
        branch: str = typer.Option(
            "features",
            "--branch",
            help="method distance: features (the preset's encoder; initialises SCL and CE) or "
            "lsm-hr (the high-resolution encoder of the local models; lsm chain --init-hr).",
        ),
        lsm_preset: str = typer.Option(
            "auto", "--lsm-preset", help="method distance, branch lsm-hr: the LSM model preset."
        ),
        distance_epochs: int = typer.Option(
            None, "--distance-epochs", help="method distance: epochs (default 16, as published)."
        ),
        distance_patches: int = typer.Option(
            None, "--distance-patches", help="method distance: training patches per brain (1500)."
        ),
        loader_workers: int = typer.Option(
            None,
            "--loader-workers",
            help="Processes that read patches while the model trains (default: 0 on 2 CPUs, "
            "else min(4, CPUs - 2)). Any number gives the same batches.",
        ),
        *,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """Train the patch encoder (SCL + linear evaluation) and the CE baseline of a cohort, or a
        distance pre-training (--method distance).

        Writes derivatives/cortexgraph/encoders/NAME/: encoder.pt, ce.pt, metrics.json (macro F1
        on test and transfer patches), confusion.png, embedding.png, patches.tsv, clusters.tsv;
        with --method distance: distance.pt, metrics.json, pairs.tsv (and for the features branch
        encoder.pt with a linear evaluation, clusters.tsv). Under torchrun every process takes one
        GPU (or one share of the CPU cores with the gloo back end).

        Every parameter (TrainEncoderParameters: these options, every field of the encoder preset
        and of the distance pre-training) can be set in a TOML file given to --params (print one
        with --params-template); the options given win over the file. The encoder records the
        resolved preset: a rerun with the same values reuses it, a changed value retrains it.
        """
        check_device(device)  # exit 2 before any work for a device this machine lacks
        import time

        from cortexgraph.data.manifest import find_cohort
        from cortexgraph.features.train import train_encoder

        options = {
            "preset": preset,
            "seed": seed,
            "transfer": transfer,
            "method": method,
            "init": init,
            "tsne": tsne,
            "distance": distance,
            "branch": branch,
            "lsm_preset": lsm_preset,
            "distance_epochs": distance_epochs,
            "distance_patches_per_brain": distance_patches,
            "scl_epochs": epochs,
            "linear_epochs": linear_epochs,
            "samples_per_area": samples_per_area,
            "batch_size": batch_size,
            "scl_lr": scl_lr,
            "linear_lr": linear_lr,
            "ce_lr": ce_lr,
            "recompute_batch_norm": False if keep_running_bn else None,
        }
        params = parameters.resolve(options, ENCODER_OPTION_NAMES)  # before the cohort is read
        started = time.time()
        cohort = find_cohort(flags.root)
        spec = params.preset_spec(cohort.brain(cohort.brain_ids[0]).spacing_of("image"))
        _announce_encoder(cohort, spec, device, auto=params.preset == "auto")
        from cortexgraph.derivatives import Derivatives, StageId

        progress, callback = stage_progress()
        with progress:
            path = train_encoder(
                cohort,
                spec,
                name,
                seed=params.seed,
                device=device,
                amp=not no_amp,
                **flags.stage_keywords,
                tsne=params.tsne,
                progress=callback,
                method=params.method,
                init=params.init,
                distance=params.distance_settings(),
                branch=params.branch,
                lsm_preset=params.lsm_preset,
                loader_workers=loader_workers,
            )
        record = Derivatives.of(cohort).record(StageId("train-encoder", None, (path.parent.name,)))
        reused = record is not None and record.started_unix < started
        if reused:
            console.print(f"encoder {path.parent.name}: up to date, reused", highlight=False)
        metrics_path = path.parent / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            if "test_pairs" in metrics:
                test = metrics["test_pairs"]
                console.print(
                    f"distance on {test['pairs']} test pairs: mean error {test['err_dist_mm']:.2f} "
                    f"mm (true mean {test['true_mean_mm']:.1f} mm), r {test['pearson_r']:.3f}",
                    highlight=False,
                )
                if test.get("collapsed") and reused:  # a fresh run has logged it already
                    from cortexgraph.features.distance import COLLAPSE_WARNING

                    name = path.parent.name
                    console.print(f"[yellow]warning: {COLLAPSE_WARNING.format(name=name)}[/]")
            for run in ("scl_linear", "ce", "linear"):
                scores = metrics.get(run, {})
                text = ", ".join(
                    f"{split} {scores[split]['macro_f1']:.3f}"
                    for split in ("test", "transfer")
                    if split in scores
                )
                if text:  # a distance pre-training has no SCL / CE runs, an lsm-hr one no linear
                    console.print(f"{run}: macro F1 {text}", highlight=False)
        console.print(f"[bold green]encoder written to {path}[/]")

    @command(app, "features", parameters_group(FEATURES_PARAMETERS, "features"), STAGE)
    def features_cmd(
        brain: str = BrainArgument,
        encoder: str = typer.Option(
            None,
            "--encoder",
            help="Encoder name under derivatives/cortexgraph/encoders/ (default: the preset for "
            "the brain's image spacing).",
        ),
        test_every: int = typer.Option(
            5,
            "--test-every",
            help="Every TEST_EVERY-th annotated section is a test section of the node labels "
            "(keep the encoder's: 5).",
        ),
        test_offset: int = typer.Option(
            4, "--test-offset", help="Position of the test section in each run (0-based; 4)."
        ),
        device: str = DeviceOption,
        no_amp: bool = NoAmpOption,
        *,
        parameters: ParametersFile,
        flags: StageFlags,
    ) -> None:
        """Node features of a brain's graphs: CO and PM (node-priors), Y and the train/test split
        (node-labels), CY of one encoder (features@ENCODER).

        Each set goes to its own files under derivatives/cortexgraph/BRAIN/features/ (the graph
        files are not touched) and is reused while its inputs are unchanged.

        Every parameter (FeaturesParameters) can be set in a TOML file given to --params (print
        one with --params-template); the options above win over the file. The stages record the
        resolved values: a rerun with the same values reuses the outputs.
        """
        check_device(device)  # exit 2 before any work for a device this machine lacks
        from cortexgraph.features.nodes import compute_node_features

        options = {"encoder": encoder, "test_every": test_every, "test_offset": test_offset}
        params = parameters.resolve(options)
        brain_obj, results = on_brain(
            brain,
            flags,
            compute_node_features,
            params.encoder,
            device=device,
            amp=not no_amp,
            test_every=params.test_every,
            test_offset=params.test_offset,
        )
        for stage, info in results.items():
            if info["reused"]:
                console.print(f"{stage}: {reuse_state(info)}", highlight=False)
                continue
            parts = []
            for hemi in ("lh", "rh"):
                if hemi not in info:
                    continue
                h = info[hemi]
                if stage == "cy":
                    parts.append(
                        f"{hemi} {h['nodes']} nodes, {h['patches']} patches, "
                        f"{h['filled_by_neighbours'] + h['filled_by_mean']} filled"
                    )
                elif stage == "labels":
                    parts.append(
                        f"{hemi} {h['labelled_nodes']} labelled (train {h['train_nodes']}, "
                        f"test {h['test_nodes']})"
                    )
                else:
                    parts.append(f"{hemi} {h['nodes']} nodes, {h['co']['sampled']} CO sampled")
            console.print(
                f"{stage}: {reuse_state(info)}: {'; '.join(parts)}",
                highlight=False,
                soft_wrap=True,
            )
        console.print(f"[bold green]features of {brain_obj.id} up to date[/]")

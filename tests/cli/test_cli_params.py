"""``--params FILE.toml`` and ``--params-template`` of train-gnn, features, train-encoder, lsm
chain/gsm/train/predict and synth (docs/conventions.md, "Parameters"; the same idiom as build-graph,
tests/cli/test_cli_build_graph.py).

The stages are replaced by stand-ins that record what they were given, except one short GNN
training (synthetic graphs) that checks what the run records, reuses and recomputes, and an encoder
"training" (the stage's record and reuse decision, the computation a stand-in)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.derivatives.parameters import (
    NO_VALUE,
    overrides_of,
    parameters_as_toml,
    parameters_template,
    read_parameters,
)
from cortexgraph.errors import CortexgraphError, ParameterError
from cortexgraph.features.parameters import FeaturesParameters, TrainEncoderParameters
from cortexgraph.gnn.parameters import TrainGNNParameters
from cortexgraph.lsm.parameters import NOT_OVERRIDES, LSMParameters, LSMPredictParameters
from cortexgraph.synth.parameters import SynthParameters

runner = CliRunner()

TEMPLATES = [
    (["train-gnn"], TrainGNNParameters),
    (["features"], FeaturesParameters),
    (["train-encoder"], TrainEncoderParameters),
    (["lsm", "chain"], LSMParameters),
    (["lsm", "gsm"], LSMParameters),
    (["lsm", "train"], LSMParameters),
    (["lsm", "predict"], LSMPredictParameters),
    (["synth"], SynthParameters),
]


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich may wrap long lines


@pytest.mark.parametrize(("command", "cls"), TEMPLATES, ids=lambda v: getattr(v, "__name__", "-"))
def test_template_reads_back_as_the_defaults(tmp_path, command, cls):
    result = runner.invoke(app, [*command, "--params-template"])  # no arguments needed
    assert result.exit_code == 0, result.output
    path = tmp_path / "params.toml"
    path.write_text(result.stdout, encoding="utf-8")
    assert read_parameters(cls, path, stage=" ".join(command)) == cls()
    keys = [line.split(" = ")[0] for line in result.stdout.splitlines() if " = " in line]
    assert [k for k in keys if not k.startswith("#")] == [f.name for f in dataclasses.fields(cls)]


def test_every_field_of_the_configuration_dataclasses_is_a_parameter():
    from cortexgraph.gnn.models import KINDS
    from cortexgraph.gnn.parameters import MODELS
    from cortexgraph.lsm.networks import LSMConfig
    from cortexgraph.synth.presets import Preset

    lsm = {f.name for f in dataclasses.fields(LSMParameters)}
    config = {f.name for f in dataclasses.fields(LSMConfig)}
    assert config - set(NOT_OVERRIDES) <= lsm and config - lsm == {"arch", "n_classes", "in_channels"}
    synth = {f.name for f in dataclasses.fields(SynthParameters)}
    assert {f.name for f in dataclasses.fields(Preset)} - synth == {"name", "extra"}
    assert MODELS == KINDS


def test_every_encoder_and_distance_setting_is_a_parameter():
    from cortexgraph.features import distance
    from cortexgraph.features import parameters as fp
    from cortexgraph.features.presets import EncoderPreset
    from cortexgraph.lsm.config import PRESETS as LSM_PRESETS

    encoder = {f.name for f in dataclasses.fields(TrainEncoderParameters)}
    # the name is --name (the output folder); transfer_brain is the own field transfer
    preset = {f.name for f in dataclasses.fields(EncoderPreset)}
    assert preset - encoder == {"name", "transfer_brain"}
    settings, params = distance.DistanceSettings(), TrainEncoderParameters()
    assert params.distance_settings() == settings.as_dict()  # the same defaults, every field
    assert (fp.BRANCHES, fp.DISTANCES) == (distance.BRANCHES, distance.DISTANCES)
    assert fp.LSM_PRESETS == LSM_PRESETS


@pytest.mark.parametrize(
    ("command", "text", "words"),
    [
        (["train-gnn"], "sampeler = \"own\"\n", ["unknown train-gnn parameter", "sampler?"]),
        (["train-gnn"], "layer = 2\n", ["unknown train-gnn parameter 'layer'", "layers?"]),
        (["train-gnn"], 'epochs = "many"\n', ["epochs", "is not an integer or \"none\""]),
        (["features", "B01"], "test_evry = 4\n", ["'test_evry'", "test_every?"]),
        (["features", "B01"], "test_offset = 7\n", ["test_offset = 7", "0..4"]),
        (["lsm", "chain", "B01", "--area", "hOc1"], "base_rl = 0.1\n", ["'base_rl'", "base_lr?"]),
        (["lsm", "train", "B01", "--area", "hOc1", "--sections", "1,2"], 'base_lr = "fast"\n',
         ["base_lr", "is not a number"]),  # fmt: skip
        (["lsm", "gsm", "B01", "--area", "hOc1"], "momentum = 1.5\n", ["momentum = 1.5", "[0, 1)"]),
        (["synth", "OUT"], "image_spacing = 50.0\n", ["'image_spacing'", "image_spacing_um?"]),
        (["synth", "OUT"], "transition_mm = -1.0\n", ["transition_mm = -1.0", ">= 0"]),
        (["synth", "OUT"], "slab_posterior_mm = true\n",
         ["slab_posterior_mm = true", 'a number, false (no value) or "none"']),  # fmt: skip
        (["synth", "OUT"], "image_spacing_um = false\n",
         ["image_spacing_um = false", 'is not a number or "none"']),  # fmt: skip
        (["train-encoder"], "scl_epoch = 3\n", ["unknown train-encoder parameter", "scl_epochs?"]),
        (["train-encoder"], 'ce_epochs = "many"\n', ["ce_epochs", "false (no value)"]),
        (["train-encoder"], "distance_lr = 0\n", ["distance_lr = 0", "a number > 0"]),
        (["train-encoder"], 'transfer = ""\n', ["transfer = ''", '"none"']),
        (["lsm", "predict", "B01", "--area", "hOc1"], "tile = 32\n", ["'tile'", "tile_px?"]),
        (["lsm", "predict", "B01", "--area", "hOc1"], "predict_batch_size = 0\n",
         ["predict_batch_size = 0", "1..4096", "--batch-size"]),  # fmt: skip
    ],
)
def test_bad_parameters_file_exits_2_naming_file_key_and_fix(tmp_path, command, text, words):
    """The file is read before the cohort is looked up: an empty folder does."""
    path = tmp_path / "p.toml"
    path.write_text(text, encoding="utf-8")
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    root = [] if command[0] == "synth" else ["--root", str(tmp_path)]
    result = runner.invoke(app, [*argv, *root, "--params", str(path)])
    assert result.exit_code == 2, result.output
    message = _flat(result.output)
    assert str(path) in message and "Fix:" in message
    for word in words:
        assert word in message, message
    assert not (tmp_path / "out").exists()


def test_train_gnn_file_reaches_the_stage_and_options_win(tmp_path, monkeypatch):
    import cortexgraph.gnn.stage as stage
    from cortexgraph.gnn.synthetic import write_synthetic_cohort

    root = write_synthetic_cohort(tmp_path / "cohort", ("B01", "B07"), rows=4, cols=4, num_areas=2,
                                  cy_dim=2, section_every=1, annotate_every=1)  # fmt: skip
    seen = {}

    def fake_train_gnn(cohort_root, **kwargs):
        seen.update(kwargs)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(stage, "train_gnn", fake_train_gnn)
    path = tmp_path / "gnn.toml"
    path.write_text(
        'model = "sage"\nlayers = 5\nlr = 0.05\ntransfer = "none"\nfeatures = "pm,co"\n', "utf-8"
    )
    args = ["train-gnn", "--root", str(root), "--params", str(path), "--layers", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert seen["model"] == "sage" and seen["layers"] == 2  # the option wins over the file's 5
    assert seen["lr"] == pytest.approx(0.05, abs=0) and seen["features"] == "pm,co"
    assert seen["transfer"] is None  # "none": no transfer brain
    assert seen["preset"] == "auto" and seen["epochs"] is None  # left out: the defaults

    seen.clear()  # without a file: the options as before
    result = runner.invoke(app, ["train-gnn", "--root", str(root), "--transfer", "B07"])
    assert result.exit_code == 2 and seen["transfer"] == "B07" and seen["model"] == "gat"
    assert seen["layers"] == 3 and seen["lr"] is None


@pytest.mark.slow
def test_train_gnn_records_the_file_values_reuses_and_recomputes(tmp_path):
    """A short training (synthetic graphs, 1 epoch of width 8): the run records the file's rate;
    the same file reuses the run; another rate retrains it."""
    from cortexgraph.derivatives import Derivatives, StageId
    from cortexgraph.gnn.synthetic import write_synthetic_cohort

    root = write_synthetic_cohort(tmp_path / "cohort", ("B01", "B07"), rows=4, cols=4, num_areas=2,
                                  cy_dim=2, section_every=1, annotate_every=1)  # fmt: skip
    path = tmp_path / "gnn.toml"
    text = 'model = "mlp"\nlayers = 1\nepochs = 1\nhidden = 8\npreset = "demo"\ntransfer = "B07"\n'
    path.write_text(text + "lr = 0.05\n", encoding="utf-8")
    args = ["train-gnn", "--root", str(root), "--params", str(path), "--device", "cpu"]
    args += ["--name", "p1"]
    store, sid = Derivatives(root), StageId("train-gnn", None, ("p1",))

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    record = store.record(sid)
    assert record is not None
    assert record.parameters["lr"] == pytest.approx(0.05, abs=0)
    assert record.parameters["hidden"] == 8 and record.parameters["model"] == "mlp"
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date" in again.output
    assert store.record(sid).started_unix == record.started_unix
    path.write_text(text + "lr = 0.02\n", encoding="utf-8")
    changed = runner.invoke(app, args)
    assert changed.exit_code == 0 and "parameter lr changed (0.05 -> 0.02)" in changed.output
    assert store.record(sid).parameters["lr"] == pytest.approx(0.02, abs=0)


def test_features_file_reaches_the_stage_and_options_win(tiny_cohort, tmp_path, monkeypatch):
    import cortexgraph.features.nodes as nodes

    seen = {}

    def fake_features(brain, encoder, **kwargs):
        seen.update(kwargs, encoder=encoder)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(nodes, "compute_node_features", fake_features)
    path = tmp_path / "features.toml"
    path.write_text('encoder = "mine"\ntest_every = 6\ntest_offset = 2\n', encoding="utf-8")
    args = ["features", "B01", "--root", str(tiny_cohort), "--params", str(path)]
    result = runner.invoke(app, [*args, "--test-offset", "5"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert seen["encoder"] == "mine" and seen["test_every"] == 6 and seen["test_offset"] == 5
    seen.clear()
    result = runner.invoke(app, ["features", "B01", "--root", str(tiny_cohort)])
    assert (seen["encoder"], seen["test_every"], seen["test_offset"]) == (None, 5, 4)


def test_lsm_file_reaches_the_run_and_options_win(tiny_cohort, tmp_path, monkeypatch):
    """The file's model configuration reaches the run's LSMConfig (what each model's training
    stage records); its run settings reach LSMRun; an option wins; --background passes the file
    on to the job."""
    import cortexgraph.cli.lsm as cli_lsm
    import cortexgraph.lsm.stages as stages
    from cortexgraph.lsm.config import make_config

    runs = []

    def fake_run(run, *args):
        runs.append(run)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(stages, "run_chain", fake_run)
    monkeypatch.setattr(stages, "run_interval", fake_run)
    path = tmp_path / "lsm.toml"
    path.write_text(
        'preset = "tiny"\niterations = 20\nbase_lr = 0.005\nbatch_size = 4\n'
        "predict_batch_size = 2\nstep = 3\nrotation_deg = 10\n",
        encoding="utf-8",
    )
    common = ["B01", "--root", str(tiny_cohort), "--area", "hOc1", "--arch", "hr"]
    result = runner.invoke(app, ["lsm", "chain", *common, "--params", str(path), "--step", "4"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    run = runs[-1]
    assert run.step == 4 and run.iterations == 20 and run.batch_size == 2  # --step wins
    preset = make_config("hr", run.brain.spacing_of("image"), preset="tiny", iterations=20)
    assert preset.base_lr != 0.005 and preset.batch_size != 4  # the file changes them
    # the file's values; everything else the tiny preset's
    assert run.config == dataclasses.replace(preset, base_lr=0.005, batch_size=4, rotation_deg=10.0)

    result = runner.invoke(app, ["lsm", "train", *common, "--sections", "722,842", "--params",
                                 str(path), "--batch-size", "5"])  # fmt: skip
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert runs[-1].batch_size == 5 and runs[-1].config.base_lr == pytest.approx(0.005, abs=0)

    result = runner.invoke(app, ["lsm", "chain", *common])  # no file: the defaults as before
    assert result.exit_code == 2 and runs[-1].config_overrides == {}
    assert (runs[-1].step, runs[-1].batch_size, runs[-1].preset) == (2, 8, "auto")

    launched = []
    monkeypatch.setattr(cli_lsm, "_launch", lambda brain, argv, name: launched.append(argv))
    result = runner.invoke(app, ["lsm", "chain", *common, "--params", str(path), "--background"])
    assert result.exit_code == 0, result.output
    argv = launched[0]
    assert argv[argv.index("--params") + 1] == str(path.resolve())
    assert argv[argv.index("--step") + 1] == "3" and argv[argv.index("--batch-size") + 1] == "2"


def test_synth_file_reaches_the_generator_and_options_win(tmp_path, monkeypatch):
    """The file's preset numbers reach the generator (and so synth.json's ``parameters``); an
    option wins; without a file the preset is the named one, unchanged."""
    import cortexgraph.synth.cohort as cohort
    from cortexgraph.synth.presets import get_preset

    seen = {}

    def fake_synthesize(out, preset, seed=0, progress=None, **kwargs):
        seen.update(preset=preset, seed=seed, **kwargs)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(cohort, "synthesize_cohort", fake_synthesize)
    path = tmp_path / "synth.toml"
    path.write_text(
        'preset = "tiny"\nseed = 3\nimage_spacing_um = 80.0\ntransition_mm = 1.0\n'
        'brains = ["B01", "B07"]\nmapped_area_fraction = [0.5, 0.9]\n',
        encoding="utf-8",
    )
    out = str(tmp_path / "out")
    result = runner.invoke(app, ["synth", out, "--params", str(path), "--transition-mm", "0.5"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    spec, tiny = seen["preset"], get_preset("tiny")
    assert seen["seed"] == 3 and spec.name == "tiny" and spec.brains == ("B01", "B07")
    assert spec.image_spacing_um == pytest.approx(80.0, abs=0)
    assert spec.transition_mm == pytest.approx(0.5, abs=0)  # the option wins over 1.0
    assert spec.mapped_area_fraction == pytest.approx((0.5, 0.9), abs=0)
    assert spec.mask_spacing_um == tiny.mask_spacing_um  # not in the file: the preset's
    recorded = json.loads(json.dumps(cohort.synth_description(spec, ["B01", "B07"], 3)))
    assert recorded["parameters"]["image_spacing_um"] == pytest.approx(80.0, abs=0)

    result = runner.invoke(app, ["synth", out, "--preset", "tiny", "--brains", "B01"])
    assert result.exit_code == 2
    assert seen["preset"] == dataclasses.replace(tiny, brains=("B01",)) and seen["seed"] == 0
    params = SynthParameters(preset="tiny", brains=("B01",))
    assert overrides_of(params) == {"brains": ("B01",)} and params.preset_spec() == seen["preset"]


def test_train_encoder_file_reaches_the_stage_and_options_win(tiny_cohort, tmp_path, monkeypatch):
    """The file's preset fields reach train_encoder as the resolved preset (what its record holds);
    an option wins; without a file the preset is the one for the image spacing, unchanged."""
    import cortexgraph.cli.features as cli_features
    import cortexgraph.features.train as train
    from cortexgraph.features.presets import get_preset

    seen = {}

    def fake_train_encoder(cohort, preset, name, **kwargs):
        seen.update(kwargs, preset=preset, name=name)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(train, "train_encoder", fake_train_encoder)
    # the estimate times a training step: not needed here
    monkeypatch.setattr(cli_features, "_announce_encoder", lambda *args, **kwargs: None)
    path = tmp_path / "encoder.toml"
    path.write_text(
        'preset = "tiny"\nseed = 7\nscl_epochs = 2\nscl_lr = 0.05\ntemperature = 0.1\n'
        'transfer = "none"\nencoder_kwargs = {widths = [8, 16], padding = "same"}\n'
        "distance_epochs = 3\ndistance_lr = 0.02\n",
        encoding="utf-8",
    )
    args = ["train-encoder", "--root", str(tiny_cohort), "--params", str(path)]
    result = runner.invoke(app, [*args, "--epochs", "3", "--keep-running-bn"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    tiny = get_preset("tiny")
    expected = dataclasses.replace(
        tiny, scl_epochs=3, scl_lr=0.05, temperature=0.1, transfer_brain="",  # --epochs wins
        encoder_kwargs={"widths": [8, 16], "padding": "same"}, recompute_batch_norm=False,
    )  # fmt: skip
    assert seen["preset"] == expected and seen["seed"] == 7 and seen["name"] is None
    assert seen["distance"]["epochs"] == 3 and seen["distance"]["lr"] == pytest.approx(0.02, abs=0)
    assert seen["distance"]["patches_per_brain"] == 1500 and seen["method"] == "scl"

    seen.clear()  # without a file: the preset for the image spacing (160 um: tiny), as before
    result = runner.invoke(app, ["train-encoder", "--root", str(tiny_cohort), "--transfer", "B03"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert seen["preset"] == dataclasses.replace(tiny, transfer_brain="B03") and seen["seed"] == 0


def test_train_encoder_records_the_file_values_reuses_and_retrains(
    tiny_cohort, tmp_path, monkeypatch
):
    """The encoder's stage record holds the resolved preset: the same file reuses the encoder, a
    changed value retrains it (the training itself a stand-in that writes encoder.pt)."""
    import shutil

    import cortexgraph.cli.features as cli_features
    import cortexgraph.features.train as train
    from cortexgraph.derivatives import Derivatives, StageId

    root = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, root)
    trained = []

    def fake_training(cohort, preset, name, out, **kwargs):
        trained.append(preset)
        out.mkdir(parents=True, exist_ok=True)
        (out / "encoder.pt").write_bytes(repr(preset).encode())
        return [out / "encoder.pt"], {}

    monkeypatch.setattr(train, "_train_encoder", fake_training)
    monkeypatch.setattr(cli_features, "_announce_encoder", lambda *args, **kwargs: None)
    path = tmp_path / "encoder.toml"
    text = 'preset = "tiny"\nsamples_per_area = 4\n'
    path.write_text(text + "scl_lr = 0.05\n", encoding="utf-8")
    args = ["train-encoder", "--root", str(root), "--params", str(path), "--name", "p1"]
    store, sid = Derivatives(root), StageId("train-encoder", None, ("p1",))

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    record = store.record(sid)
    assert record is not None and len(trained) == 1
    assert record.parameters["preset"]["scl_lr"] == pytest.approx(0.05, abs=0)
    assert record.parameters["preset"]["samples_per_area"] == 4
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "up to date, reused" in again.output, again.output
    assert len(trained) == 1 and store.record(sid).started_unix == record.started_unix
    path.write_text(text + "scl_lr = 0.02\n", encoding="utf-8")
    changed = runner.invoke(app, args)
    assert changed.exit_code == 0 and "reused" not in changed.output, changed.output
    assert len(trained) == 2 and trained[-1].scl_lr == pytest.approx(0.02, abs=0)
    assert store.record(sid).parameters["preset"]["scl_lr"] == pytest.approx(0.02, abs=0)


def test_lsm_predict_file_reaches_the_stage_and_options_win(tiny_cohort, tmp_path, monkeypatch):
    import cortexgraph.cli.lsm as cli_lsm
    import cortexgraph.lsm.stages as stages

    runs = []

    def fake_predict(run):
        runs.append(run)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(stages, "predict_stage", fake_predict)
    path = tmp_path / "predict.toml"
    path.write_text("tile_px = 32\npredict_batch_size = 3\n", encoding="utf-8")
    common = ["lsm", "predict", "B01", "--root", str(tiny_cohort), "--area", "hOc1"]
    result = runner.invoke(app, [*common, "--params", str(path), "--batch-size", "5"])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    assert (runs[-1].tile_px, runs[-1].batch_size) == (32, 5)  # --batch-size wins over 3
    result = runner.invoke(app, [*common, "--params", str(path)])
    assert (runs[-1].tile_px, runs[-1].batch_size) == (32, 3)
    result = runner.invoke(app, common)  # no file: the defaults as before
    assert (runs[-1].tile_px, runs[-1].batch_size) == (64, 8)

    launched = []
    monkeypatch.setattr(cli_lsm, "_launch", lambda brain, argv, name: launched.append(argv))
    result = runner.invoke(app, [*common, "--params", str(path), "--background"])
    assert result.exit_code == 0, result.output
    argv = launched[0]  # the job gets the resolved values
    assert argv[argv.index("--tile-px") + 1] == "32" and argv[argv.index("--batch-size") + 1] == "3"


def test_false_gives_a_preset_field_no_value_and_none_keeps_the_presets(tmp_path, monkeypatch):
    """``slab_posterior_mm = false``: a whole brain at the tiny preset's resolution (the generator
    a stand-in); ``"none"`` keeps the preset's slab; the template says so; ``false`` is refused
    where the preset's field needs a value; LSM's ``output_patch_um`` and the encoder's
    ``ce_epochs`` take it too."""
    import cortexgraph.synth.cohort as cohort
    from cortexgraph.synth.presets import get_preset

    seen = {}

    def fake_synthesize(out, preset, seed=0, progress=None, **kwargs):
        seen.update(preset=preset)
        raise CortexgraphError("stopped by the test")

    monkeypatch.setattr(cohort, "synthesize_cohort", fake_synthesize)
    whole = tmp_path / "whole.toml"
    whole.write_text("slab_posterior_mm = false\n", encoding="utf-8")
    out = str(tmp_path / "out")
    result = runner.invoke(app, ["synth", out, "--preset", "tiny", "--params", str(whole)])
    assert result.exit_code == 2 and "stopped by the test" in result.output, result.output
    tiny = get_preset("tiny")
    assert tiny.slab_posterior_mm == pytest.approx(24.0, abs=0)
    assert seen["preset"] == dataclasses.replace(tiny, slab_posterior_mm=None)  # the whole brain
    params = read_parameters(SynthParameters, whole, stage="synth")
    assert params.slab_posterior_mm is NO_VALUE
    assert overrides_of(params) == {"slab_posterior_mm": None}
    again = tmp_path / "again.toml"  # written back, read back
    again.write_text(parameters_as_toml(params), encoding="utf-8")
    assert "slab_posterior_mm = false\n" in again.read_text()
    assert read_parameters(SynthParameters, again, stage="synth") == params

    whole.write_text('slab_posterior_mm = "none"\n', encoding="utf-8")
    kept = read_parameters(SynthParameters, whole, stage="synth")
    assert dataclasses.replace(kept, preset="tiny").preset_spec() == tiny  # the preset's 24 mm

    template = " ".join(parameters_template(SynthParameters, stage="synth").split())
    assert "false gives slab_posterior_mm no value (e.g. slab_posterior_mm = false)" in template
    assert "false = the whole brain" in template and "full false)" in template
    with pytest.raises(ParameterError, match="image_spacing_um must have a value"):
        SynthParameters(preset="tiny", image_spacing_um=NO_VALUE)  # type: ignore[arg-type]

    lsm = tmp_path / "lsm.toml"
    lsm.write_text("output_patch_um = false\n", encoding="utf-8")
    assert overrides_of(read_parameters(LSMParameters, lsm, stage="lsm chain")) == {
        "output_patch_um": None
    }
    encoder = tmp_path / "encoder.toml"
    encoder.write_text('preset = "tiny"\nce_epochs = false\nscl_epochs = 5\n', encoding="utf-8")
    params_encoder = read_parameters(TrainEncoderParameters, encoder, stage="train-encoder")
    spec = params_encoder.preset_spec(160.0)
    assert spec.ce_epochs is None and spec.ce_epoch_budget == 5 + 4  # scl + linear epochs of tiny

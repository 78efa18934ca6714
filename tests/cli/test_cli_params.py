"""``--params FILE.toml`` and ``--params-template`` of train-gnn, features, lsm chain/gsm/train and
synth (docs/conventions.md, "Parameters"; the same idiom as build-graph, tests/cli/test_cli_build_graph.py).

The stages are replaced by stand-ins that record what they were given, except one short GNN
training (synthetic graphs) that checks what the run records, reuses and recomputes."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from cortexgraph.cli.main import app
from cortexgraph.derivatives.parameters import overrides_of, read_parameters
from cortexgraph.errors import CortexgraphError
from cortexgraph.features.parameters import FeaturesParameters
from cortexgraph.gnn.parameters import TrainGNNParameters
from cortexgraph.lsm.parameters import NOT_OVERRIDES, LSMParameters
from cortexgraph.synth.parameters import SynthParameters

runner = CliRunner()

TEMPLATES = [
    (["train-gnn"], TrainGNNParameters),
    (["features"], FeaturesParameters),
    (["lsm", "chain"], LSMParameters),
    (["lsm", "gsm"], LSMParameters),
    (["lsm", "train"], LSMParameters),
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

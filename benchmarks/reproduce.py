"""Reproduction harness: the publications' experiments on several phantom cohorts, one command.

For every cohort (one phantom seed x one area seed; the harder phantom options on by default) the
harness runs the experiments of the publications through the ``cortexgraph`` command line, one
subprocess per command, exactly as a user would:

* **encoder** (Schiffer et al. 2021, ISBI; Schiffer, PhD thesis, Sect. 7.1): ``train-encoder``
  trains the supervised contrastive (SCL) encoder with its linear evaluation and the cross-entropy
  (CE) baseline; macro F1 on test and transfer patches from ``metrics.json``.
* **GNN** (Schiffer et al. 2021, MICCAI; thesis Sect. 7.2): ``evaluate --compare features`` (GAT3
  and MLP3 on every combination of CY, PM, CO) and ``evaluate --compare depth`` (linear, MLP, SAGE,
  GAT at 3 / 5 / 7 layers on CY); test and transfer macro F1 from the comparison tables.
* **local models** (Schiffer et al. 2021, NeuroImage; thesis Sect. 5): ``lsm chain`` and ``lsm gsm``
  with the HR, LR and MS architectures on one area of one brain, ``lsm evaluate``; median and mean
  F1 on the left-out annotated sections and against the phantom's full truth.
* **volumes** (Schiffer et al. 2021, NeuroImage, Sect. 2.5): ``stats`` of the area from the true
  labels, from the GNN's projected labels on the transfer brain and from the MS local models,
  against the phantom's exact volumes (``ground_truth/<brain>/area_measures.tsv``).

The harness computes nothing itself: it orchestrates the commands, reads their outputs, and
aggregates them over cohorts into ``docs/reproduction.md``: for every published ordering (the list
:data:`CLAIMS`, from docs/features.md, docs/gnn.md, docs/lsm.md and docs/maps3d.md), the mean and
standard deviation over cohorts of both sides, how many cohorts it holds in, and the verdict.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/reproduce.py reproduction-output \\
        --scale tiny --seeds 1,2,3 --area-seeds 11,12 --jobs 1

Outputs, under the output folder::

    cohorts/s<seed>-a<area seed>/cohort/         the phantom cohort and all its derivatives
    cohorts/s<seed>-a<area seed>/results.json    raw results of the cohort (``complete`` when done)
    cohorts/s<seed>-a<area seed>/results.tsv     the same, one metric per line
    cohorts/s<seed>-a<area seed>/logs/<step>.log the output of every command
    claims.tsv                                   per claim and cohort: both sides, margin, holds
    summary.json                                 the aggregate of every claim, the run's settings
    reproduce.log                                progress (also printed)

and ``--doc`` (default docs/reproduction.md). A cohort whose ``results.json`` is complete and was
made with the same settings is skipped (resume: run the same command again); inside a cohort the
stages themselves reuse their up-to-date outputs (docs/derivatives.md), so an interrupted cohort
continues where it stopped. ``--aggregate-only`` rewrites the tables and the page from the results
present.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

#: the phantom presets the harness runs, and the settings of its experiments per scale
SCALES = {
    "tiny": {
        "brains": ("B01", "B03", "B07"),
        "gnn_preset": "demo",
        "gnn_epochs": None,
        "lsm_iterations": 60,
        "lsm_preset": "auto",
    },
    "demo": {
        "brains": ("B01", "B03", "B05", "B07"),
        "gnn_preset": "demo",
        "gnn_epochs": None,
        "lsm_iterations": 150,
        "lsm_preset": "auto",
    },
}
#: what each scale can and cannot show (printed on the page)
SCALE_NOTES = {
    "tiny": (
        "**Weak evidence.** The `tiny` phantom has 3 brains (2 training brains and the transfer "
        "brain B07), images at 160 µm, every 60th section digitized (1.2 mm) and annotated with "
        "60 % of the areas; the encoder and GNN presets are sized for seconds, the local models "
        "train 60 iterations (published: 3000). Few classes are shared between the training "
        "brains and the transfer brain, the local models are scored on very few left-out "
        "sections, and one seed of the learners per cohort adds its own noise. The numbers say "
        "whether the harness and the orderings behave, not whether the publications reproduce."
    ),
    "demo": (
        "The `demo` phantom (4 brains, 100 µm images, sections 0.6 mm apart) with the CPU presets "
        "of the encoder, the GNN (`--preset demo`) and the local models (150 iterations; "
        "published: 3000): stronger evidence than `tiny`, still far below the published scale."
    ),
}
TRANSFER = "B07"
LSM_BRAIN = "B01"

#: the steps of one cohort, in order
STEPS = (
    "synth",
    "build-graph",
    "train-encoder",
    "features",
    "compare-features",
    "compare-depth",
    "gnn-labels",
    "lsm",
    "volumes",
)


# ------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class Settings:
    """What one harness run computes (everything that changes a cohort's results)."""

    scale: str = "tiny"
    profile_variability: float = 0.1
    transition_mm: float = 1.0
    transform_noise_deg: float | None = None
    transform_noise_um: float | None = None
    area: str = "hOc1"
    lsm_iterations: int | None = None
    gnn_epochs: int | None = None

    def key(self) -> str:
        """A short hash of the settings; a cohort's results are reused only under the same key."""
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def cohort_name(seed: int, area_seed: int) -> str:
    return f"s{seed}-a{area_seed}"


# ---------------------------------------------------------------------------------- running


class Reporter:
    """Progress lines to the terminal and to ``reproduce.log`` (thread-safe)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.lock = threading.Lock()
        log_path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        with self.lock:
            print(line, flush=True)
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def cortexgraph_command() -> list[str]:
    """The ``cortexgraph`` entry point of this Python environment."""
    script = Path(sys.executable).with_name("cortexgraph")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "cortexgraph.cli.main"]


@contextlib.contextmanager
def exclusive_folder(out: Path, script: str):
    """One run of ``script`` per work folder at a time (a second one would take the first's
    unfinished synth for an interrupted one and delete it): holds ``OUT/<script>.lock`` (the
    stages' lock, :class:`cortexgraph.derivatives.lock.StageLock`) and yields True, or prints who
    holds it and yields False."""
    from cortexgraph.derivatives.lock import StageLock
    from cortexgraph.errors import StageBusyError

    lock = StageLock(out / f"{script}.lock", f"{script} on {out}")
    try:
        lock.acquire()
    except StageBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@dataclass
class BenchFolder:
    """What a benchmark built on this harness works with: progress (``report``), the commands'
    environment (``env``: OMP_NUM_THREADS=1 unless set) and its ``results.json`` read back
    (``results``; empty when absent) at ``results_path``."""

    report: Reporter
    env: dict[str, str]
    results_path: Path
    results: dict


@contextlib.contextmanager
def bench_folder(out: Path, script: str):
    """Open the work folder of a benchmark script: creates it, holds it
    (:func:`exclusive_folder`), yields a :class:`BenchFolder` with the progress log
    ``OUT/<script>.log``, or None when another run holds the folder."""
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_folder(out, script) as held:
        if not held:
            yield None
            return
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        path = out / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        yield BenchFolder(Reporter(out / f"{script}.log"), env, path, results)


class CommandFailed(RuntimeError):
    pass


def seconds_so_far(earlier: dict | None, spent: float) -> dict:
    """The wall time of a step or run over every invocation that ran it: ``{"seconds":
    earlier + spent, "invocations": n}``. A rerun that finds the work up to date adds only the
    seconds it took to find that, so an interrupted and resumed step keeps the time of both
    halves instead of reporting the resumed half alone."""
    earlier = earlier or {}
    return {
        "seconds": float(earlier.get("seconds", 0.0)) + float(spent),
        "invocations": int(earlier.get("invocations", 1 if earlier else 0)) + 1,
    }


def run_command(args: Sequence[str], log_path: Path, env: dict[str, str]) -> dict:
    """Run ``cortexgraph ARGS``; output to ``log_path``. Returns seconds, load, exit code.

    Raises CommandFailed (with the last lines of the log) on a non-zero exit status."""
    argv = cortexgraph_command() + [str(a) for a in args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"$ cortexgraph {shlex.join(str(a) for a in args)}\n")
        fh.flush()
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.perf_counter() - start
    load1 = os.getloadavg()[0]
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise CommandFailed(
            f"`cortexgraph {shlex.join(str(a) for a in args)}` exited {proc.returncode} "
            f"(log {log_path}):\n" + "\n".join(tail)
        )
    return {"seconds": seconds, "load": (load0 + load1) / 2, "exit": proc.returncode}


def _write_json(path: Path, data) -> None:
    """Atomic JSON write (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(type(value).__name__)


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(
            csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        )


# ------------------------------------------------------------------------- reading the outputs


def feature_label(model: str, layers: int, features: str) -> str:
    """``GAT3-CY/PM/CO`` / ``Linear-CY`` from a comparison table row."""
    name = {"gat": "GAT", "sage": "SAGE", "mlp": "MLP", "linear": "Linear"}[model]
    depth = "" if model == "linear" else str(layers)
    parts = features.replace("+", "/").replace(",", "/").split("/")
    feats = "/".join(f.strip().upper() for f in parts if f.strip())
    return f"{name}{depth}-{feats}"


def read_comparison(path: Path) -> dict[str, dict]:
    """A ``comparisons/<mode>.tsv`` table -> {label: {run, test_f1, transfer_f1}}."""
    out = {}
    for row in read_tsv(path):
        label = feature_label(row["model"], int(row["layers"]), row["features"])
        out[label] = {
            "run": row["run"],
            "test_f1": _float(row["test_f1"]),
            "transfer_f1": _float(row["transfer_f1"]),
        }
    return out


def read_stats(path: Path) -> dict[str, float]:
    """``<area>_stats.tsv`` -> {hemisphere: volume (mm^3, as measured)}."""
    out = {}
    for row in read_tsv(path):
        hemi = row.get("hemisphere") or row.get("hemi")
        for key in ("volume_mm3", "volume"):
            if key in row:
                out[hemi] = _float(row[key])
                break
    return out


def read_true_volumes(path: Path, area: str) -> dict[str, float]:
    """``ground_truth/<brain>/area_measures.tsv`` -> {lh, rh, both: exact volume mm^3}."""
    out: dict[str, float] = {}
    for row in read_tsv(path):
        if row["name"] == area:
            out[row["hemisphere"]] = _float(row["volume_mm3"])
    if out:
        out["both"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------- one cohort


def synth_args(root: Path, seed: int, area_seed: int, settings: Settings) -> list[str]:
    """The ``cortexgraph synth`` arguments of a cohort of the harness."""
    args = ["synth", str(root), "--preset", settings.scale, "--seed", str(seed)]
    args += ["--area-seed", str(area_seed)]
    args += ["--profile-variability", str(settings.profile_variability)]
    args += ["--transition-mm", str(settings.transition_mm)]
    if settings.transform_noise_deg is not None:
        args += ["--transform-noise-deg", str(settings.transform_noise_deg)]
    if settings.transform_noise_um is not None:
        args += ["--transform-noise-um", str(settings.transform_noise_um)]
    return args


def ensure_phantom(
    root: Path,
    seed: int,
    area_seed: int,
    bench: BenchFolder,
    log_path: Path,
    *,
    scale: str = "demo",
    extra: Sequence[str] = (),
) -> float:
    """Make the harness's phantom at ``root`` unless it is complete there (``synth_args`` plus
    ``extra`` arguments); returns the seconds spent. A folder holding an unfinished phantom is
    refused (SystemExit), never deleted: a benchmark script does not delete what it did not make
    in this run."""
    if (root / "cohort.toml").is_file() and (root / "synth.json").is_file():
        return 0.0
    if root.exists():
        raise SystemExit(f"error: {root} holds an unfinished phantom; delete it")
    bench.report(f"[{root.parent.name}] synth")
    args = [*synth_args(root, seed, area_seed, Settings(scale=scale)), *extra]
    return float(run_command(args, log_path, bench.env)["seconds"])


def comparison_args(
    root: Path, mode: str, preset: str, seed: int, epochs: int | None
) -> tuple[list[str], Path]:
    """The ``cortexgraph evaluate --compare MODE`` arguments of the harness (transfer brain
    :data:`TRANSFER`) and the comparison table they write."""
    from cortexgraph.gnn.stage import run_suffix

    args = ["evaluate", "--root", str(root), "--compare", mode, "--preset", preset]
    args += ["--seed", str(seed), "--transfer", TRANSFER]
    if epochs is not None:
        args += ["--epochs", str(epochs)]
    suffix = run_suffix(preset, TRANSFER, seed, epochs)
    return args, root / "derivatives/cortexgraph/comparisons" / f"{mode}{suffix}.tsv"


def run_cohort(
    folder: Path,
    seed: int,
    area_seed: int,
    settings: Settings,
    env: dict[str, str],
    report: Callable[[str], None],
) -> dict:
    """Run every step of one cohort (stages reuse what is up to date); returns its results.

    Writes ``results.json`` after every step (``complete`` False until the last), and
    ``results.tsv`` at the end."""
    scale = SCALES[settings.scale]
    name = cohort_name(seed, area_seed)
    root = folder / "cohort"
    logs = folder / "logs"
    results_path = folder / "results.json"
    earlier = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if earlier.get("settings_key") != settings.key():
        earlier = {}  # another settings' run: its seconds are not this run's
    results: dict = {
        "cohort": name,
        "seed": seed,
        "area_seed": area_seed,
        "settings": settings.__dict__,
        "settings_key": settings.key(),
        "complete": False,
        "steps": {},
    }
    gnn_preset = scale["gnn_preset"]
    gnn_epochs = settings.gnn_epochs if settings.gnn_epochs is not None else scale["gnn_epochs"]
    iterations = settings.lsm_iterations or scale["lsm_iterations"]
    area = settings.area
    R = ["--root", str(root)]

    def step(label: str, commands: list[list[str]]) -> None:
        total = {"seconds": 0.0, "load": [], "commands": []}
        report(f"[{name}] {label}: {len(commands)} command(s)")
        for args in commands:
            r = run_command(args, logs / f"{label}.log", env)
            total["seconds"] += r["seconds"]
            total["load"].append(r["load"])
            total["commands"].append("cortexgraph " + shlex.join(args))
        total["load"] = sum(total["load"]) / len(total["load"])
        report(f"[{name}] {label}: done in {total['seconds']:.0f} s (load {total['load']:.1f})")
        total.update(seconds_so_far(earlier.get("steps", {}).get(label), total["seconds"]))
        results["steps"][label] = total
        _write_json(results_path, results)

    synth = synth_args(root, seed, area_seed, settings)
    if not (root / "cohort.toml").is_file() or not (root / "synth.json").is_file():
        if root.exists():  # an interrupted synth: the generator wants a fresh folder
            shutil.rmtree(root)
        step("synth", [synth])
    else:
        results["steps"]["synth"] = earlier.get("steps", {}).get("synth") or {
            "seconds": 0.0, "load": 0.0, "commands": ["(reused)"], "invocations": 0,
        }  # fmt: skip
    brains = list(scale["brains"])

    step("build-graph", [["build-graph", *brains, *R, "--no-qc-picture"]])

    step("train-encoder", [["train-encoder", *R, "--seed", str(seed)]])
    encoders = sorted((root / "derivatives/cortexgraph/encoders").glob("*/metrics.json"))
    metrics = json.loads(encoders[0].read_text())
    results["encoder"] = {
        method: {split: metrics[key][split]["macro_f1"] for split in ("train", "test", "transfer")}
        for method, key in (("scl", "scl_linear"), ("ce", "ce"))
    }

    step("features", [["features", b, *R] for b in brains])

    gnn: dict[str, dict] = {}
    for mode in ("features", "depth"):
        args, table = comparison_args(root, mode, gnn_preset, seed, gnn_epochs)
        step(f"compare-{mode}", [args])
        gnn.update(read_comparison(table))
    results["gnn"] = gnn

    # the best published model's labels on the transfer brain
    run = gnn["GAT3-CY/PM/CO"]["run"]
    step(
        "gnn-labels",
        [
            ["predict", run, TRANSFER, *R],
            ["project", TRANSFER, "--run", run, "--overlays", "0", "--no-contours", *R],
        ],
    )

    lsm_opts = ["--area", area, "--arch", "hr,lr,ms", "--iterations", str(iterations)]
    lsm_opts += ["--seed", str(seed), "--preset", scale["lsm_preset"]]
    step(
        "lsm",
        [
            ["lsm", "chain", LSM_BRAIN, *lsm_opts, "--allow-long-intervals", *R],
            ["lsm", "gsm", LSM_BRAIN, *lsm_opts, *R],
            ["lsm", "evaluate", LSM_BRAIN, "--area", area, *R],
        ],
    )
    results["lsm"] = read_lsm_scores(
        root, {f"{k}-{a}": f"{k}-{a}" for k in ("lsm", "gsm") for a in ("hr", "lr", "ms")}
    )

    sources = [
        (TRANSFER, f"gnn-{run}", "gnn"),
        (TRANSFER, "truth", "truth"),
        (LSM_BRAIN, "lsm-ms", "lsm-ms"),
        (LSM_BRAIN, "truth", "truth"),
    ]
    step("volumes", [stats_args(root, b, src, area) for b, src, _ in sources])
    results["volumes"] = read_volumes(root, sources, area)

    results["seconds"] = sum(s["seconds"] for s in results["steps"].values())
    results["complete"] = True
    _write_json(results_path, results)
    _write_text(folder / "results.tsv", results_tsv(results))
    return results


LSM_STATS = ("n", "median", "mean", "std", "truth_n", "truth_median", "truth_mean")


def read_lsm_scores(root: Path, runs: Mapping[str, str]) -> dict[str, dict]:
    """``{source: {n, median, mean, std, truth_n, truth_median, truth_mean}}`` of the LSM brain's
    model runs (``runs``: ``{source: run name}``), from each run's ``evaluation/summary.json``."""
    out = {}
    for source, run in runs.items():
        summary = root / f"derivatives/cortexgraph/{LSM_BRAIN}/lsm/{run}/evaluation/summary.json"
        row = json.loads(summary.read_text(encoding="utf-8"))["table"][0]
        out[source] = {k: row[k] for k in LSM_STATS}
    return out


def stats_args(root: Path, brain: str, labels: str, area: str) -> list[str]:
    """The ``cortexgraph stats`` arguments that measure ``area``'s volume in the map of
    ``labels`` (a label source: ``truth``, a model run)."""
    return ["stats", brain, "--labels", labels, "--area", area, "--reference", "none",
            "--root", str(root)]  # fmt: skip


def read_volumes(root: Path, sources: Sequence[tuple[str, str, str]], area: str) -> dict[str, dict]:
    """``{brain: {label: {lh, rh, both: mm^3}, "exact": {...}}}`` for ``sources`` given as
    ``(brain, label source, label)``: the volumes :func:`stats_args` measured, and the exact ones
    of the phantom's ground truth."""
    volumes: dict[str, dict] = {}
    for brain, src, label in sources:
        measured = read_stats(
            root / f"derivatives/cortexgraph/{brain}/maps3d/{src}/{area}_stats.tsv"
        )
        volumes.setdefault(brain, {})[label] = measured
    for brain in volumes:
        volumes[brain]["exact"] = read_true_volumes(
            root / f"ground_truth/{brain}/area_measures.tsv", area
        )
    return volumes


def results_tsv(results: dict) -> str:
    """One line per metric: ``group  item  metric  value``."""
    lines = ["group\titem\tmetric\tvalue"]
    for method, splits in results.get("encoder", {}).items():
        for split, value in splits.items():
            lines.append(f"encoder\t{method}\t{split}_macro_f1\t{value:.4f}")
    for label, row in results.get("gnn", {}).items():
        for metric in ("test_f1", "transfer_f1"):
            lines.append(f"gnn\t{label}\t{metric}\t{row[metric]:.4f}")
    for source, row in results.get("lsm", {}).items():
        for metric, value in row.items():
            lines.append(f"lsm\t{source}\t{metric}\t{_float(value):.4f}")
    for brain, by_source in results.get("volumes", {}).items():
        for source, hemis in by_source.items():
            for hemi, value in hemis.items():
                lines.append(f"volume\t{brain}/{source}\t{hemi}_mm3\t{_float(value):.2f}")
    for label, s in results.get("steps", {}).items():
        lines.append(f"time\t{label}\tseconds\t{s['seconds']:.1f}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- the claims


@dataclass(frozen=True)
class Claim:
    """A published ordering: ``left`` beats ``right`` (``margin = left - right > 0``; with
    ``ties_hold`` a margin of 0 counts as holding).

    measure : results dict -> (left, right), or None when the cohort cannot test it.
    """

    key: str
    group: str
    statement: str
    source: str
    left: str
    right: str
    measure: Callable[[dict], tuple[float, float] | None]
    ties_hold: bool = False


def _gnn(r: dict, label: str, split: str = "test") -> float:
    return float(r["gnn"][label][f"{split}_f1"])


def _min_margin(pairs: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The pair with the smallest left - right (the claim holds for all iff it holds for it)."""
    pairs = [p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])]
    return min(pairs, key=lambda p: p[0] - p[1]) if pairs else None


FEATURE_SETS = ("CY", "PM", "CO", "CY/PM", "CY/CO", "PM/CO", "CY/PM/CO")


def _best_other(r: dict, best: str, candidates: Sequence[str], split: str):
    others = [_gnn(r, c, split) for c in candidates if c != best]
    return _gnn(r, best, split), max(others)


def _lsm(r: dict, source: str, stat: str) -> float:
    return _float(r["lsm"][source][stat])


def _spreads(r: dict, sources: Sequence[str], min_sections: int = 3):
    """The s.d. of the test-section F1 of each source; None (untestable) where a source was
    scored on fewer than ``min_sections`` left-out sections (one section has no spread)."""
    if any(_lsm(r, s, "n") < min_sections for s in sources):
        return None
    return tuple(_lsm(r, s, "std") for s in sources)


def _volume_error_pct(r: dict, brain: str, source: str) -> float:
    measured = r["volumes"][brain][source]
    exact = r["volumes"][brain]["exact"]
    both = measured.get("both", sum(v for k, v in measured.items() if k in ("lh", "rh")))
    return 100.0 * (both - exact["both"]) / exact["both"]


def _gnn_claims() -> list[Claim]:
    g = "GNN (Schiffer et al. 2021, MICCAI; Schiffer, PhD thesis, Sect. 7.2)"
    out = [
        Claim(
            "gnn-gat-beats-mlp-features",
            g,
            "GAT3 beats MLP3 for every feature set (test F1; smallest margin)",
            "docs/gnn.md",
            "GAT3",
            "MLP3",
            lambda r: _min_margin(
                [(_gnn(r, f"GAT3-{f}"), _gnn(r, f"MLP3-{f}")) for f in FEATURE_SETS]
            ),
        ),
        Claim(
            "gnn-gnn-beats-mlp-depth",
            g,
            "every GNN (GAT, SAGE at 3/5/7 layers) beats the MLP of the same depth on CY (test F1; smallest margin)",
            "docs/gnn.md",
            "GNN",
            "MLP",
            lambda r: _min_margin(
                [
                    (_gnn(r, f"{m}{d}-CY"), _gnn(r, f"MLP{d}-CY"))
                    for m in ("GAT", "SAGE")
                    for d in (3, 5, 7)
                ]
            ),
        ),
        Claim(
            "gnn-mlp-not-above-linear",
            g,
            "MLP3 is not better than the linear classifier on CY (test F1)",
            "docs/gnn.md",
            "Linear-CY",
            "MLP3-CY",
            lambda r: (_gnn(r, "Linear-CY"), _gnn(r, "MLP3-CY")),
            True,
        ),
        Claim(
            "gnn-gat-above-sage",
            g,
            "GAT is above SAGE at every depth on CY (test F1; smallest margin)",
            "docs/gnn.md",
            "GAT",
            "SAGE",
            lambda r: _min_margin(
                [(_gnn(r, f"GAT{d}-CY"), _gnn(r, f"SAGE{d}-CY")) for d in (3, 5, 7)]
            ),
        ),
        Claim(
            "gnn-gat-stable-depth",
            g,
            "GAT is stable across depth: GAT7-CY within 0.05 test F1 of GAT3-CY (right: the absolute difference)",
            "docs/gnn.md",
            "0.05",
            "abs(GAT7 - GAT3)",
            lambda r: (0.05, abs(_gnn(r, "GAT7-CY") - _gnn(r, "GAT3-CY"))),
            True,
        ),
        Claim(
            "gnn-pm-raises",
            g,
            "adding PM to CY raises GAT3 test F1",
            "docs/gnn.md",
            "GAT3-CY/PM",
            "GAT3-CY",
            lambda r: (_gnn(r, "GAT3-CY/PM"), _gnn(r, "GAT3-CY")),
        ),
        Claim(
            "gnn-co-raises",
            g,
            "adding CO to CY raises GAT3 test F1",
            "docs/gnn.md",
            "GAT3-CY/CO",
            "GAT3-CY",
            lambda r: (_gnn(r, "GAT3-CY/CO"), _gnn(r, "GAT3-CY")),
        ),
        Claim(
            "gnn-pm-more-than-co",
            g,
            "PM adds more than CO (GAT3 test F1 of CY+PM above CY+CO)",
            "docs/gnn.md; issue table",
            "GAT3-CY/PM",
            "GAT3-CY/CO",
            lambda r: (_gnn(r, "GAT3-CY/PM"), _gnn(r, "GAT3-CY/CO")),
        ),
        Claim(
            "gnn-all-features-best-test",
            g,
            "GAT3 with CY+PM+CO is the best GAT3 feature set (test F1; right: best other set)",
            "docs/gnn.md; issue table",
            "GAT3-CY/PM/CO",
            "best other GAT3",
            lambda r: _best_other(r, "GAT3-CY/PM/CO", [f"GAT3-{f}" for f in FEATURE_SETS], "test"),
        ),
        Claim(
            "gnn-all-features-best-transfer",
            g,
            "GAT3 with CY+PM+CO is the best GAT3 feature set (transfer F1; right: best other set)",
            "docs/gnn.md; issue table",
            "GAT3-CY/PM/CO",
            "best other GAT3",
            lambda r: _best_other(
                r, "GAT3-CY/PM/CO", [f"GAT3-{f}" for f in FEATURE_SETS], "transfer"
            ),
        ),
        Claim(
            "gnn-transfer-below-test",
            g,
            "transfer F1 is below test F1 (GAT3-CY/PM/CO)",
            "docs/gnn.md; issue table",
            "test",
            "transfer",
            lambda r: (_gnn(r, "GAT3-CY/PM/CO"), _gnn(r, "GAT3-CY/PM/CO", "transfer")),
        ),
        Claim(
            "gnn-transfer-rises-with-priors",
            g,
            "transfer F1 rises when PM or CO is added to CY (GAT3; smallest of the two gains)",
            "docs/gnn.md",
            "GAT3-CY/PM, GAT3-CY/CO",
            "GAT3-CY",
            lambda r: _min_margin(
                [
                    (_gnn(r, f"GAT3-{f}", "transfer"), _gnn(r, "GAT3-CY", "transfer"))
                    for f in ("CY/PM", "CY/CO")
                ]
            ),
        ),
    ]
    return out


def _lsm_claims() -> list[Claim]:
    g = "Local models (Schiffer et al. 2021, NeuroImage; Schiffer, PhD thesis, Sect. 5, Table 5.1)"
    archs = ("hr", "lr", "ms")
    return [
        Claim(
            "lsm-beats-gsm-test",
            g,
            "the LSM beats the GSM for every architecture (median F1 on left-out sections; smallest margin)",
            "docs/lsm.md; issue table",
            "LSM",
            "GSM",
            lambda r: _min_margin(
                [(_lsm(r, f"lsm-{a}", "median"), _lsm(r, f"gsm-{a}", "median")) for a in archs]
            ),
        ),
        Claim(
            "lsm-beats-gsm-truth",
            g,
            "the LSM beats the GSM for every architecture (median F1 against the full truth; smallest margin)",
            "docs/lsm.md; issue table",
            "LSM",
            "GSM",
            lambda r: _min_margin(
                [
                    (_lsm(r, f"lsm-{a}", "truth_median"), _lsm(r, f"gsm-{a}", "truth_median"))
                    for a in archs
                ]
            ),
        ),
        Claim(
            "lsm-ms-best",
            g,
            "LSM-MS is the best model (median F1 on left-out sections; right: best other model)",
            "docs/lsm.md; issue table",
            "LSM-MS",
            "best other",
            lambda r: (
                _lsm(r, "lsm-ms", "median"),
                max(_lsm(r, s, "median") for s in r["lsm"] if s != "lsm-ms"),
            ),
        ),
        Claim(
            "lsm-ms-best-truth",
            g,
            "LSM-MS is the best model (median F1 against the full truth; right: best other model)",
            "docs/lsm.md",
            "LSM-MS",
            "best other",
            lambda r: (
                _lsm(r, "lsm-ms", "truth_median"),
                max(_lsm(r, s, "truth_median") for s in r["lsm"] if s != "lsm-ms"),
            ),
        ),
        Claim(
            "lsm-worst-beats-best-gsm",
            g,
            "the worst LSM beats the best GSM (median F1 against the full truth)",
            "docs/lsm.md",
            "worst LSM",
            "best GSM",
            lambda r: (
                min(_lsm(r, f"lsm-{a}", "truth_median") for a in archs),
                max(_lsm(r, f"gsm-{a}", "truth_median") for a in archs),
            ),
        ),
        Claim(
            "lsm-lr-beats-hr",
            g,
            "LR beats HR among the local models (median F1 on left-out sections)",
            "docs/lsm.md",
            "LSM-LR",
            "LSM-HR",
            lambda r: (_lsm(r, "lsm-lr", "median"), _lsm(r, "lsm-hr", "median")),
        ),
        Claim(
            "lsm-less-spread",
            g,
            "the local models vary less than the global ones (s.d. of F1 on left-out sections, MS: GSM s.d. above LSM s.d.)",
            "docs/lsm.md",
            "GSM-MS s.d.",
            "LSM-MS s.d.",
            lambda r: _spreads(r, ("gsm-ms", "lsm-ms")),
        ),
    ]


def _volume_claims(area: str) -> list[Claim]:
    g = "Volumes (Schiffer et al. 2021, NeuroImage, Sect. 2.5)"
    return [
        Claim(
            "volume-truth-labels",
            g,
            f"{area} volume of the map of the true labels within 5 % of the exact volume (both hemispheres, {LSM_BRAIN}; right: the absolute error, %)",
            "docs/maps3d.md",
            "5 %",
            "abs. error %",
            lambda r: (5.0, abs(_volume_error_pct(r, LSM_BRAIN, "truth"))),
            True,
        ),
        Claim(
            "volume-lsm-ms",
            g,
            f"{area} volume of the LSM-MS maps within a few % (7 %) of the exact volume ({LSM_BRAIN})",
            "docs/maps3d.md; issue table",
            "7 %",
            "abs. error %",
            lambda r: (7.0, abs(_volume_error_pct(r, LSM_BRAIN, "lsm-ms"))),
            True,
        ),
        Claim(
            "volume-lsm-as-close-as-truth",
            g,
            f"the LSM-MS volume is as close to the exact volume as the map of the true labels (within 2 percentage points; {LSM_BRAIN})",
            "docs/maps3d.md",
            "abs. error of true labels + 2",
            "abs. error of LSM-MS",
            lambda r: (
                abs(_volume_error_pct(r, LSM_BRAIN, "truth")) + 2.0,
                abs(_volume_error_pct(r, LSM_BRAIN, "lsm-ms")),
            ),
            True,
        ),
    ]


def _encoder_claims() -> list[Claim]:
    g = "Encoder (Schiffer et al. 2021, ISBI; Schiffer, PhD thesis, Sect. 7.1)"
    return [
        Claim(
            "encoder-scl-beats-ce-test",
            g,
            "SCL features (linear evaluation) beat the CE baseline (macro F1, test patches)",
            "docs/features.md; issue table",
            "SCL",
            "CE",
            lambda r: (r["encoder"]["scl"]["test"], r["encoder"]["ce"]["test"]),
        ),
        Claim(
            "encoder-scl-beats-ce-transfer",
            g,
            "SCL features (linear evaluation) beat the CE baseline (macro F1, transfer patches)",
            "docs/features.md; issue table",
            "SCL",
            "CE",
            lambda r: (r["encoder"]["scl"]["transfer"], r["encoder"]["ce"]["transfer"]),
        ),
        Claim(
            "encoder-transfer-below-test",
            g,
            "transfer F1 is below test F1 for both encoders (smallest margin)",
            "docs/features.md",
            "test",
            "transfer",
            lambda r: _min_margin(
                [(r["encoder"][m]["test"], r["encoder"][m]["transfer"]) for m in ("scl", "ce")]
            ),
        ),
    ]


def claims(area: str = "hOc1") -> list[Claim]:
    """Every published ordering the harness checks, grouped by experiment."""
    return _encoder_claims() + _gnn_claims() + _lsm_claims() + _volume_claims(area)


CLAIMS = claims()


# ------------------------------------------------------------------------------- aggregation


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than 2 values) of the finite
    values; (NaN, NaN) when there are none."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def measure_claim(claim: Claim, result: dict) -> dict | None:
    """One cohort's test of a claim: left, right, margin, holds; None when untestable there."""
    try:
        pair = claim.measure(result)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if pair is None:
        return None
    left, right = float(pair[0]), float(pair[1])
    if not (math.isfinite(left) and math.isfinite(right)):
        return None
    margin = left - right
    holds = margin >= 0 if claim.ties_hold else margin > 0
    return {"left": left, "right": right, "margin": margin, "holds": bool(holds)}


def aggregate_claim(claim: Claim, results: Sequence[dict]) -> dict:
    """The claim over cohorts: per cohort measurement, mean and s.d. of both sides and the margin,
    the number of cohorts where it holds, and the verdict.

    Verdicts: ``holds`` (in every tested cohort), ``holds in the mean`` (mean margin on the claim's
    side, not in every cohort), ``does not hold`` (mean margin on the wrong side), ``untested``
    (no cohort could test it)."""
    per = {}
    for r in results:
        m = measure_claim(claim, r)
        if m is not None:
            per[r.get("cohort", str(len(per)))] = m
    n = len(per)
    left = mean_sd([m["left"] for m in per.values()])
    right = mean_sd([m["right"] for m in per.values()])
    margin = mean_sd([m["margin"] for m in per.values()])
    held = sum(m["holds"] for m in per.values())
    if n == 0:
        verdict = "untested"
    elif held == n:
        verdict = "holds"
    elif margin[0] >= 0 if claim.ties_hold else margin[0] > 0:
        verdict = "holds in the mean"
    else:
        verdict = "does not hold"
    return {
        "key": claim.key,
        "group": claim.group,
        "statement": claim.statement,
        "source": claim.source,
        "left_label": claim.left,
        "right_label": claim.right,
        "n": n,
        "held": held,
        "left_mean": left[0],
        "left_sd": left[1],
        "right_mean": right[0],
        "right_sd": right[1],
        "margin_mean": margin[0],
        "margin_sd": margin[1],
        "verdict": verdict,
        "per_cohort": per,
    }


def aggregate(results: Sequence[dict], claim_list: Sequence[Claim] | None = None) -> list[dict]:
    return [aggregate_claim(c, results) for c in (claim_list or CLAIMS)]


def metric_table(results: Sequence[dict]) -> list[tuple[str, str, float, float, int]]:
    """Mean and s.d. over cohorts of every raw metric (``group``, ``item``, mean, sd, n)."""
    values: dict[tuple[str, str], list[float]] = {}
    for r in results:
        for method, splits in r.get("encoder", {}).items():
            for split, v in splits.items():
                values.setdefault(("encoder", f"{method.upper()} {split}"), []).append(v)
        for label, row in r.get("gnn", {}).items():
            values.setdefault(("gnn", f"{label} test"), []).append(row["test_f1"])
            values.setdefault(("gnn", f"{label} transfer"), []).append(row["transfer_f1"])
        for source, row in r.get("lsm", {}).items():
            name = source.upper()
            if source == "lsm-ms":  # the sections scored (the same plan for every model)
                values.setdefault(("lsm", "left-out sections scored"), []).append(_float(row["n"]))
                values.setdefault(("lsm", "truth sections scored"), []).append(
                    _float(row["truth_n"])
                )
            values.setdefault(("lsm", f"{name} median (test sections)"), []).append(
                _float(row["median"])
            )
            values.setdefault(("lsm", f"{name} median (truth)"), []).append(
                _float(row["truth_median"])
            )
        for brain, by_source in r.get("volumes", {}).items():
            for source in by_source:
                if source == "exact":
                    continue
                try:
                    err = _volume_error_pct(r, brain, source)
                except (KeyError, ZeroDivisionError):
                    continue
                values.setdefault(("volume", f"{brain} {source} error %"), []).append(err)
    out = []
    for (group, item), v in values.items():
        m, s = mean_sd(v)
        out.append((group, item, m, s, len([x for x in v if math.isfinite(_float(x))])))
    return out


# -------------------------------------------------------------------------------- the page


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _pm(mean: float, sd: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if not math.isfinite(sd) else f" ± {sd:.{digits}f}")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def budget_info(command: str, loads: Sequence[float], seconds: float) -> dict:
    """The run's description for :func:`budget_run_lines`: the command, this machine, the range
    of the load averages read around the commands, their wall time, today's date."""
    return {
        "command": command,
        "machine": machine_description(),
        "load_min": min(loads),
        "load_max": max(loads),
        "minutes": seconds / 60.0,
        "date": time.strftime("%Y-%m-%d"),
    }


def budget_run_lines(
    info: dict, cohorts: str, what: str, minutes_are: str = "in the invocation that wrote this page"
) -> list[str]:
    """The run's description on the page of a budget script (bench_gnn_epochs,
    bench_lsm_iterations): command, cohorts, machine, load, run time, date. ``info`` holds
    ``command``, ``machine``, ``load_min``, ``load_max``, ``minutes`` and ``date``; ``what`` names
    the commands the load was read around; ``minutes_are`` says whose wall time ``minutes`` is."""
    return [
        f"* Command: `{info['command']}`",
        f"* Cohorts: {cohorts} (phantom options `--profile-variability 0.1 --transition-mm 1.0`, "
        "as in the harness)",
        f"* Machine: {info['machine']}; no GPU.",
        f"* Load: load average (1 min) {info['load_min']:.1f}-{info['load_max']:.1f} during the "
        f"{what}; other jobs shared the machine",
        f"* Run time: {info['minutes']:.1f} min of command wall time {minutes_are}",
        f"* Date: {info['date']}",
    ]


def budget_claim_table(
    results: dict, budgets: Sequence[int], claim_list: Sequence[Claim], unit: str
) -> list[str]:
    """The table of a budget script: one row per claim, one column per budget (``unit``: epochs,
    iterations) with the margin's mean ± s.d. over cohorts and the cohorts where it held.
    ``results``: ``{cohort: {str(budget): harness-like results}}``."""
    names = sorted(results)
    lines = [
        "| ordering (published) | "
        + " | ".join(f"{b} {unit}: margin (held)" for b in budgets)
        + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for claim in claim_list:
        cells = []
        for b in budgets:
            a = aggregate_claim(claim, [results[n][str(b)] for n in names if str(b) in results[n]])
            cells.append(
                f"{_pm(a['margin_mean'], a['margin_sd'])} ({a['held']}/{a['n']})"
                if a["n"] else "n/a"
            )  # fmt: skip
        lines.append(f"| {claim.statement} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "(margin: left - right of the ordering, as in docs/reproduction.md; positive: it holds.)",
    ]
    return lines


def table_section(title: str, first: str, columns: Sequence[str]) -> list[str]:
    """The lines that open a page section holding one table: a blank line, ``## title``, a blank
    line, the header (``first`` then ``columns``) and its rule."""
    return [
        "",
        f"## {title}",
        "",
        f"| {first} | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]


def budget_seconds_section(
    results: dict, budgets: Sequence[int], unit: str, title: str, commands: str
) -> list[str]:
    """The seconds section of a budget script: heading ``title``, what the seconds are (the wall
    time of the ``commands`` over every invocation, :func:`seconds_so_far`), and the
    seconds per cohort and budget (``results[cohort][str(budget)]["seconds"]``)."""
    lines = ["", f"## {title}", ""]
    lines += [
        f"Wall time of the {commands}, summed over every invocation of the script that ran "
        "them (:func:`seconds_so_far`; a rerun that finds a run up to date adds only the "
        "seconds it took to find that).",
        "",
    ]
    lines += ["| cohort | " + " | ".join(f"{b} {unit}" for b in budgets) + " |"]
    lines += ["|---|" + "---|" * len(budgets)]
    for n in sorted(results):
        cells = [f"{results[n][str(b)]['seconds']:.0f}" if str(b) in results[n] else "n/a"
                 for b in budgets]  # fmt: skip
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


READING_START, READING_END = "<!-- reading -->", "<!-- /reading -->"


def kept_reading(page: str) -> str:
    """The hand-written reading of the numbers in an existing page (between READING_START and
    READING_END, markers included), kept when the page is rewritten; "" when there is none."""
    start, end = page.find(READING_START), page.find(READING_END)
    if start < 0 or end < start:
        return ""
    return page[start : end + len(READING_END)]


def render_page(
    aggregates: Sequence[dict],
    results: Sequence[dict],
    run_info: dict,
    missing: Sequence[str] = (),
    reading: str = "",
) -> str:
    """docs/reproduction.md from the aggregates, the raw results and the run's description;
    ``reading`` (:func:`kept_reading`) goes after the orderings."""
    lines = ["# Reproduction over phantom cohorts", ""]
    lines += [
        "Every ordering the publications report, and that this project's pages check on one demo",
        "phantom, re-measured on several phantom cohorts with different seeds and area seeds",
        "(held-out cytoarchitecture), made by one command: `benchmarks/reproduce.py`. Each",
        "experiment runs through the `cortexgraph` command line; the harness only reads the outputs",
        'and aggregates them. Mean ± standard deviation are over cohorts (sample s.d.); "held" counts',
        "the cohorts in which the ordering holds. Verdicts: *holds* (in every cohort), *holds in the",
        "mean* (mean margin on the published side, not in every cohort), *does not hold* (mean margin",
        "on the other side), *untested*.",
        "",
        "## The run",
        "",
        f"* Command (from the repository root): `{run_info['command']}`",
        f"* Phantom scale: `{run_info['scale']}`; cohorts (seed x area seed): {run_info['cohorts']}",
        f"* Phantom options: {run_info['phantom']}",
        f"* Experiments: {run_info['experiments']}",
        f"* Machine: {run_info['machine']}; no GPU was used (all numbers are from the CPU).",
        f"* Load: {run_info['load']}",
        f"* Run time: {run_info['time']}",
        f"* Date: {run_info['date']}",
        "",
    ]
    if missing:
        lines += ["**Missing from this run**: " + "; ".join(missing) + ".", ""]
    for note in run_info.get("notes", []):
        lines += [note, ""]
    lines += ["## The orderings", ""]
    group = None
    for a in aggregates:
        if a["group"] != group:
            group = a["group"]
            lines += ["", f"### {group}", ""]
            lines += [
                "| ordering (published) | left | right | left mean ± s.d. | right mean ± s.d. | margin mean ± s.d. | held | verdict |",
                "|---|---|---|---|---|---|---|---|",
            ]
        lines.append(
            f"| {a['statement']} | {a['left_label']} | {a['right_label']} | "
            f"{_pm(a['left_mean'], a['left_sd'])} | {_pm(a['right_mean'], a['right_sd'])} | "
            f"{_pm(a['margin_mean'], a['margin_sd'])} | {a['held']}/{a['n']} | **{a['verdict']}** |"
        )
    if reading:
        lines += ["", reading]
    lines += ["", "## Per cohort", ""]
    names = [r["cohort"] for r in results]
    lines += ["| ordering | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in aggregates:
        cells = []
        for n in names:
            m = a["per_cohort"].get(n)
            cells.append(
                "n/a" if m is None else f"{'yes' if m['holds'] else 'no'} ({m['margin']:+.3f})"
            )
        lines.append(f"| {a['key']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "(yes/no: the ordering holds in that cohort; in brackets the margin left - right.)",
        "",
    ]
    lines += ["## Raw metrics (mean ± s.d. over cohorts)", ""]
    lines += ["| experiment | metric | mean ± s.d. | cohorts |", "|---|---|---|---|"]
    for group, item, m, s, n in metric_table(results):
        digits = 1 if group == "volume" else 3
        lines.append(f"| {group} | {item} | {_pm(m, s, digits)} | {n} |")
    lines += ["", "## Time per cohort and step (s)", ""]
    lines += [
        "Wall time of each step's commands, summed over every invocation that ran the step (an "
        "interrupted cohort resumed by a later invocation keeps the time of both; a step found "
        "up to date adds only the seconds that took).",
        "",
    ]
    steps = [s for s in STEPS]
    lines += ["| cohort | " + " | ".join(steps) + " | total |", "|---|" + "---|" * (len(steps) + 1)]
    for r in results:
        row = [_fmt(r.get("steps", {}).get(s, {}).get("seconds", float("nan")), 0) for s in steps]
        lines.append(
            f"| {r['cohort']} | "
            + " | ".join(row)
            + f" | {_fmt(r.get('seconds', float('nan')), 0)} |"
        )
    lines.append("")
    for extra in run_info.get("closing", []):
        lines += [extra, ""]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------- main


def load_results(out: Path, names: Sequence[str]) -> list[dict]:
    found = []
    for name in names:
        path = out / "cohorts" / name / "results.json"
        if path.is_file():
            found.append(json.loads(path.read_text()))
    return found


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="output folder (cohorts, raw results, log)")
    p.add_argument("--scale", choices=sorted(SCALES), default="tiny", help="phantom preset")
    p.add_argument("--seeds", type=_ints, default=[1, 2, 3], help="phantom seeds, e.g. 1,2,3")
    p.add_argument("--area-seeds", type=_ints, default=[11, 12], help="area seeds, e.g. 11,12")
    p.add_argument("--jobs", type=int, default=1, help="cohorts run at the same time")
    p.add_argument("--profile-variability", type=float, default=0.1)
    p.add_argument("--transition-mm", type=float, default=1.0)
    p.add_argument("--transform-noise-deg", type=float, default=None)
    p.add_argument("--transform-noise-um", type=float, default=None)
    p.add_argument("--area", default="hOc1", help="area of the local models and the volumes")
    p.add_argument(
        "--lsm-iterations", type=int, default=None, help="per local model (scale's default)"
    )
    p.add_argument("--gnn-epochs", type=int, default=None, help="GNN epochs (the preset's default)")
    p.add_argument("--doc", type=Path, default=Path("docs/reproduction.md"), help="page to write")
    p.add_argument("--aggregate-only", action="store_true", help="only rewrite tables and page")
    p.add_argument("--note", action="append", default=[], help="paragraph added to the page")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with exclusive_folder(args.out, "reproduce") as held:
        return _main(args, argv) if held else 3


def _main(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    settings = Settings(
        scale=args.scale,
        profile_variability=args.profile_variability,
        transition_mm=args.transition_mm,
        transform_noise_deg=args.transform_noise_deg,
        transform_noise_um=args.transform_noise_um,
        area=args.area,
        lsm_iterations=args.lsm_iterations,
        gnn_epochs=args.gnn_epochs,
    )
    out: Path = args.out
    report = Reporter(out / "reproduce.log")
    pairs = [(s, a) for s in args.seeds for a in args.area_seeds]
    names = [cohort_name(s, a) for s, a in pairs]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    command = "python benchmarks/reproduce.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    started = time.time()
    loads: list[float] = [os.getloadavg()[0]]
    failures: dict[str, str] = {}

    def one(pair: tuple[int, int]) -> None:
        seed, area_seed = pair
        name = cohort_name(seed, area_seed)
        folder = out / "cohorts" / name
        path = folder / "results.json"
        if path.is_file():
            previous = json.loads(path.read_text())
            if previous.get("complete") and previous.get("settings_key") == settings.key():
                report(f"[{name}] complete with these settings: skipped")
                return
        report(f"[{name}] starting ({pairs.index(pair) + 1}/{len(pairs)})")
        try:
            r = run_cohort(folder, seed, area_seed, settings, env, report)
            report(f"[{name}] complete in {r['seconds']:.0f} s")
        except (CommandFailed, OSError, KeyError, ValueError) as exc:
            failures[name] = str(exc)
            report(f"[{name}] FAILED: {exc}")
        loads.append(os.getloadavg()[0])

    run_record = out / "run.json"
    if not args.aggregate_only:
        _write_json(run_record, {"command": command, "started_unix": started})
    elif run_record.is_file():  # the page names the command that ran the cohorts
        command = json.loads(run_record.read_text())["command"]
    if not args.aggregate_only:
        report(
            f"{len(pairs)} cohort(s), scale {args.scale}, {args.jobs} at a time; log {out / 'reproduce.log'}"
        )
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(one, pairs))
        _write_json(
            run_record, {"command": command, "started_unix": started, "finished_unix": time.time()}
        )
    wall = float("nan")
    if run_record.is_file():
        record = json.loads(run_record.read_text())
        wall = record.get("finished_unix", float("nan")) - record["started_unix"]

    results = load_results(out, names)
    complete = [r for r in results if r.get("complete") and r.get("settings_key") == settings.key()]
    # an unfinished cohort of the same settings adds the claims its finished steps can test
    partial = [r for r in results if r not in complete and r.get("settings_key") == settings.key()]
    claim_list = claims(args.area)
    aggregates = aggregate(complete + partial, claim_list)
    _write_json(out / "summary.json", {"settings": settings.__dict__, "claims": aggregates})
    lines = ["claim\tcohort\tleft\tright\tmargin\tholds"]
    for a in aggregates:
        for name, m in a["per_cohort"].items():
            lines.append(
                f"{a['key']}\t{name}\t{m['left']:.4f}\t{m['right']:.4f}\t{m['margin']:.4f}\t{int(m['holds'])}"
            )
    _write_text(out / "claims.tsv", "\n".join(lines) + "\n")
    total = sum(
        r.get("seconds", sum(s["seconds"] for s in r.get("steps", {}).values())) for r in results
    )
    step_loads = [s["load"] for r in results for s in r.get("steps", {}).values() if s.get("load")]
    missing = [
        f"{n} did not finish ({failures.get(n, 'not run or interrupted').splitlines()[0]})"
        for n in names
        if n not in {r["cohort"] for r in complete}
    ]
    run_info = {
        "command": command,
        "scale": args.scale,
        "cohorts": ", ".join(names) + f" ({len(complete)} complete)",
        "phantom": f"`--profile-variability {args.profile_variability} --transition-mm {args.transition_mm}`"
        + (
            f" `--transform-noise-deg {args.transform_noise_deg}`"
            if args.transform_noise_deg is not None
            else ""
        )
        + (
            f" `--transform-noise-um {args.transform_noise_um}`"
            if args.transform_noise_um is not None
            else ""
        ),
        "experiments": (
            f"train-encoder (the scale's encoder preset, seed = the cohort's); GNN comparisons with "
            f"`--preset {SCALES[args.scale]['gnn_preset']}`, transfer brain {TRANSFER}; local models "
            f"HR/LR/MS x LSM/GSM on {args.area} of {LSM_BRAIN}, "
            f"{args.lsm_iterations or SCALES[args.scale]['lsm_iterations']} iterations each; volumes of {args.area}"
        ),
        "machine": machine_description(),
        "load": (
            f"load average (1 min) {min(step_loads):.1f}-{max(step_loads):.1f} during the commands, mean "
            f"{sum(step_loads) / len(step_loads):.1f}; other jobs shared the machine"
            if step_loads
            else "n/a"
        ),
        "time": f"{total / 60:.1f} min of command wall time over {len(results)} cohort(s) "
        f"(wall time of the last invocation that ran cohorts: {wall / 60:.1f} min)",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "notes": [SCALE_NOTES[args.scale], *args.note],
    }
    previous = args.doc.read_text(encoding="utf-8") if args.doc.is_file() else ""
    page = render_page(aggregates, complete + partial, run_info, missing, kept_reading(previous))
    _write_text(args.doc, page)
    report(f"wrote {args.doc}, {out / 'claims.tsv'}, {out / 'summary.json'}")
    for a in aggregates:
        report(f"  {a['verdict']:>17}  {a['held']}/{a['n']}  {a['key']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

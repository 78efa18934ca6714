"""Benchmark: one whole brain of the full preset through synth, check, build-graph, features, predict.

One command runs every stage as the CLI runs it, each in its own process under ``/usr/bin/time``
(wall seconds and peak RSS of that stage alone), records the load average before and after every
stage, and writes ``benchmarks/results/full_brain.md`` (or ``--out-md``):

1. ``cortexgraph synth OUT --preset full --brains B07`` (one brain: template, atlas, sections,
   ground truth);
2. ``cortexgraph check B07``;
3. ``cortexgraph build-graph B07 --voxel-mm 0.3 --edge-mm 0.3`` (both hemispheres; the phantom
   accuracy is read from ``qc/build-graph-accuracy.json``);
4. ``cortexgraph features B07`` with an encoder of the preset's architecture and random weights
   (written by :func:`write_untrained_encoder`; the features stage's cost does not depend on the
   weights, and one brain alone gives ``train-encoder`` nothing to train on);
5. ``cortexgraph predict RUN B07`` with a GNN run trained in a short setup run (``train-gnn``, one
   epoch, not part of the table).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_full_brain.py --out /data/full-brain

The full preset needs about 3 GB per synth worker and the build-graph of a whole brain at 0.3 mm
several GB more: run it on a machine with at least 18 GB free and no other heavy job. ``--preset
tiny`` (with ``--voxel-mm 0.6``) runs the same script in minutes, to check it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("synth", "check", "build-graph", "features", "predict")


def _cli() -> list[str]:
    return [sys.executable, "-m", "cortexgraph.cli.main"]


def run_stage(name: str, args: list[str], log: Path, env: dict) -> dict:
    """Run one stage under /usr/bin/time; wall seconds, peak RSS (GB), load before / after."""
    load0 = os.getloadavg()[0]
    timing = log.with_suffix(".time")
    cmd = ["/usr/bin/time", "-f", "%e %M", "-o", str(timing), *args]
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"stage {name} failed (exit {done.returncode}); see {log}")
    seconds, kib = timing.read_text().split()[-2:]
    return {
        "stage": name,
        "command": shlex.join(
            ["cortexgraph", *args[len(_cli()) :]] if args[: len(_cli())] == _cli() else args[1:]
        ),
        "wall_s": float(seconds) if seconds else wall,
        "peak_rss_gb": int(kib) / 1024**2,
        "load": f"{load0:.1f} / {os.getloadavg()[0]:.1f}",
    }


def write_untrained_encoder(cohort_root: Path, brain_id: str) -> Path:
    """An encoder file with the preset's architecture and random weights (setup for ``features``).

    The features stage's cost (patch reading, the encoder's forward pass) does not depend on the
    weights, and one brain alone (the transfer brain) gives ``train-encoder`` no training patches.
    """
    import numpy as np

    from cortexgraph.data.manifest import Cohort
    from cortexgraph.features.encoders import PatchClassifier
    from cortexgraph.features.presets import preset_for_spacing
    from cortexgraph.features.train import build_preset_encoder, encoders_folder, save_encoder

    cohort = Cohort.read(cohort_root)
    preset = preset_for_spacing(cohort.brain(brain_id).image_spacing_um)
    areas = np.asarray(cohort.areas.ids, dtype=np.int64)
    classifier = PatchClassifier(build_preset_encoder(preset, seed=0), len(areas))
    path = encoders_folder(cohort, "bench-untrained") / "encoder.pt"
    return save_encoder(path, classifier, preset, areas, kind="scl", seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="cohort folder to create (outside the repo)")
    parser.add_argument("--preset", default="full")
    parser.add_argument("--brain", default="B07")
    parser.add_argument("--voxel-mm", type=float, default=0.3)
    parser.add_argument("--out-md", default=str(HERE / "results" / "full_brain.md"))
    parser.add_argument("--skip-synth", action="store_true", help="reuse the cohort in --out")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help="comma-separated stages to run, in this order: " + ",".join(STAGES),
    )
    parser.add_argument("--write-encoder", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_encoder:
        print(write_untrained_encoder(Path(args.out), args.brain))
        return

    stages = [x.strip() for x in args.stages.split(",") if x.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    if args.skip_synth and "synth" in stages:
        stages.remove("synth")

    out = Path(args.out).resolve()
    logs = out.parent / f"{out.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    cli = _cli()
    root = ["--root", str(out)]
    b = args.brain
    voxel = str(args.voxel_mm)
    # rows of earlier invocations on the same OUT are kept (a stage run again replaces its row), so
    # the page can be made in parts: synth once, then the later stages
    saved = logs / "rows.json"
    earlier = json.loads(saved.read_text()) if saved.is_file() else {"rows": [], "setup": []}
    rows: list[dict] = [r for r in earlier["rows"] if r["stage"] not in stages]
    setup: list[dict] = [r for r in earlier["setup"] if r.get("for") not in stages]
    command = (
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} .venv/bin/python benchmarks/bench_full_brain.py "
        f"--out OUT --preset {args.preset} --brain {b} --voxel-mm {voxel} --stages STAGES"
    )

    def without_paths(entries: list[dict]) -> list[dict]:
        # the page is shipped: no path of this machine in its commands
        return [{**e, "command": e["command"].replace(str(out), "OUT")} for e in entries]

    def report() -> None:
        # rewritten after every stage: a stage that fails or is stopped leaves the ones before it
        saved.write_text(json.dumps({"rows": rows, "setup": setup}, indent=1))
        write_report(
            Path(args.out_md),
            command,
            out / "derivatives" / "cortexgraph" / b,
            without_paths(rows),
            without_paths(setup),
            [x for x in STAGES if x not in {r["stage"] for r in rows}],
        )

    encoder_name = "bench-untrained"  # written by write_untrained_encoder
    run_name = "bench-gnn"
    for stage in stages:
        if stage == "synth":
            argv = [*cli, "synth", str(out), "--preset", args.preset, "--brains", b, "--overwrite"]
        elif stage == "check":
            argv = [*cli, "check", b, *root]
        elif stage == "build-graph":
            argv = [*cli, "build-graph", b, *root, "--voxel-mm", voxel, "--edge-mm", voxel,
                    "--overwrite"]  # fmt: skip
        elif stage == "features":
            # in a child process: the parent stays small, so no stage inherits its memory
            # high-water mark
            setup.append(
                run_stage(
                    "untrained encoder (setup)",
                    [sys.executable, __file__, "--out", str(out), "--brain", b, "--write-encoder"],
                    logs / "encoder.log",
                    env,
                )
            )
            setup[-1]["for"] = stage
            argv = [*cli, "features", b, *root, "--encoder", encoder_name, "--device", "cpu",
                    "--overwrite"]  # fmt: skip
        else:  # predict
            setup.append(
                run_stage(
                    "train-gnn (setup)",
                    [
                        *cli,
                        "train-gnn",
                        *root,
                        "--name",
                        run_name,
                        "--epochs",
                        "1",
                        "--transfer",
                        "none",
                        "--preset",
                        "seeds" if args.preset == "full" else "demo",
                    ],  # fmt: skip
                    logs / "train-gnn.log",
                    env,
                )
            )
            setup[-1]["for"] = stage
            argv = [*cli, "predict", run_name, b, *root, "--device", "cpu", "--overwrite"]
        rows.append(run_stage(stage, argv, logs / f"{stage}.log", env))
        rows.sort(key=lambda r: STAGES.index(r["stage"]))
        report()
    print(Path(args.out_md).read_text())


def write_report(
    path: Path, command: str, derivatives: Path, rows: list, setup: list, not_run: list
) -> None:
    """Write the results page: one row per stage run, build-graph's report and phantom accuracy."""
    accuracy_path = derivatives / "qc" / "build-graph-accuracy.json"
    report_path = derivatives / "qc" / "build-graph.json"
    accuracy = json.loads(accuracy_path.read_text()) if accuracy_path.is_file() else None
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    lines = [
        "# One whole brain of the full preset: synth, check, build-graph, features, predict",
        "",
        f"Command: `{command}` (STAGES: the stages of this invocation; a later invocation on the "
        "same OUT keeps the rows of the stages it does not run)",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"date {time.strftime('%Y-%m-%d')}. Each stage is its own process; peak RSS is that "
        "process's (`/usr/bin/time`).",
        "",
        "| stage | command | wall s | peak RSS GB | load before / after |",
        "|---|---|---|---|---|",
    ]
    for r in rows + setup:
        lines.append(
            f"| {r['stage']} | `{r['command']}` | {r['wall_s']:.0f} | {r['peak_rss_gb']:.2f} | "
            f"{r['load']} |"
        )
    if not_run:
        lines += ["", f"Not run (yet): {', '.join(not_run)}."]
    if report:
        rec = report.get("reconstruct", {}).get("stack", {})
        lines += [
            "",
            f"build-graph: volume {rec.get('shape')} (uncropped {rec.get('uncropped_shape')}), "
            f"per-stage seconds {json.dumps(report.get('seconds', {}))}",
        ]
    if accuracy is not None:
        lines += ["", "Phantom accuracy (qc/build-graph-accuracy.json):", "", "```json"]
        lines += [json.dumps(accuracy, indent=1)[:4000], "```"]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

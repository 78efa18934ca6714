"""Benchmark: the upper bound of the projection step on a phantom (true vertex labels projected).

Projecting the **true** vertex labels of the phantom's true midsurface (area id per vertex, mapped to
the sections exactly as build-graph maps its own midsurface) measures what the projection of
``cortexgraph project`` alone loses; a perfect GNN on a perfect surface cannot score higher
(Schiffer, PhD thesis, Sect. 6.1.1 describes the projection). Writes, under OUT, per brain the graph
files (``<brain>/graph/<hemi>.h5``) and the label images of every (distance, smoothing) setting
(``<brain>/labels/truth-y-d<distance>-s<hops>/``), and ``upper_bound.tsv`` (one row per brain and
setting); prints the table.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_project_upper_bound.py COHORT OUT \\
        --max-distance-mm 3,1.5,2,4,6 --smooth 0,2
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from cortexgraph.data.manifest import Cohort
from cortexgraph.mapping.nodes import graph_file_arrays, ground_truth_graphs
from cortexgraph.mapping.project import project_graphs, truth_labels_folder
from cortexgraph.mapping.projection import DEFAULT_MAX_DISTANCE_MM
from cortexgraph.outputs import write_text_atomic

log = logging.getLogger(__name__)


def upper_bound(
    cohort_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    brains: Sequence[str] | None = None,
    distances_mm: Sequence[float] = (DEFAULT_MAX_DISTANCE_MM,),
    smooth_hops: Sequence[int] = (0,),
) -> list[dict]:
    """Pixel scores of the phantom's **true** vertex labels projected onto its sections.

    For every brain: :func:`~cortexgraph.mapping.nodes.ground_truth_graphs` into ``out_dir/<brain>/graph``, then
    :func:`~cortexgraph.mapping.project.project_graphs` of ``y`` for every (distance, smoothing) pair into
    ``out_dir/<brain>/labels/truth-y-d<distance>-s<hops>`` (contours and overlays only for the first
    pair). Returns one row per brain and pair (also written to ``out_dir/upper_bound.tsv``): brain,
    max_distance_mm, smooth_hops, macro_f1, accuracy, coverage, pixels_scored, pixels_outside_truth,
    seconds_mapping, seconds_project.
    """
    cohort = Cohort.read(cohort_root)
    rows = []
    for brain_id in brains or cohort.brain_ids:
        brain = cohort.brain(brain_id)
        graph_dir = Path(out_dir) / brain_id / "graph"
        start = time.perf_counter()
        ground_truth_graphs(brain, graph_dir)
        mapped = time.perf_counter() - start
        graphs = [
            {"name": path.stem, **graph_file_arrays(path)}
            for path in sorted(graph_dir.glob("*.h5"))
        ]
        first = True
        for distance in distances_mm:
            for hops in smooth_hops:
                source = f"truth-y-d{distance:g}-s{hops}"
                report, _ = project_graphs(
                    brain,
                    graphs,
                    Path(out_dir) / brain_id / "labels" / source,
                    source=source,
                    spacing_um=brain.annotation_spacing_um or brain.mask_spacing_um,
                    max_distance_mm=distance,
                    smooth_hops=hops,
                    contours=first,
                    overlays=6 if first else 0,
                    truth_dir=truth_labels_folder(brain),
                    title="true vertex labels",
                )
                first = False
                scores = report["pixel_f1"] or {}
                rows.append(
                    {
                        "brain": brain_id,
                        "max_distance_mm": float(distance),
                        "smooth_hops": int(hops),
                        **{
                            k: scores.get(k, float("nan"))
                            for k in (
                                "macro_f1",
                                "accuracy",
                                "coverage",
                                "pixels_scored",
                                "pixels_outside_truth",
                            )
                        },
                        "seconds_mapping": round(mapped, 1),
                        "seconds_project": round(report["seconds"], 1),
                    }
                )
                log.info("%s", rows[-1])
    columns = list(rows[0]) if rows else []
    lines = ["\t".join(columns)] + [
        "\t".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in columns)
        for r in rows
    ]
    write_text_atomic(Path(out_dir) / "upper_bound.tsv", "\n".join(lines) + "\n")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--brains", default="")
    parser.add_argument("--max-distance-mm", default=str(DEFAULT_MAX_DISTANCE_MM))
    parser.add_argument("--smooth", default="0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = upper_bound(
        args.cohort,
        args.out,
        brains=[b for b in args.brains.split(",") if b] or None,
        distances_mm=[float(v) for v in args.max_distance_mm.split(",")],
        smooth_hops=[int(v) for v in args.smooth.split(",")],
    )
    print("| brain | max distance (mm) | smoothing (hops) | pixel macro F1 | accuracy | coverage |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['brain']} | {r['max_distance_mm']:g} | {r['smooth_hops']} | "
            f"{r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['coverage']:.3f} |"
        )


if __name__ == "__main__":
    main()

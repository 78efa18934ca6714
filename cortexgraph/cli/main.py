"""The ``cortexgraph`` command line: a thin layer over the library, one module per command group.

Heavy libraries (torch, vtk, pymeshlab) are imported inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import typer

from cortexgraph import __version__
from cortexgraph.cli import build_graph as build_graph_cmd
from cortexgraph.cli import check as check_cmd
from cortexgraph.cli import cohort as cohort_cmd
from cortexgraph.cli import common
from cortexgraph.cli import features as features_cmd
from cortexgraph.cli import gnn as gnn_cmd
from cortexgraph.cli import jobs as jobs_cmd
from cortexgraph.cli import lsm as lsm_cmd
from cortexgraph.cli import maps3d as maps3d_cmd
from cortexgraph.cli import project as project_cmd
from cortexgraph.cli import render as render_cmd
from cortexgraph.cli import scans as scans_cmd
from cortexgraph.cli import serve as serve_cmd
from cortexgraph.cli import status as status_cmd
from cortexgraph.cli import synth as synth_cmd

HELP = """cortexgraph: map cytoarchitectonic areas in series of histological brain sections.

Pipeline stages, in order:

\b
  synth        make a phantom cohort from real anatomy (MNI152 + Schaefer areas), with ground truth
  ingest       whole-slide scans (OME-TIFF, OME-Zarr, TIFF, PNG) + a section list -> a brain
  segment      tissue masks (background / white / gray) from the section images
  align        rigid transforms between consecutive sections from the images, mirrored scans found
  register     canonical coordinates: the stacked sections registered to MNI152
  check        is a brain's data complete and consistent? (files, spacings, transforms, annotations)
  status       every stage of every brain: done, stale (and why), missing, running
  build-graph  sections -> 3D volume -> Laplace depth -> midsurface -> graph -> node <-> section points
  train-encoder  the contrastive patch encoder (and its cross-entropy baseline)
  features     node features: CY (patch encoder), CO (canonical coordinates), PM (atlas), Y (labels)
  train-gnn    train GAT / GraphSAGE / MLP / linear node classifiers
  evaluate     macro F1 on test sections and on the transfer brain
  predict      per-node class probabilities and labels
  project      node labels back onto the sections (label images, contours, overlays)
  render       surfaces coloured by area, off-screen
  lsm          local segmentation models between annotated sections
  map3d/stats  3D area maps, volumes and surface areas
  serve        the mapping web app: annotate, train local models, accept predictions, inspect 3D
  run-cohort   all of the above for every brain, as tasks on Dask (local, a scheduler, or Slurm)
  jobs         training / prediction jobs on the local engine or Slurm: submit, list, follow, cancel

Run `cortexgraph demo OUT` for the whole path on a phantom cohort. Data format: docs/data-format.md;
from scans: docs/scans-in.md. Cohorts on clusters: docs/scaling.md.
"""

app = typer.Typer(
    name="cortexgraph",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cortexgraph {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cortexgraph command line."""


synth_cmd.register(app)
check_cmd.register(app)
status_cmd.register(app)
build_graph_cmd.register(app)
scans_cmd.register(app)  # ingest, segment, align, register
cohort_cmd.register(app)  # demo, run-cohort
gnn_cmd.register(app)
project_cmd.register(app)
render_cmd.register(app)
features_cmd.register(app)
lsm_cmd.register(app)
maps3d_cmd.register(app)
serve_cmd.register(app)
jobs_cmd.register(app)


def main() -> None:
    common.END_PROCESS_ON_INTERRUPT = True  # this process is the command: it may end itself
    app()


if __name__ == "__main__":
    main()

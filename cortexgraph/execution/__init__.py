"""Running cortexgraph's stages on an execution engine: one layer for all orchestration.

* :mod:`~cortexgraph.execution.engine`: the Dask distributed client, from options or a TOML file: a
  local cluster sized to the machine (default), an existing scheduler (``--scheduler ADDRESS``), or
  workers started as Slurm jobs by dask-jobqueue; or ``workers=0`` (serial, in this process).
* :mod:`~cortexgraph.execution.graph`: the cohort task graph (synth, check, build-graph, encoder,
  node features, GNN, predictions, projection, pictures, 3D maps), built from the stage entry
  points, with the dependencies between stages as dependencies between tasks, and its runner.
* :mod:`~cortexgraph.execution.tasks`: the task functions; each calls one stage's library function,
  which takes the stage's lock, reuses current outputs and writes its own files (the stage contract,
  docs/derivatives.md). A task never writes an output itself.
* :mod:`~cortexgraph.execution.launcher`: training and prediction jobs (``cortexgraph`` commands) with
  GPU requests, time limits, retries and dependencies, on a local Dask engine or on Slurm.
* :mod:`~cortexgraph.execution.slurm`: Slurm batch scripts and the dask-jobqueue configuration.

Computing modules never import this package; it imports them. docs/scaling.md is the user's guide.
"""

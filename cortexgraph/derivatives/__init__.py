"""The stage contract: records with keys, one writer per file, locks, current-or-stale upstream.

Modules:

* :mod:`~cortexgraph.derivatives.stages` -- the stages, their code versions, and :class:`StageId`;
* :mod:`~cortexgraph.derivatives.identity` -- the identity of a file (content hash or stat rule);
* :mod:`~cortexgraph.derivatives.record` -- stage records and keys, and what makes one stale;
* :mod:`~cortexgraph.derivatives.lock` -- lock files that work on network file systems;
* :mod:`~cortexgraph.derivatives.stage` -- :class:`Derivatives`, :class:`StageRun` and :func:`run_stage`;
* :mod:`~cortexgraph.derivatives.layout` -- where the outputs shared between stages live;
* :mod:`~cortexgraph.derivatives.external` -- recording files made outside the stages;
* :mod:`~cortexgraph.derivatives.inputs` -- what a stage reads from a brain folder;
* :mod:`~cortexgraph.derivatives.parameters` -- a stage's parameters from a TOML file, and its template;
* :mod:`~cortexgraph.derivatives.graphs` -- a brain graph with the node features asked for;
* :mod:`~cortexgraph.derivatives.status` -- the state of every stage of a brain.

docs/derivatives.md describes the layout and the record for users.
"""

from cortexgraph.derivatives.record import StageRecord
from cortexgraph.derivatives.stage import Derivatives, StageRun, installing, run_stage
from cortexgraph.derivatives.stages import STAGES, StageId

__all__ = [
    "STAGES", "StageId", "StageRecord", "Derivatives", "StageRun", "installing", "run_stage",
]  # fmt: skip

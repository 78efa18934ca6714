"""Outputs made outside cortexgraph's stages, recorded so that later stages can depend on them.

A lab may bring its own midsurface meshes, its own node features or a model trained elsewhere; tests
and benchmarks write synthetic graphs. :func:`record_external` gives such files a stage record like
any stage's (key, parameters, inputs, outputs), so the stages downstream see an ordinary upstream:
they require it to be current, and they become stale when the files are replaced or edited.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from cortexgraph.derivatives.record import StageRecord
from cortexgraph.derivatives.stage import Derivatives, StageRun
from cortexgraph.derivatives.stages import StageId

__all__ = ["record_external"]


def record_external(
    store: Derivatives,
    sid: StageId,
    outputs: Iterable[str | os.PathLike],
    parameters: Mapping[str, Any],
    *,
    inputs: Iterable[str | os.PathLike] = (),
    upstream: Iterable[StageId] = (),
    measured: Mapping[str, Any] | None = None,
) -> StageRecord:
    """Record ``outputs`` (already written, in their stage's layout) as the outputs of ``sid``.

    ``parameters`` should say where the files came from (``{"source": "..."}``); they go into the
    key with ``external = True``. Returns the record.
    """
    with StageRun(
        store,
        sid,
        parameters={"external": True, **parameters},
        inputs=inputs,
        upstream=upstream,
        overwrite=True,
    ) as run:
        return run.commit(outputs, measured)

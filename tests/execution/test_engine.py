"""The local engine's worker processes (cortexgraph.execution.engine)."""

from __future__ import annotations

import os

import pytest

from cortexgraph.execution.engine import WORKER_ENVIRON, EngineOptions, open_engine


def test_local_workers_get_one_thread_and_no_malloc_trimming(tmp_path):
    """Workers keep Dask's one-thread caps but not its MALLOC_TRIM_THRESHOLD_=65536, which made
    encoder training 1.7x slower on the demo phantom (engine.WORKER_ENVIRON)."""
    pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    with open_engine(EngineOptions(workers=1), local_directory=tmp_path / "dask") as engine:
        client = engine.client
        for name, value in WORKER_ENVIRON.items():
            assert set(client.run(os.getenv, name).values()) == {value}
        assert set(client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == {None}

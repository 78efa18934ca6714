"""Workers import PyMeshLab in their main thread before any task runs (a first import in a task
thread makes the worker abort as it exits: module docstring of cortexgraph.execution.worker_setup)."""

from __future__ import annotations

import pytest

pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
pytest.importorskip("pymeshlab", reason="PyMeshLab is not installed")


# lambdas: Dask workers cannot import functions of test modules (pytest's importlib mode), and
# cloudpickle sends a lambda by value
_setup_record = lambda: dict(  # noqa: E731
    __import__("cortexgraph.execution.worker_setup", fromlist=["IMPORTED"]).IMPORTED
)
_first_import_in_task = lambda: "pymeshlab" not in __import__("sys").modules  # noqa: E731


def test_an_engine_makes_its_workers_import_pymeshlab_in_their_main_thread():
    import dask
    import distributed

    from cortexgraph.execution.engine import Engine, EngineOptions

    with dask.config.set({"distributed.worker.daemon": False}):
        with distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster, distributed.Client(cluster) as client:
            # without the engine, a task would be the first to import it (in a task thread)
            assert client.submit(_first_import_in_task, pure=False).result() is True
            Engine(EngineOptions(scheduler=cluster.scheduler_address), client=client)
            records = client.run(_setup_record)
            assert list(records.values()) == [{"pymeshlab": True}]
            # a worker that joins later gets the set-up too
            cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
            records = client.run(_setup_record)
            assert len(records) == 2 and all(r == {"pymeshlab": True} for r in records.values())

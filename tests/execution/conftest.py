"""Fixtures of the engine tests: a local Dask cluster of 2 worker processes, the settings of a short
graph path on the tiny phantom, and a comparison of two cohorts' outputs."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

#: A short graph path on the tiny phantom (the same code as the full one, fewer epochs).
TEST_SETTINGS = {
    "encoder_preset": "tiny",
    "encoder_overrides": {"scl_epochs": 3, "linear_epochs": 1, "samples_per_area": 16},
    "gnn": {
        "model": "gat",
        "layers": 2,
        "features": ("cy", "pm", "co"),
        "transfer": "auto",
        "preset": "demo",
        "epochs": 2,
    },
    "render": False,
    "until": "project",
    "device": "cpu",
}


@pytest.fixture(scope="session")
def dask_cluster():
    """A LocalCluster of 2 single-threaded worker processes (skipped without distributed)."""
    distributed = pytest.importorskip("distributed", reason="the [cluster] extra is not installed")
    import dask

    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="4GB",
        )
        client = distributed.Client(cluster)
        try:
            yield cluster, client
        finally:
            client.close()
            cluster.close()


@pytest.fixture
def copy_tiny(tiny_cohort, tmp_path):
    """A function returning a fresh copy of the tiny phantom (the fixture is read-only)."""

    def make(name: str = "cohort") -> Path:
        root = tmp_path / name
        shutil.copytree(tiny_cohort, root)
        return root

    return make


def _strip(value, root: str):
    """A report without its timings, with the cohort folder's path replaced."""
    if isinstance(value, dict):
        return {
            k: _strip(v, root)
            for k, v in value.items()
            if "seconds" not in k and not k.endswith("per_s")
        }
    if isinstance(value, list):
        return [_strip(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<cohort>")
    return value


def _content(path: Path, root: Path):
    """What two runs must agree on: reports without timings, tables without time columns, else
    the bytes."""
    if path.suffix == ".json":
        return _strip(json.loads(path.read_text()), str(root))
    if path.suffix == ".tsv":
        rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
        return [_strip(r, str(root)) for r in rows]
    if path.suffix == ".pt":
        # a torch zip archive names its folder after the (random) temporary file of the atomic
        # write: compare what it holds, tensors by dtype, shape and bytes
        import torch

        return _tensors(torch.load(path, map_location="cpu", weights_only=True))
    return path.read_bytes()


def _tensors(value):
    """A torch checkpoint with its tensors as ``(dtype, shape, bytes)``."""
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tensors(v) for v in value]
    if hasattr(value, "detach"):
        array = value.detach().cpu().numpy()
        return (str(array.dtype), array.shape, array.tobytes())
    return value


def records(root: Path) -> dict[str, dict]:
    """Every stage record of a cohort, by its path relative to the derivatives folder."""
    derivatives = Path(root) / "derivatives" / "cortexgraph"
    return {
        str(p.relative_to(derivatives)): json.loads(p.read_text())
        for p in derivatives.rglob("records/*.json")
    }


def assert_same_outputs(a: Path, b: Path, only: str | None = None) -> int:
    """Both cohorts have the same stage records (same keys) with the same output files; returns the
    number of files compared. ``only`` keeps records whose path contains it."""
    ra, rb = records(a), records(b)
    if only is not None:
        ra = {k: v for k, v in ra.items() if only in k}
        rb = {k: v for k, v in rb.items() if only in k}
    assert sorted(ra) == sorted(rb)
    compared = 0
    for name, rec in ra.items():
        other = rb[name]
        assert rec["key"] == other["key"], name
        assert sorted(rec["outputs"]) == sorted(other["outputs"]), name
        for output, identity in rec["outputs"].items():
            if identity == other["outputs"][output]:
                compared += 1
                continue
            pa, pb = Path(a) / output, Path(b) / output
            assert _content(pa, Path(a)) == _content(pb, Path(b)), f"{name}: {output} differs"
            compared += 1
    return compared

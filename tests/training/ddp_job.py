"""A training run for the data-parallel tests, started once as one process and once by torchrun.

    python ddp_job.py gnn <kind> OUT.json
    python ddp_job.py encoder COHORT OUT.json [LOADER_WORKERS]
    python -m torch.distributed.run --nproc-per-node 2 ddp_job.py ...   (gloo on CPU)

Rank 0 writes the per-epoch losses and a checksum of the trained weights to OUT.json.
"""

from __future__ import annotations

import json
import sys

import torch


def _write(path: str, payload: dict) -> None:
    from cortexgraph.training.runtime import get_world_size, is_main_process

    if is_main_process():
        payload["world_size"] = get_world_size()
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle)


def _checksum(module: torch.nn.Module) -> float:
    return float(sum(p.detach().double().abs().sum() for p in module.parameters()))


def gnn(kind: str, out: str) -> None:
    from cortexgraph.gnn.models import NodeClassifier
    from cortexgraph.gnn.synthetic import synthetic_mesh_graph
    from cortexgraph.gnn.train import train_node_classifier
    from cortexgraph.training.runtime import init_distributed_from_env

    init_distributed_from_env("gloo")
    dims = {"cy": 8, "co": 3}
    graphs = [
        synthetic_mesh_graph(
            8, 12, dims, num_classes=4, labelled_fraction=0.6, seed=s, informative=True
        )
        for s in range(2)
    ]
    torch.manual_seed(0)
    # no dropout, no input noise: the processes' random streams differ from one process's
    model = NodeClassifier(
        dims,
        4,
        kind=kind,
        num_layers=2,
        hidden=16,
        input_dropout={},
        input_noise_sigma={},
        dropout=0.0,
        attention_dropout=0.0,
    )
    history = train_node_classifier(
        graphs, model, epochs=6, batch_size=32, lr=0.05, seed=0, device="cpu"
    )
    _write(
        out,
        {"loss": history["loss"], "train_acc": history["train_acc"], "weights": _checksum(model)},
    )


def encoder(cohort_root: str, out: str, loader_workers: int = 0) -> None:
    from cortexgraph.data.manifest import Cohort
    from cortexgraph.features.dataset import PatchReader, build_patch_table
    from cortexgraph.features.presets import get_preset
    from cortexgraph.features.train import train_ce, train_scl
    from cortexgraph.training.runtime import init_distributed_from_env

    init_distributed_from_env("gloo")
    cohort = Cohort.read(cohort_root)
    preset = get_preset("tiny").with_overrides(
        scl_epochs=3, linear_epochs=1, ce_epochs=1, samples_per_area=16, batch_size=64
    )
    table = build_patch_table(cohort, preset)
    reader = PatchReader(cohort, table, preset, cache_mb=256)
    reader.prefetch()
    torch.manual_seed(0)
    enc, scl = train_scl(table, reader, preset, seed=0, loader_workers=loader_workers)
    classifier, ce = train_ce(
        table, reader, preset, len(cohort.areas), seed=0, loader_workers=loader_workers
    )
    _write(
        out,
        {
            "scl": [h["loss"] for h in scl],
            "ce": [h["loss"] for h in ce],
            "scl_weights": _checksum(enc),
            "ce_weights": _checksum(classifier),
            "running_mean": torch.cat(
                [
                    m.running_mean.double().reshape(-1)
                    for m in classifier.modules()
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                ]
            ).tolist(),
        },
    )


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "gnn":
        gnn(*args)
    else:
        encoder(args[0], args[1], int(args[2]) if len(args) > 2 else 0)

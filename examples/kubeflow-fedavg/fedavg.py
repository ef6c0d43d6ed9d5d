"""Federated averaging over torch.distributed (gloo): one process per Kubeflow Trainer node, node 0 aggregates.

Each node reads who it is from the variables Kubeflow Trainer v2 sets (PET_NNODES, PET_NODE_RANK,
PET_NPROC_PER_NODE, PET_MASTER_ADDR, PET_MASTER_PORT), trains a logistic regression on its own synthetic,
non-IID data (nothing is downloaded) and sends its weights to node 0 each round; node 0 averages them,
weighted by sample counts, and sends the global model back. One JSON line per event on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

DIM = 10


def trainer_env() -> tuple[int, int, str, int]:
    """(rank, world size, master address, master port) from the PET_* variables."""
    missing = [v for v in ("PET_NNODES", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT") if v not in os.environ]
    if missing:
        sys.exit(f"not started by Kubeflow Trainer: {', '.join(missing)} unset")
    if os.environ.get("PET_NPROC_PER_NODE", "1") != "1":
        sys.exit("one FedAvg party per node: set the TrainJob's numProcPerNode to 1")
    return (
        int(os.environ["PET_NODE_RANK"]),
        int(os.environ["PET_NNODES"]),
        os.environ["PET_MASTER_ADDR"],
        int(os.environ["PET_MASTER_PORT"]),
    )


def local_data(rank: int, seed: int, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One ground truth for everyone; each node sees a shifted slice of feature space (non-IID)."""
    truth = torch.Generator().manual_seed(seed)
    w_true, b_true = torch.randn(DIM, generator=truth), torch.randn(1, generator=truth)
    mine = torch.Generator().manual_seed(seed * 1000 + rank + 1)
    x = torch.randn(samples, DIM, generator=mine) + 0.5 * rank
    noise = 0.1 * torch.randn(samples, generator=mine)
    y = ((x @ w_true + b_true + noise) > 0).float()
    return x, y


def emit(**event: object) -> None:
    print(json.dumps(event, sort_keys=True), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FEDAVG_SEED", "0")))
    args = parser.parse_args()

    rank, world, master, port = trainer_env()
    dist.init_process_group(
        "gloo", init_method=f"tcp://{master}:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=120)
    )
    torch.manual_seed(args.seed + rank)  # different local initialisations: the broadcast below must win
    model = torch.nn.Linear(DIM, 1)
    x, y = local_data(rank, args.seed, args.samples)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    count = torch.tensor([float(len(y))])

    def global_model() -> torch.Tensor:
        return torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def load(vector: torch.Tensor) -> None:
        torch.nn.utils.vector_to_parameters(vector, model.parameters())

    def global_loss() -> float | None:
        """The federation's mean loss under the current global model (known to node 0 only)."""
        with torch.no_grad():
            weighted = loss_fn(model(x).squeeze(1), y) * count
        dist.reduce(weighted, dst=0)
        total = count.clone()
        dist.reduce(total, dst=0)
        return float(weighted / total) if rank == 0 else None

    weights = global_model()
    dist.broadcast(weights, src=0)  # node 0's model is the starting global model
    load(weights)
    emit(event="start", rank=rank, world=world, loss=global_loss())

    for round_ in range(1, args.rounds + 1):
        optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
        for _ in range(args.local_steps):
            optimizer.zero_grad()
            loss_fn(model(x).squeeze(1), y).backward()
            optimizer.step()
        update = global_model() * count
        gathered = [torch.zeros_like(update) for _ in range(world)] if rank == 0 else None
        counts = [torch.zeros(1) for _ in range(world)] if rank == 0 else None
        dist.gather(update, gathered, dst=0)
        dist.gather(count, counts, dst=0)
        averaged = torch.zeros_like(update)
        if rank == 0:
            assert gathered is not None and counts is not None
            averaged = torch.stack(gathered).sum(0) / torch.cat(counts).sum()
        dist.broadcast(averaged, src=0)
        load(averaged)
        emit(event="round", rank=rank, round=round_, loss=global_loss())

    emit(event="done", rank=rank, weights=[round(float(w), 7) for w in global_model()])
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""What Kubeflow Trainer v2 (2.3.0) puts in each node's trainer container, for running a TrainJob locally.

From the torch plugin (pkg/runtime/framework/plugins/torch/torch.go): only these five variables, with
PET_NODE_RANK taken from the Job completion index and PET_MASTER_ADDR naming node 0's pod under the
JobSet's headless Service. MASTER_ADDR, RANK and WORLD_SIZE are NOT set: torchrun derives them, and a
program started without torchrun has to read PET_*. `test_trainer_env.py` pins this table.
"""

from __future__ import annotations

from typing import Any

MASTER_PORT = 29500


def master_address(job_name: str) -> str:
    return f"{job_name}-node-0-0.{job_name}"


def pet_env(train_job: dict[str, Any], node_rank: int) -> dict[str, str]:
    name = train_job["metadata"]["name"]
    trainer = train_job["spec"]["trainer"]
    nodes = trainer["numNodes"]
    if not 0 <= node_rank < nodes:
        raise ValueError(f"node rank {node_rank} outside 0..{nodes - 1}")
    return {
        "PET_NNODES": str(nodes),
        "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", "auto")),
        "PET_NODE_RANK": str(node_rank),
        "PET_MASTER_ADDR": master_address(name),
        "PET_MASTER_PORT": str(MASTER_PORT),
    }

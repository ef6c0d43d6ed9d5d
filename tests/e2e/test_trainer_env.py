"""The PET_* contract the Kubeflow e2e run emulates, pinned as a table (and tied to what flstack renders)."""

from __future__ import annotations

import pytest

from components.federations import kubeflow
from tests.e2e.trainer_env import pet_env

JOB = {"metadata": {"name": "fedavg"}, "spec": {"trainer": {"numNodes": 3, "numProcPerNode": 1}}}

TABLE = [
    (
        0,
        {
            "PET_NNODES": "3",
            "PET_NPROC_PER_NODE": "1",
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "fedavg-node-0-0.fedavg",
            "PET_MASTER_PORT": "29500",
        },
    ),
    (
        2,
        {
            "PET_NNODES": "3",
            "PET_NPROC_PER_NODE": "1",
            "PET_NODE_RANK": "2",
            "PET_MASTER_ADDR": "fedavg-node-0-0.fedavg",
            "PET_MASTER_PORT": "29500",
        },
    ),
]


@pytest.mark.parametrize(("rank", "expected"), TABLE)
def test_each_node_gets_exactly_the_trainer_v2_variables(rank: int, expected: dict[str, str]) -> None:
    assert pet_env(JOB, rank) == expected


def test_no_torchrun_variables_are_emulated() -> None:
    assert not {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"} & set(pet_env(JOB, 1))


def test_a_rank_outside_the_job_is_refused() -> None:
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        pet_env(JOB, 3)


def test_flstack_outputs_the_same_master_address_and_port() -> None:
    env = pet_env(JOB, 1)
    assert kubeflow.master_address("fedavg") == env["PET_MASTER_ADDR"]
    from components import operators

    assert str(operators.RENDEZVOUS_PORT) == env["PET_MASTER_PORT"]

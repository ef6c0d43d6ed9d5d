"""A FedML 0.9.6 cross-silo node (server or client) with in-process synthetic data: no downloads.

    python3 fl_node.py --cf fedml_config.yaml --rank N --role server|client

flstack appends those flags to the command of every pod. Data: seeded random 20-dimensional points
labelled by a fixed hyperplane, the same in every process, one partition per client; model: a 20 -> 2
logistic regression. FedML's own dataset loaders download their data, so the 8-item dataset list
FedML expects is built here. `check_env=False`: FedML's environment check calls the hosted platform.
"""

from __future__ import annotations

from typing import Any

import fedml
import torch
from fedml import FedMLRunner
from torch.utils.data import DataLoader, TensorDataset

FEATURES = 20
CLASSES = 2


def points(count: int, seed: int, plane: torch.Tensor, batch_size: int) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, FEATURES, generator=generator)
    y = (x @ plane > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def synthetic_dataset(args: Any) -> list[Any]:
    """FedML's dataset list: [train_num, test_num, train_global, test_global, local_num_dict,
    train_local_dict, test_local_dict, class_num]."""
    per_client = int(getattr(args, "samples_per_client", 200))
    batch = int(args.batch_size)
    plane = torch.randn(FEATURES, generator=torch.Generator().manual_seed(7))
    clients = int(args.client_num_in_total)
    train_local = {i: points(per_client, 100 + i, plane, batch) for i in range(clients)}
    test_local = {i: points(per_client // 4, 200 + i, plane, batch) for i in range(clients)}
    test_global = points(per_client, 999, plane, batch)
    train_global = points(per_client * clients, 998, plane, batch)
    local_num = {i: per_client for i in range(clients)}
    return [per_client * clients, per_client, train_global, test_global, local_num, train_local, test_local, CLASSES]


if __name__ == "__main__":
    args = fedml.init(check_env=False)
    device = fedml.device.get_device(args)
    model = torch.nn.Linear(FEATURES, CLASSES)
    FedMLRunner(args, device, synthetic_dataset(args), model).run()

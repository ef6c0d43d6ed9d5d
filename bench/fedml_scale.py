"""FedML crossSilo render cost at 2 and 500 clients: same resources, (nearly) same time.

    python bench/fedml_scale.py

Goal (issue 9): equal resource counts (the clients are one StatefulSet; only the ip-config CSV grows), and
the render time ratio 500/2 printed.
"""

from __future__ import annotations

from common import minikube_stack, scale_comparison

from tools.stack_files import StackFiles


def stack(clients: int) -> StackFiles:
    fedml = {"image": "registry.example/fedml-app:1.0", "command": ["python3", "/app/fl_node.py"], "clients": clients}
    return minikube_stack({"name": "silo", "framework": "fedml", "fedml": fedml})


scale_comparison("FedML clients", (2, 500), stack)

"""FedML crossSilo render cost at 2 and 500 clients: same resources, (nearly) same time.

    python bench/fedml_scale.py

Goal (issue 9): equal resource counts (the clients are one StatefulSet; only the ip-config CSV grows), and
the render time ratio 500/2 printed.
"""

from __future__ import annotations

import json
import statistics
from functools import partial

from common import median_seconds

from tools import render
from tools.stack_files import StackFiles


def stack(clients: int) -> StackFiles:
    fedml = {"image": "registry.example/fedml-app:1.0", "command": ["python3", "/app/fl_node.py"], "clients": clients}
    config = {
        "flstack:target": {"kind": "minikube", "minikube": {"kubernetesVersion": "1.34.0"}},
        "flstack:federations": [{"name": "silo", "framework": "fedml", "fedml": fedml}],
    }
    return StackFiles("flstack", "bench", {k: json.dumps(v) for k, v in config.items()}, frozenset())


sizes = (2, 500)
files = {n: stack(n) for n in sizes}
counts = {n: sum(render.render_config(files[n]).counts().values()) for n in sizes}
samples: dict[int, list[float]] = {n: [] for n in sizes}
for _ in range(15):  # interleaved, so drift on a shared machine hits both sizes alike
    for n in sizes:
        samples[n].append(median_seconds(partial(render.render_config, files[n]), repeats=1))
times = {n: statistics.median(samples[n]) for n in sizes}
for n in sizes:
    ms = times[n] * 1000
    print(f"{n:>5} FedML clients: {counts[n]} resources, render {ms:.1f} ms (CPU, median of 15, interleaved)")
print(f"resource counts equal: {counts[2] == counts[500]}")
print(f"render time ratio 500/2: {times[500] / times[2]:.2f}")

"""Flower render cost at 2 and 1000 SuperNodes: same resources, (nearly) same time.

    python bench/flower_scale.py

Goal (issue 3): equal resource counts, render time ratio 1000/2 at most 1.2.
"""

from __future__ import annotations

import json
import statistics
from functools import partial

from common import median_seconds

from tools import render
from tools.stack_files import StackFiles


def stack(supernodes: int) -> StackFiles:
    config = {
        "flstack:target": {"kind": "minikube", "minikube": {"kubernetesVersion": "1.34.0"}},
        "flstack:federations": [{"name": "demo", "framework": "flower", "flower": {"supernodes": supernodes}}],
    }
    return StackFiles("flstack", "bench", {k: json.dumps(v) for k, v in config.items()}, frozenset())


sizes = (2, 1000)
files = {n: stack(n) for n in sizes}
counts = {n: sum(render.render_config(files[n]).counts().values()) for n in sizes}
samples: dict[int, list[float]] = {n: [] for n in sizes}
for _ in range(15):  # interleaved, so drift on a shared machine hits both sizes alike
    for n in sizes:
        samples[n].append(median_seconds(partial(render.render_config, files[n]), repeats=1))
times = {n: statistics.median(samples[n]) for n in sizes}
for n in sizes:
    print(f"{n:>5} SuperNodes: {counts[n]} resources, render {times[n] * 1000:.1f} ms (CPU, median of 15, interleaved)")
print(f"resource counts equal: {counts[2] == counts[1000]}")
print(f"render time ratio 1000/2: {times[1000] / times[2]:.2f} (goal <= 1.2)")

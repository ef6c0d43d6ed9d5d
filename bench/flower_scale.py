"""Flower render cost at 2 and 1000 SuperNodes: same resources, (nearly) same time.

    python bench/flower_scale.py

Goal (issue 3): equal resource counts, render time ratio 1000/2 at most 1.2.
"""

from __future__ import annotations

import json
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


figures = {}
for n in (2, 1000):
    files = stack(n)
    count = sum(render.render_config(files).counts().values())
    figures[n] = (count, median_seconds(partial(render.render_config, files)))
    print(f"{n:>5} SuperNodes: {figures[n][0]} resources, render {figures[n][1] * 1000:.1f} ms (CPU, median of 7)")
print(f"resource counts equal: {figures[2][0] == figures[1000][0]}")
print(f"render time ratio 1000/2: {figures[1000][1] / figures[2][1]:.2f} (goal <= 1.2)")

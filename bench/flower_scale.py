"""Flower render cost at 2 and 1000 SuperNodes: same resources, (nearly) same time.

    python bench/flower_scale.py

Goal (issue 3): equal resource counts, render time ratio 1000/2 at most 1.2.
"""

from __future__ import annotations

from common import minikube_stack, scale_comparison

from tools.stack_files import StackFiles


def stack(supernodes: int) -> StackFiles:
    return minikube_stack({"name": "demo", "framework": "flower", "flower": {"supernodes": supernodes}})


scale_comparison("SuperNodes", (2, 1000), stack, goal=" (goal <= 1.2)")

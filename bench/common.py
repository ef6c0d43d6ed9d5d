"""Timing helpers for the bench scripts: figures are printed, never asserted."""

from __future__ import annotations

import atexit
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.mock_runtime import Recording, plain, release_loops, run_under_mocks  # noqa: E402
from tools.stack_files import StackFiles  # noqa: E402

atexit.register(release_loops)


def median_seconds(fn: Callable[[], object], repeats: int = 7) -> float:
    """Median CPU seconds of this process (all threads) per call: steady on a shared 2-core machine,
    where wall time swings with whatever else runs."""
    fn()  # warm-up: imports and caches are not what we measure
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


class _Trivial(pulumi.runtime.Mocks):
    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, object]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, object], None]:
        return {}, None


def bare_sdk_seconds(n: int, repeats: int = 5) -> float:
    """The SDK's own cost of registering `n` trivial custom resources under mocks (the baseline)."""
    files = StackFiles(project="bench", stack="bench", config={}, secret_keys=frozenset())

    def program() -> None:
        for i in range(n):
            pulumi.CustomResource("bench:index:Trivial", f"r{i}", {"value": i})

    return median_seconds(lambda: run_under_mocks(program, files, mocks.MockMonitor(_Trivial())), repeats)


def replay_seconds(recording: Recording, repeats: int = 7) -> float:
    """The SDK's cost of registering the recorded resources again, same types, names and inputs."""
    files = StackFiles(project="bench", stack="bench", config={}, secret_keys=frozenset())
    rows = [(reg.type, reg.name, plain(reg.inputs, reveal=True)) for reg in recording.resources.values()]

    def program() -> None:
        for type_, name, inputs in rows:
            pulumi.CustomResource(type_, name, dict(inputs))

    return median_seconds(lambda: run_under_mocks(program, files, mocks.MockMonitor(_Trivial())), repeats)


def typed_kubernetes_seconds(n: int, repeats: int = 7) -> float:
    """The SDK's cost of `n` typed pulumi_kubernetes Deployments of a realistic size (what a stack is made of)."""
    import pulumi_kubernetes as k8s

    files = StackFiles(project="bench", stack="bench", config={}, secret_keys=frozenset())
    container = {
        "name": "app",
        "image": "example/app:1.0",
        "args": [f"--flag-{i}=value" for i in range(8)],
        "env": [{"name": f"VAR_{i}", "value": "value"} for i in range(6)],
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    spec: Any = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [container]}},
    }

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        for i in range(n - 1):
            k8s.apps.v1.Deployment(
                f"d{i}", metadata={"name": f"d{i}"}, spec=spec, opts=pulumi.ResourceOptions(provider=provider)
            )

    return median_seconds(lambda: run_under_mocks(program, files, mocks.MockMonitor(_Trivial())), repeats)


def minikube_stack(federation: dict[str, Any]) -> StackFiles:
    """Stack files for one federation on a minikube target: the scale benches vary only the federation."""
    config = {
        "flstack:target": {"kind": "minikube", "minikube": {"kubernetesVersion": "1.34.0"}},
        "flstack:federations": [federation],
    }
    return StackFiles("flstack", "bench", {k: json.dumps(v) for k, v in config.items()}, frozenset())


def scale_comparison(noun: str, sizes: tuple[int, int], stack: Callable[[int], StackFiles], goal: str = "") -> None:
    """Prints resource counts and CPU render time at two sizes (15 interleaved samples each) and their ratio."""
    from tools import render

    files = {n: stack(n) for n in sizes}
    counts = {n: sum(render.render_config(files[n]).counts().values()) for n in sizes}
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(15):  # interleaved, so drift on a shared machine hits both sizes alike
        for n in sizes:
            samples[n].append(median_seconds(partial(render.render_config, files[n]), repeats=1))
    times = {n: statistics.median(samples[n]) for n in sizes}
    for n in sizes:
        print(f"{n:>5} {noun}: {counts[n]} resources, render {times[n] * 1000:.1f} ms (CPU, median of 15, interleaved)")
    small, large = sizes
    print(f"resource counts equal: {counts[small] == counts[large]}")
    print(f"render time ratio {large}/{small}: {times[large] / times[small]:.2f}{goal}")

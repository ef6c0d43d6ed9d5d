"""Timing helpers for the bench scripts: figures are printed, never asserted."""

from __future__ import annotations

import atexit
import statistics
import sys
import time
from collections.abc import Callable
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

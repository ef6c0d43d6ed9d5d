"""Render cost of a stack against the bare Pulumi SDK under the same mocks.

    python bench/render_cost.py [STACK]

Two baselines, each registering as many resources as the stack has:
  trivial  N resources with one small input each: the issue's goal is render <= 1.5x this per resource;
  replay   the same N resources with exactly the inputs the program produced (as plain CustomResources):
           the SDK's own cost of objects that size;
  typed    N typed pulumi_kubernetes Deployments of a realistic size: what the SDK charges for the
           typed Kubernetes classes a real stack is made of.
CPU seconds of this process, median of 7, so a busy machine does not skew the ratios.
"""

from __future__ import annotations

import sys

from common import bare_sdk_seconds, median_seconds, replay_seconds, typed_kubernetes_seconds

from tools import render

stack = sys.argv[1] if len(sys.argv) > 1 else "local-flower"
recording = render.render(stack).recording
count = len(recording.resources)
render_s = median_seconds(lambda: render.render(stack))
trivial_s = bare_sdk_seconds(count)
replay_s = replay_seconds(recording)
typed_s = typed_kubernetes_seconds(count)
print(f"stack {stack}: {count} resources (CPU ms, median of 7)")
rows = (
    ("render (the program)", render_s),
    ("SDK, trivial", trivial_s),
    ("SDK, replay", replay_s),
    ("SDK, typed Deployments", typed_s),
)
for label, seconds in rows:
    print(f"  {label:<22} {seconds * 1000:8.1f} ms  {seconds / count * 1000:6.2f} ms/resource")
print(f"  render / trivial per resource: {render_s / trivial_s:.2f}x (goal <= 1.5x)")
print(f"  render / replay of the same inputs: {render_s / replay_s:.2f}x")
print(f"  render / typed Kubernetes resources: {render_s / typed_s:.2f}x")

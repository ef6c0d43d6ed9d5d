"""Render cost of a stack against the bare Pulumi SDK under the same mocks.

    python bench/render_cost.py [STACK]

Two baselines, each registering as many resources as the stack has:
  trivial  N resources with one small input each: the issue's goal is render <= 1.5x this per resource;
  replay   the same N resources with exactly the inputs the program produced: the SDK's own cost of
           those objects, so render/replay is what flstack itself (config, components, recording) adds.
CPU seconds of this process, median of 7, so a busy machine does not skew the ratios.
"""

from __future__ import annotations

import sys

from common import bare_sdk_seconds, median_seconds, replay_seconds

from tools import render

stack = sys.argv[1] if len(sys.argv) > 1 else "local-flower"
recording = render.render(stack).recording
count = len(recording.resources)
render_s = median_seconds(lambda: render.render(stack))
trivial_s = bare_sdk_seconds(count)
replay_s = replay_seconds(recording)
print(f"stack {stack}: {count} resources (CPU ms, median of 7)")
for label, seconds in (("render (the program)", render_s), ("SDK, trivial", trivial_s), ("SDK, replay", replay_s)):
    print(f"  {label:<22} {seconds * 1000:8.1f} ms  {seconds / count * 1000:6.2f} ms/resource")
print(f"  render / trivial per resource: {render_s / trivial_s:.2f}x (goal <= 1.5x)")
print(f"  render / replay (flstack's own overhead): {render_s / replay_s:.2f}x")

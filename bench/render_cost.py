"""Render time of the default stack against the bare SDK cost of as many trivial resources.

    python bench/render_cost.py [STACK]

Goal (issue 2): render time per resource at most 1.5x the bare SDK's per-resource cost.
"""

from __future__ import annotations

import sys

from common import bare_sdk_seconds, median_seconds

from tools import render

stack = sys.argv[1] if len(sys.argv) > 1 else "local-flower"
count = sum(render.render(stack).counts().values())
render_s = median_seconds(lambda: render.render(stack))
bare_s = bare_sdk_seconds(count)
print(f"stack {stack}: {count} resources")
print(
    f"  render (program under mocks, median of 5): {render_s * 1000:8.1f} ms  {render_s / count * 1e3:6.2f} ms/resource"
)
print(f"  bare SDK, {count} trivial resources:       {bare_s * 1000:8.1f} ms  {bare_s / count * 1e3:6.2f} ms/resource")
print(f"  ratio render/bare per resource: {render_s / bare_s:.2f}x (goal <= 1.5x)")

"""NVFlare: real kit provisioning time and offline render time, for 2 and 100 sites.

    python bench/nvflare_provision.py

Provisioning runs nvflare's Provisioner exactly as the kits resource does (create, then an update adding
one site with the saved certificate state); the render is the whole program under mocks.
"""

from __future__ import annotations

import json
from typing import Any

from common import median_seconds

from components.federations import nvflare_kits
from tools import render
from tools.mock_runtime import plain
from tools.stack_files import StackFiles

SITE_COUNTS = (2, 100)


def stack(sites: int) -> StackFiles:
    target = {"kind": "minikube", "minikube": {"profile": "bench", "kubernetesVersion": "1.34.0"}}
    federation = {
        "name": "bench",
        "framework": "nvflare",
        "nvflare": {"sites": [f"site-{i}" for i in range(1, sites + 1)]},
    }
    config = {"flstack:target": json.dumps(target), "flstack:federations": json.dumps([federation])}
    return StackFiles(project="flstack", stack="bench", config=config, secret_keys=frozenset())


def kit_inputs(rendering: render.Rendering) -> dict[str, Any]:
    (registration,) = [r for r in rendering.recording.resources.values() if r.type == nvflare_kits.TYPE]
    return nvflare_kits.kit_inputs(plain(registration.inputs, reveal=True))


def measure(count: int) -> None:
    rendering = render.render_config(stack(count))
    resources = sum(rendering.counts().values())
    inputs = kit_inputs(rendering)
    created = nvflare_kits.provision(inputs)
    plus_one = {**inputs, "sites": [*inputs["sites"], "site-new"]}
    create_s = median_seconds(lambda: nvflare_kits.provision(inputs), repeats=3)
    update_s = median_seconds(lambda: nvflare_kits.provision(plus_one, created["certState"]), repeats=3)
    state_kib = len(json.dumps(created)) / 1024
    render_s = median_seconds(lambda: render.render_config(stack(count)))
    print(f"  {count:>3} sites: provision {create_s * 1000:7.1f} ms   update +1 site {update_s * 1000:7.1f} ms")
    print(f"             kits + certificate state kept in the stack state: {state_kib:7.1f} KiB")
    per_resource = render_s / resources * 1e3
    print(f"             render {render_s * 1000:7.1f} ms for {resources} resources ({per_resource:.2f} ms each)")


print("NVFlare kits: real provisioning (nvflare's Provisioner, median of 3) and offline render (median of 5)")
for count in SITE_COUNTS:
    measure(count)

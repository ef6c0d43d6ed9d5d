"""NVFlare: what adding one site costs at 2 and at 100 sites, with real provisioning, and the render time.

    python bench/nvflare_provision.py

Each size is first brought up (every kit provisioned by nvflare's Provisioner through the providers the
program registers: tools/dynamic_up drives them as `pulumi up` does), then one site is added to copies of
that state: the figures are the providers' CPU time in that `up` (create of the new kit, diff of every
existing one) and the bytes of state it rewrote. Goal: at 100 sites at most 1.5x what it costs at 2, with
every existing certificate and key byte-identical. The render is the whole program under mocks.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

from common import median_seconds, minikube_stack

from components.federations import nvflare_kits
from tools import render
from tools.dynamic_up import DynamicUp
from tools.mock_runtime import OfflineMocks
from tools.stack_files import StackFiles

SITE_COUNTS = (2, 100)
TRIALS = 7  # site additions per size; the median is reported (RSA key generation time varies widely)
GOAL = 1.5


def stack(sites: list[str]) -> StackFiles:
    return minikube_stack({"name": "bench", "framework": "nvflare", "nvflare": {"sites": sites}})


def sites(count: int) -> list[str]:
    return [f"site-{i}" for i in range(1, count + 1)]


def up(engine: DynamicUp, files: StackFiles) -> render.Rendering:
    engine.next_up()
    mocks = OfflineMocks(synthesizers=engine.synthesizers(nvflare_kits.CA_TYPE, nvflare_kits.KIT_TYPE))
    return render.render_config(files, mocks)


def key_material(state: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {
        f"{name}/{file}": text
        for name, outs in state.items()
        for kit in (outs.get("kit"), outs.get("serverKit"))
        if kit
        for file, text in kit["startup"].items()
        if file.endswith((".crt", ".key", ".pem"))
    }


def measure(count: int) -> dict[str, float]:
    base = DynamicUp()
    up(base, stack(sites(count)))
    first_s, first_bytes = base.provider_seconds, sum(base.written.values())
    existing = key_material(base.state)
    seconds, written, identical = [], [], True
    for _ in range(TRIALS):
        engine = DynamicUp(state=copy.deepcopy(base.state))
        up(engine, stack([*sites(count), "site-new"]))
        seconds.append(engine.provider_seconds)
        written.append(sum(engine.written.values()))
        after = key_material(engine.state)
        identical &= {k: after[k] for k in existing} == existing and list(engine.written) == ["bench-kit-site-new"]
    render_s = median_seconds(lambda: render.render_config(stack(sites(count))), repeats=3)
    add_s, add_bytes = statistics.median(seconds), statistics.median(written)
    first, add = f"{first_s * 1000:7.1f} ms", f"{add_s * 1000:7.1f} ms"
    print(f"  {count:>3} sites: first up: provisioning {first}, state written {first_bytes / 1024:7.1f} KiB")
    print(f"             add a site: provisioning {add}, state written {add_bytes / 1024:7.1f} KiB")
    print(f"             every existing certificate and key byte-identical, only the new kit written: {identical}")
    print(f"             offline render {render_s * 1000:7.1f} ms")
    return {"seconds": add_s, "bytes": add_bytes}


print(f"NVFlare kits: adding one site (providers' CPU time, median of {TRIALS}) and offline render (median of 3)")
small, large = (measure(n) for n in SITE_COUNTS)
for figure in ("seconds", "bytes"):
    ratio = large[figure] / small[figure]
    print(f"add-a-site {figure} ratio {SITE_COUNTS[1]}/{SITE_COUNTS[0]}: {ratio:.2f} (goal <= {GOAL})")

"""The worked cross-silo Flower pair rendered as its `pulumi up`s happen, with real keys and certificates.

Order: the hub before the site joined (tools/linked.py drops the participant entry), the site from that
render's outputs, the hub again from the site's outputs. The hub's pulumi-tls state is kept between its two
ups (real_tls `state`), so the CA the site trusts is the one the hub's second render serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.e2e.real_tls import mocks_with_real_tls
from tools import linked, render, stack_files

HUB, SITE = "eks-flower-hub", "onprem-flower-site"
HUB_REF, SITE_REF = "hub-org/flstack/eks-flower-hub", "lab-org/flstack/onprem-flower-site"


@dataclass
class Ups:
    hub: render.Rendering  # after its second up
    site: render.Rendering


def rendered_in_order_of_ups() -> Ups:
    hub_state: dict[Any, Any] = {}
    hub_files = stack_files.load(HUB)
    first = render.render_config(linked.before_joining(hub_files, {SITE_REF}), mocks_with_real_tls(hub_state))
    site = render.render_config(
        stack_files.load(SITE), mocks_with_real_tls(), stack_outputs={HUB_REF: first.stack_outputs()}
    )
    hub = render.render_config(
        hub_files, mocks_with_real_tls(hub_state), stack_outputs={SITE_REF: site.stack_outputs()}
    )
    return Ups(hub, site)

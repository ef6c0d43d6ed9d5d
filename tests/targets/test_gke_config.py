"""Bad GKE settings: one clear line per problem, with the full key path, before any resource exists."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError, parse
from tests.helpers import GKE, gke

POOL = {"name": "general"}
KEY = "projects/p-12345/locations/{}/keyRings/r/cryptoKeys/k"

BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "gke", "gke": {}}, "flstack:target.gke.project: required: expected a Google Cloud project id"),
    (gke(region="Europe"), "flstack:target.gke.region: expected a Google Cloud region such as europe-west4"),
    (gke(name="a" * 25), "flstack:target.gke.name: expected a cluster name (lowercase, '-', at most 24)"),
    (gke(releaseChannel="EXTENDED"), "flstack:target.gke.releaseChannel: expected one of 'RAPID', 'REGULAR'"),
    (gke(authorizedNetworks=[]), "flstack:target.gke.authorizedNetworks: required unless dnsEndpoint is true"),
    (
        gke(authorizedNetworks=["0.0.0.0/0"]),
        "flstack:target.gke.authorizedNetworks[0]: '0.0.0.0/0' opens the control plane to the whole internet",
    ),
    (gke(dnsEndpoint=True), "flstack:target.gke.authorizedNetworks: not used with dnsEndpoint: true"),
    (gke(podsCidr="10.0.0.0/14"), "flstack:target.gke.subnetCidr: 10.0.0.0/20 overlaps podsCidr (10.0.0.0/14)"),
    (gke(servicesCidr="10.8.0.1/20"), "flstack:target.gke.servicesCidr: expected an IPv4 network address"),
    (gke(zones=["europe-west1-b"]), "flstack:target.gke.zones[0]: 'europe-west1-b' is not in region 'europe-west4'"),
    (gke(kmsKey="my-key"), "flstack:target.gke.kmsKey: expected projects/P/locations/L/keyRings/R/cryptoKeys/K"),
    (
        gke(kmsKey=KEY.format("global")),
        "flstack:target.gke.kmsKey: the key must be in the cluster's region 'europe-west4'",
    ),
    (gke(deletionProtection="no"), "flstack:target.gke.deletionProtection: expected true or false, got 'no'"),
    (gke(nodePools=[]), "flstack:target.gke.nodePools: list at least one node pool"),
    (gke(nodePools=[POOL, POOL]), "flstack:target.gke.nodePools: node pool name 'general' is used twice"),
    (
        gke(nodePools=[{"name": "g", "taints": ["x=y:NoSchedule"]}]),
        "flstack:target.gke.nodePools: every pool is tainted: kube-dns and the CSI controllers need one",
    ),
    (
        gke(nodePools=[{"name": "g", "taints": ["x=y"]}]),
        "flstack:target.gke.nodePools[0].taints[0]: expected a taint such as fltk.node=normal:NoSchedule",
    ),
    (
        gke(nodePools=[{"name": "g", "minNodes": 3, "maxNodes": 2}]),
        "flstack:target.gke.nodePools[0].minNodes: need minNodes <= maxNodes, got 3 > 2",
    ),
    (
        gke(nodePools=[POOL, {"name": "gpu", "machineType": "e2-standard-8", "gpu": {"type": "nvidia-l4"}}]),
        "flstack:target.gke.nodePools[1].machineType: nvidia-l4 needs a g2 machine",
    ),
    (
        gke(nodePools=[{"name": "g", "machineType": "n4-standard-4"}]),
        "flstack:target.gke.nodePools[0].diskType: n4-standard-4 attaches only Hyperdisk: use 'hyperdisk-balanced'",
    ),
    (
        gke(nodePools=[POOL, {"name": "gpu", "gpu": {"driverVersion": "INSTALLATION_DISABLED"}}]),
        "flstack:target.gke.nodePools[1].gpu.driverVersion: expected one of 'DEFAULT', 'LATEST'",
    ),
    (gke(nodePools=[{"name": "g", "minNodse": 1}]), "flstack:target.gke.nodePools[0].minNodse: unknown key"),
    ({"kind": "gke", "eks": {}}, "flstack:target.eks: settings for 'eks' given but kind is 'gke'"),
]


@pytest.mark.parametrize(("target", "expected"), BAD, ids=[line.split(": ")[0].split(":")[1] for _, line in BAD])
def test_bad_gke_settings_name_the_full_key(target: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"target": target})
    assert expected in str(err.value)


def test_defaults_give_a_private_regional_cluster_with_one_general_pool() -> None:
    settings = parse({"target": GKE}).target.settings
    assert (settings.name, settings.release_channel, settings.deletion_protection) == ("flstack", "REGULAR", True)
    assert [p.name for p in settings.node_pools] == ["general"]
    assert settings.node_pools[0].disk_type == "pd-balanced" and settings.node_pools[0].gpu is None
    dns = {"kind": "gke", "gke": {"project": "p-12345", "region": "europe-west4", "dnsEndpoint": True}}
    assert parse({"target": dns}).target.settings.dns_endpoint is True

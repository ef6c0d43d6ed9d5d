"""Availability zones on EKS (rendered inputs only): by zone ID, pinned, never one EKS rejects."""

from __future__ import annotations

from typing import Any

from tests.helpers import by_name, eks, render
from tools.mock_runtime import OfflineMocks

US_EAST_1 = {  # zone name -> zone ID as one account sees them (names differ per account, IDs do not)
    "us-east-1a": "use1-az6",
    "us-east-1b": "use1-az1",
    "us-east-1c": "use1-az2",
    "us-east-1d": "use1-az4",
    "us-east-1e": "use1-az3",
    "us-east-1f": "use1-az5",
}
invokes: list[dict[str, Any]] = []


def zones_call(args: dict[str, Any], region: str) -> dict[str, Any]:
    invokes.append(args)
    excluded = set(args.get("excludeZoneIds", []))
    kept = {name: zid for name, zid in US_EAST_1.items() if zid not in excluded}
    return {"names": list(kept), "zoneIds": list(kept.values())}


def subnet_zones(rows: list[dict[str, Any]]) -> list[str]:
    subnets = by_name(rows, "aws:ec2/subnet:Subnet")
    return [
        subnets[f"cluster-network-{kind}-{i}"]["inputs"]["availabilityZoneId"]
        for kind in ("private", "public")
        for i in range(3)
    ]


def test_unpinned_zones_skip_the_ones_eks_rejects() -> None:
    invokes.clear()
    mock = OfflineMocks(calls={"aws:index/getAvailabilityZones:getAvailabilityZones": zones_call})
    rows = render({"target": eks(region="us-east-1")}, mock).resources()
    assert subnet_zones(rows) == ["use1-az1", "use1-az2", "use1-az4"] * 2  # use1-az3 skipped
    assert invokes[0]["excludeZoneIds"] == ["cac1-az3", "use1-az3", "usw1-az2"]


def test_even_when_the_lookup_returns_a_rejected_zone_it_is_not_used() -> None:
    def careless(args: dict[str, Any], region: str) -> dict[str, Any]:  # ignores excludeZoneIds
        return {"names": list(US_EAST_1), "zoneIds": list(US_EAST_1.values())}

    mock = OfflineMocks(calls={"aws:index/getAvailabilityZones:getAvailabilityZones": careless})
    rows = render({"target": eks(region="us-east-1")}, mock).resources()
    assert "use1-az3" not in subnet_zones(rows)


def test_pinned_zone_ids_are_used_as_given_without_a_lookup() -> None:
    invokes.clear()
    mock = OfflineMocks(calls={"aws:index/getAvailabilityZones:getAvailabilityZones": zones_call})
    pinned = ["use1-az4", "use1-az5", "use1-az6"]
    rows = render({"target": eks(region="us-east-1", zoneIds=pinned)}, mock).resources()
    assert subnet_zones(rows) == pinned * 2
    assert invokes == []  # nothing looked up: an impaired zone at the next `up` cannot move a subnet

"""KubeFATE cluster.yaml files -> the equivalent flstack FATE federation (stack config).

    python -m tools.import_kubefate party-9999/cluster.yaml party-10000/cluster.yaml [--name fate]

Each cluster.yaml is one party (`partyId`, `namespace`); parties named only in another file's
`partyList` (osx, rollsite, nginx or rabbitmq route) join with flstack's default namespace. What flstack
does differently (OSX/eggroll -> RabbitMQ through mTLS proxies, always persistent, FATE 2.2.0) is printed
as comments on top, so nothing is dropped silently. Prints YAML for `flstack:federations` to paste into
stacks/Pulumi.<env>.yaml; exit 2 with one line per problem on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

import components.federations
import components.targets  # noqa: F401
from components.config import ConfigError, parse

ROUTED_MODULES = ("osx", "rollsite", "nginx", "rabbitmq", "pulsar")  # where KubeFATE keeps a partyList
SUPPORTED_VERSION = "2.2.0"


class KubefateError(Exception):
    pass


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise KubefateError(f"{path}: cannot read it as YAML ({err})") from err
    if not isinstance(data, dict):
        raise KubefateError(f"{path}: expected a KubeFATE cluster.yaml mapping, got {type(data).__name__}")
    return data


def _party_id(value: Any, where: str) -> int:
    try:
        party = int(str(value))
    except ValueError:
        raise KubefateError(f"{where}: {value!r} is not a FATE party id (an integer)") from None
    if party < 1:
        raise KubefateError(f"{where}: {party} is not a FATE party id (>= 1)")
    return party


def _resources(python: dict[str, Any]) -> dict[str, str] | None:
    resources = python.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    memory = limits.get("memory") or requests.get("memory")
    cpu = requests.get("cpu") or limits.get("cpu")
    out = {k: str(v) for k, v in (("cpu", cpu), ("memory", memory)) if v}
    return out or None


def convert(paths: list[Path], name: str) -> tuple[dict[str, Any], list[str]]:
    """(the federation entry, notes on what changes) for the cluster.yaml files at `paths`."""
    parties: dict[int, dict[str, Any]] = {}
    seen_in: dict[int, str] = {}
    listed: dict[int, str] = {}  # party ids only named in a partyList -> where
    notes: list[str] = []
    settings: dict[str, Any] = {}
    for path in paths:
        cluster = _load(path)
        if "partyId" not in cluster:
            raise KubefateError(f"{path}: partyId: required (the party this cluster.yaml deploys)")
        party = _party_id(cluster["partyId"], f"{path}: partyId")
        if party in seen_in:
            raise KubefateError(f"{path}: partyId: {party} is already the party of {seen_in[party]}")
        seen_in[party] = str(path)
        entry: dict[str, Any] = {"id": party}
        if cluster.get("namespace"):
            entry["namespace"] = str(cluster["namespace"])
        parties[party] = entry
        for module in ROUTED_MODULES:
            for i, peer in enumerate((cluster.get(module) or {}).get("partyList") or []):
                where = f"{path}: {module}.partyList[{i}].partyId"
                listed.setdefault(_party_id((peer or {}).get("partyId"), where), where)
        version = str(cluster.get("chartVersion", "")).lstrip("v")
        if version and version != SUPPORTED_VERSION:
            notes.append(f"{path}: chartVersion {cluster['chartVersion']}: flstack deploys FATE {SUPPORTED_VERSION}")
        computing, federation = cluster.get("computing"), cluster.get("federation")
        if computing and str(computing).lower() != "standalone":
            notes.append(f"{path}: computing {computing}: flstack runs standalone computing in the fateflow pod")
        if federation and str(federation).lower() != "rabbitmq":
            notes.append(f"{path}: federation {federation}: flstack uses RabbitMQ between mTLS proxies")
        if cluster.get("persistence") is False:
            notes.append(f"{path}: persistence false: flstack always keeps fate_flow's data on a retained volume")
        modules = set(cluster.get("modules") or [])
        if "fateboard" in modules:  # flstack runs FATEBoard per party too, beside its own fate_flow
            settings["fateboard"] = {"enabled": True}
        dropped = sorted(modules - {"python", "client", "fateboard"})
        if dropped:
            notes.append(f"{path}: modules {', '.join(dropped)}: not deployed (fateflow, RabbitMQ, nginx proxy only)")
        if cluster.get("ingress"):
            notes.append(f"{path}: ingress: not created (reach FATEBoard with its portForward output)")
        if cluster.get("registry"):
            image = f"{str(cluster['registry']).rstrip('/')}/fateflow"
            if settings.setdefault("image", image) != image:
                notes.append(f"{path}: registry {cluster['registry']}: kept {settings['image']} from an earlier file")
        resources = _resources(cluster.get("python") or {})
        if resources and settings.setdefault("flowResources", resources) != resources:
            notes.append(f"{path}: python.resources differ from an earlier file's: kept the first")
    for party in sorted(set(listed) - set(parties)):
        parties[party] = {"id": party}
        notes.append(f"{listed[party]}: party {party} has no cluster.yaml here: namespace {name}-{party} assumed")
    federation_entry = {"name": name, "framework": "fate", "fate": {"parties": list(parties.values()), **settings}}
    return federation_entry, notes


def render_yaml(entry: dict[str, Any], notes: list[str]) -> str:
    header = "# Paste under `config:` in stacks/Pulumi.<env>.yaml (next to flstack:target). Converted from KubeFATE:\n"
    header += "".join(f"# {note}\n" for note in notes)
    return header + yaml.safe_dump({"flstack:federations": [entry]}, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="KubeFATE cluster.yaml files -> flstack stack config")
    parser.add_argument("cluster_yaml", nargs="+", type=Path, help="one KubeFATE cluster.yaml per party")
    parser.add_argument("--name", default="fate", help="the federation's name (default: fate)")
    args = parser.parse_args(argv)
    try:
        entry, notes = convert(args.cluster_yaml, args.name)
        # The result must pass flstack's own validation, as `pulumi up` would run it.
        parse({"target": {"kind": "minikube"}, "federations": [entry]})
    except KubefateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f"error: the converted config is not valid for flstack:\n{err}", file=sys.stderr)
        return 2
    sys.stdout.write(render_yaml(entry, notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reads the project's config the way the Pulumi CLI does: Pulumi.yaml defaults, then the stack file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SECRET_PLACEHOLDER = "[secret {key}]"

# Shipped stacks that read each other (pulumi.StackReference): the referenced ORG/PROJECT/STACK -> the shipped
# stack whose offline render stands in for it (tools/linked.py renders it first and passes its outputs).
REFERENCED_STACKS: dict[str, str] = {
    "hub-org/flstack/eks-flower-hub": "eks-flower-hub",
    "lab-org/flstack/onprem-flower-site": "onprem-flower-site",
    "hub-org/flstack/eks-nvflare-hub": "eks-nvflare-hub",
}
# Stacks that read each other as equals (FATE parties: each reads the other's exchange). Each stands in for
# its name as after its first `pulumi up`, before any peer had deployed (its own references read nothing),
# which is also how their first ups go (README, Cross-silo).
PEER_STACKS: dict[str, str] = {f"fl-consortium/flstack/{stack}": stack for stack in ("fate-silo-a", "fate-silo-b")}


class StackNotFoundError(Exception):
    pass


@dataclass(frozen=True)
class StackFiles:
    project: str
    stack: str
    config: dict[str, str]  # full key -> value as the engine passes it (JSON text for objects)
    secret_keys: frozenset[str]  # top-level keys holding at least one `secure:` value
    root: Path = ROOT  # the project directory: Pulumi.yaml and __main__.py


def stack_names(root: Path | None = None) -> list[str]:
    root = root or ROOT
    config_dir = root / _project(root).get("stackConfigDir", ".")
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in config_dir.glob("Pulumi.*.yaml"))


def _project(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "Pulumi.yaml").read_text()) or {}


def _full_key(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _hide_secrets(value: Any, key: str) -> tuple[Any, bool]:
    """Replaces every `secure:` value by a visible placeholder (nothing here can decrypt it)."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER.format(key=key), True
        found = False
        out = {}
        for k, v in value.items():
            out[k], hit = _hide_secrets(v, f"{key}.{k}")
            found |= hit
        return out, found
    if isinstance(value, list):
        items = [_hide_secrets(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], any(hit for _, hit in items)
    return value, False


def _as_engine_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def load(stack: str, root: Path | None = None) -> StackFiles:
    root = root or ROOT
    project = _project(root)
    name = project["name"]
    path = root / project.get("stackConfigDir", ".") / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise StackNotFoundError(f"no stack named {stack!r}: there is no {path.relative_to(root)} (stacks: {known})")
    values: dict[str, Any] = {}
    for key, spec in (project.get("config") or {}).items():
        if isinstance(spec, dict) and ("value" in spec or "default" in spec):
            values[_full_key(name, key)] = spec.get("value", spec.get("default"))
        elif not isinstance(spec, dict):
            values[_full_key(name, key)] = spec
    stack_doc = yaml.safe_load(path.read_text()) or {}
    for key, value in (stack_doc.get("config") or {}).items():
        values[_full_key(name, key)] = value
    config: dict[str, str] = {}
    secrets: set[str] = set()
    for key, value in values.items():
        shown, is_secret = _hide_secrets(value, key)
        config[key] = _as_engine_string(shown)
        if is_secret:
            secrets.add(key)
    return StackFiles(project=name, stack=stack, config=config, secret_keys=frozenset(secrets), root=root)

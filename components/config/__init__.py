"""Stack config: read every `flstack:` key, validate it all before any resource exists."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from . import registry
from .model import FederationConfig, StackConfig, StorageConfig, TargetConfig
from .schema import Problems, Secret, parse_object

NAMESPACE = "flstack"
TOP_LEVEL = {"target", "storage", "federations", "operators", "imageDigests"}

__all__ = [
    "ConfigError",
    "FederationConfig",
    "Secret",
    "StackConfig",
    "StorageConfig",
    "TargetConfig",
    "load",
    "parse",
    "registry",
]


class ConfigError(pulumi.RunError):
    """Bad stack config. A RunError so the engine prints the message alone, without a traceback."""


def parse(raw: dict[str, Any], secret_keys: set[str] | frozenset[str] = frozenset()) -> StackConfig:
    """Validates the `flstack:` values (keys without the namespace); raises ConfigError listing every problem.

    `secret_keys` are full top-level keys (`flstack:target`) the engine marked secret: Pulumi marks the whole
    object secret when any value inside it was set with --secret, so that is the granularity we can check.
    """

    def is_secret(path: str) -> bool:
        return any(path == key or path.startswith((key + ".", key + "[")) for key in secret_keys)

    problems = Problems(is_secret)
    for key in sorted(set(raw) - TOP_LEVEL):
        problems.add(f"{NAMESPACE}:{key}", f"unknown key; allowed: {', '.join(sorted(TOP_LEVEL))}")
    if "target" not in raw:
        problems.add(f"{NAMESPACE}:target", "required: set it in stacks/Pulumi.<stack>.yaml (see the README)")
    root = {k: v for k, v in raw.items() if k in TOP_LEVEL}
    result = parse_object(StackConfig, root, NAMESPACE + ":", problems) if "target" in raw else None
    if problems.lines:
        lines = problems.lines
        noun = "problem" if len(lines) == 1 else "problems"
        raise ConfigError(f"invalid stack config ({len(lines)} {noun}):\n  " + "\n  ".join(lines))
    assert isinstance(result, StackConfig)
    return _verify_defaults(result)


def _verify_defaults(stack: StackConfig) -> StackConfig:
    """Each federation's unset `verify` becomes its default: on where the target verifies by default (the
    local minikube target) and the framework has a verification Job."""
    default = registry.verifies_by_default(stack.target.kind)
    federations = [
        fed if fed.verify is not None else dataclasses.replace(fed, verify=default and _can_verify(fed))
        for fed in stack.federations
    ]
    return dataclasses.replace(stack, federations=federations)


def _can_verify(fed: FederationConfig) -> bool:
    """The framework has a verification Job and these settings do not rule it out (`verify_refusal`)."""
    refusal = getattr(fed.settings, "verify_refusal", None)
    return registry.verifies(fed.framework) and not (callable(refusal) and refusal())


def load() -> StackConfig:
    """Reads the current stack's `flstack:` config from the Pulumi runtime and validates it."""
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw: dict[str, Any] = {}
    secret: set[str] = set()
    for full_key in sorted(keys):
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        text = runtime_config.get_config(full_key)
        try:
            raw[key] = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            raw[key] = text  # a plain string: parse() reports it against the expected type
        if runtime_config.is_config_secret(full_key):
            secret.add(full_key)
    return parse(raw, secret)

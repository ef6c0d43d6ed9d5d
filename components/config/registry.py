"""Which target kinds and frameworks exist, for the config model to validate against.

The config package sits below the layers it describes, so it never imports them: `components.targets`
and `components.federations` put their one registration table here when they are imported (as
`__main__.py`, the tools and the tests' conftest do). Each entry is the component class; the model reads
its `Settings` dataclass and, for targets, the `SHARED_STORAGE` it offers.
"""

from __future__ import annotations

from typing import Any

TARGETS: dict[str, Any] = {}  # target kind -> component (filled by components.targets)
FRAMEWORKS: dict[str, Any] = {}  # framework name -> component (filled by components.federations)


def _filled(table: dict[str, Any], layer: str) -> dict[str, Any]:
    if not table:  # a programming error (an entry point forgot to import the layer), not bad user input
        raise RuntimeError(f"no {layer} registered: import {layer} before parsing stack config")
    return table


def target_settings() -> dict[str, type]:
    return {kind: component.Settings for kind, component in _filled(TARGETS, "components.targets").items()}


def framework_settings() -> dict[str, type]:
    return {name: component.Settings for name, component in _filled(FRAMEWORKS, "components.federations").items()}


def shared_storage(kind: str) -> dict[str, str | None]:
    """The ReadWriteMany kinds target `kind` brings itself (beyond nfs and existing) -> smallest claim it serves."""
    component = _filled(TARGETS, "components.targets").get(kind)
    return dict(getattr(component, "SHARED_STORAGE", {}))


def load_balancer_refusal(kind: str) -> str | None:
    """Why target `kind` cannot give a LoadBalancer Service an address during `up` (None: it can)."""
    component = _filled(TARGETS, "components.targets").get(kind)
    refusal: str | None = getattr(component, "NO_LOAD_BALANCERS", None)
    return refusal


def verifies_by_default(kind: str) -> bool:
    """Whether federations on target `kind` get a verification Job unless they set `verify` (VERIFY_BY_DEFAULT)."""
    component = _filled(TARGETS, "components.targets").get(kind)
    return bool(getattr(component, "VERIFY_BY_DEFAULT", False))


def verifies(framework: str) -> bool:
    """Whether `framework`'s component can add a verification Job (its class sets VERIFIES = True)."""
    component = _filled(FRAMEWORKS, "components.federations").get(framework)
    return bool(getattr(component, "VERIFIES", False))

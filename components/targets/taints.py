"""Node taints as config spells them (Kubernetes: `key=value:NoSchedule`) and as cloud APIs want them."""

from __future__ import annotations

import re

TAINT = r"([A-Za-z0-9][-A-Za-z0-9_./]*)(=([-A-Za-z0-9_.]*))?:(NoSchedule|PreferNoSchedule|NoExecute)"
TAINT_HELP = "a taint such as fltk.node=normal:NoSchedule (key[=value]:Effect)"
# EKS and GKE both take the effect in upper snake case.
API_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


def parse_taint(text: str) -> tuple[str, str | None, str]:
    """`fltk.node=normal:NoSchedule` -> (`fltk.node`, `normal`, `NO_SCHEDULE`)."""
    match = re.fullmatch(TAINT, text)
    assert match, text  # validated in the config
    return match.group(1), match.group(3), API_EFFECTS[match.group(4)]


def is_tainted(taints: list[str] | None) -> bool:
    """Pods without a toleration cannot run on such nodes (PreferNoSchedule only discourages them)."""
    return any(t is not None and not t.endswith(":PreferNoSchedule") for t in taints or [])

"""Every rule of the flstack pack, in one table (`__main__.py` turns them into pulumi_policy policies)."""

from __future__ import annotations

from policies import cloud, cluster, pods
from policies.base import Rule, StackRule

RULES: dict[str, Rule] = {rule.name: rule for rule in [*pods.RULES, *cluster.RULES, *cloud.RULES]}
STACK_RULES: dict[str, StackRule] = {rule.name: rule for rule in cluster.STACK_RULES}

"""The flstack policy pack: `pulumi preview --policy-pack policies [--policy-pack-config config.json]`."""

import sys
from pathlib import Path

# The rules are the importable package `policies` (unit-tested from the repository root).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from policies.pack import policies

PolicyPack(name="flstack", policies=policies())

"""Storage belongs to the target: its block-storage class and the ReadWriteMany kinds it registers."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from components import storage
from components.config import ConfigError, parse, registry
from tests.helpers import MINIKUBE
from tools.stack_files import ROOT

SHARED_DATA = {"name": "demo", "framework": "flower", "flower": {"supernodes": 1, "sharedData": {"size": "200Gi"}}}


@dataclass(frozen=True)
class LabSettings:
    site: str = "lab"


class LabCluster:
    """A target that brings its own ReadWriteMany kind with a size floor, registered like a real one."""

    Settings = LabSettings
    SHARED_STORAGE: ClassVar[dict[str, str | None]] = {"labfs": "1Ti", "tinyfs": None}

    def __init__(self) -> None:
        self.provider: Any = None
        self.asked: list[str] = []

    def block_storage(self) -> str:
        return "lab-block"

    def shared_storage(self, kind: str) -> str:
        self.asked.append(kind)
        return f"lab-{kind}"


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.TARGETS, "lab", LabCluster)


def test_a_registered_target_kind_is_accepted_with_its_own_shared_kinds(lab: None) -> None:
    stack = parse({"target": {"kind": "lab"}, "storage": {"shared": {"kind": "tinyfs"}}, "federations": [SHARED_DATA]})
    assert stack.storage.shared.kind == "tinyfs"
    with pytest.raises(ConfigError) as err:
        parse({"target": MINIKUBE, "storage": {"shared": {"kind": "labfs"}}})
    assert "flstack:storage.shared.kind: 'labfs' needs the lab target (target is 'minikube')" in str(err.value)


def test_a_claim_below_the_kinds_floor_names_the_minimum_and_suggests_nfs(lab: None) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"target": {"kind": "lab"}, "storage": {"shared": {"kind": "labfs"}}, "federations": [SHARED_DATA]})
    (line,) = str(err.value).splitlines()[1:]
    assert line.strip().startswith("flstack:federations[0].flower.sharedData.size: '200Gi' is below")
    assert "(1Ti)" in line and "'nfs'" in line
    big = {**SHARED_DATA, "flower": {"supernodes": 1, "sharedData": {"size": "1.5Ti"}}}
    assert parse({"target": {"kind": "lab"}, "storage": {"shared": {"kind": "labfs"}}, "federations": [big]})


def test_storage_asks_the_target_and_never_names_it(lab: None) -> None:
    target = LabCluster()
    config = parse({"target": {"kind": "lab"}, "storage": {"shared": {"kind": "tinyfs"}}}).storage
    volumes = storage.provision(config, target)  # type: ignore[arg-type]
    assert (volumes.data_class, volumes.shared_class, target.asked) == ("lab-block", "lab-tinyfs", ["tinyfs"])
    named = parse({"target": {"kind": "lab"}, "storage": {"dataClass": "fast"}}).storage
    assert storage.provision(named, LabCluster()).data_class == "fast"  # type: ignore[arg-type]


def test_config_parses_without_importing_the_layers_above_it() -> None:
    """The registry breaks the old circle: config used to import the target and framework tables back."""
    code = (
        "import sys\n"
        "from components.config import parse, registry\n"
        "from dataclasses import dataclass\n"
        "Lab = type('Lab', (), {'Settings': dataclass(type('LabSettings', (), {})), 'SHARED_STORAGE': {}})\n"
        "registry.TARGETS['lab'] = registry.FRAMEWORKS['lab'] = Lab\n"
        "parse({'target': {'kind': 'lab'}})\n"
        "print(sorted(m for m in sys.modules if m.startswith('components.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "components.config" in out
    assert "components.targets" not in out and "components.federations" not in out and "components.storage" not in out

"""Changes that would replace a retained claim (or move a federation's retained namespace) are refused.

Each run exports `retained` and reads the previous one back through a StackReference to the stack itself;
offline, the previous outputs are a render's own outputs (`--stack-outputs organization/flstack/STACK=DIR`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import mocks

from components.config import ConfigError
from tests.helpers import EXISTING, MINIKUBE, files, render_stack
from tools import linked, stack_files
from tools import render as render_tool
from tools.mock_runtime import OfflineMocks, StackOutputs
from tools.render import Rendering

STACKS = stack_files.stack_names()
CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"
NAMESPACE = "kubernetes:core/v1:Namespace"
FLOWER = {"name": "demo", "framework": "flower", "flower": {"supernodes": 2}}


def own(stack_files_: stack_files.StackFiles) -> str:
    return f"organization/{stack_files_.project}/{stack_files_.stack}"


def linked_outputs(config: stack_files.StackFiles) -> dict[str, StackOutputs]:
    """What the stack's references to other shipped stacks read (cross-silo stacks; tools/linked.py)."""
    return linked.stack_outputs(config, (config.stack,), linked.Shipped())


def after(previous: Rendering, config: stack_files.StackFiles, preview: bool = False, **kw: Any) -> Rendering:
    """Renders `config` as the next run of the stack whose last update was `previous`."""
    outputs = {**linked_outputs(config), own(config): previous.stack_outputs()}
    return render_tool.render_config(config, preview=preview, stack_outputs=outputs, **kw)


def with_storage(config: stack_files.StackFiles, **storage: Any) -> stack_files.StackFiles:
    values = dict(config.config)
    values["flstack:storage"] = json.dumps({**json.loads(values.get("flstack:storage", "{}")), **storage})
    return dataclasses.replace(config, config=values)


def refusal(previous: Rendering, config: stack_files.StackFiles, preview: bool = False) -> str:
    with pytest.raises(ConfigError) as err:
        after(previous, config, preview)
    message = str(err.value)
    assert message.startswith("refused: 1 config change would replace retained data"), message
    assert "Traceback" not in message
    return message


FLOWER_STACK = files({"target": MINIKUBE, "federations": [FLOWER]})


@pytest.fixture(scope="module")
def flower() -> Rendering:
    """The last update of FLOWER_STACK."""
    return render_tool.render_config(FLOWER_STACK)


# --- the record -----------------------------------------------------------------------------------


def retained_rows(rendering: Rendering, type_token: str) -> list[dict[str, Any]]:
    return [r for r in rendering.of_type(type_token) if r["options"]["retainOnDelete"]]


@pytest.mark.parametrize("stack", STACKS)
def test_every_retained_claim_and_home_namespace_is_recorded(stack: str) -> None:
    rendering = render_stack(stack)
    record = rendering.outputs()["retained"]
    claims = {
        f"{r['inputs']['metadata']['namespace']}/{r['inputs']['metadata']['name']}": r["inputs"]["spec"]
        for r in retained_rows(rendering, CLAIM)
    }
    assert set(record["claims"]) == set(claims)
    for name, spec in claims.items():
        assert record["claims"][name]["accessModes"] == spec["accessModes"]
        assert record["claims"][name].get("storageClassName") == spec.get("storageClassName")
    kept = {r["inputs"]["metadata"]["name"] for r in retained_rows(rendering, NAMESPACE)}
    assert set(record["namespaces"].values()) <= kept


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
@pytest.mark.parametrize("stack", STACKS)
def test_an_unchanged_config_renders_byte_identical_with_its_previous_outputs(stack: str, preview: bool) -> None:
    """Reading the stack's own outputs changes no resource, option or output: only a changed value is refused."""
    config = stack_files.load(stack)
    first = render_stack(stack)  # the last update (and, as `up`, the render without previous outputs)
    fresh = render_tool.render_config(config, preview=True, stack_outputs=linked_outputs(config)) if preview else first
    again = after(first, config, preview)
    assert again.resources() == fresh.resources()
    assert again.manifests() == fresh.manifests()
    assert again.outputs() == fresh.outputs()


# --- refused changes ------------------------------------------------------------------------------


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_a_changed_data_class_is_refused_naming_the_key_and_both_values(flower: Rendering, preview: bool) -> None:
    config, first = FLOWER_STACK, flower
    message = refusal(first, with_storage(config, dataClass="fast"), preview)
    assert "flstack:storage.dataClass: would change the storageClassName of the retained claim " in message
    assert "demo/superlink-state from 'standard' to 'fast'" in message
    assert "Keep 'standard', or move the data first (README, \"Moving retained data\")" in message


def test_setting_a_data_class_where_the_cluster_default_was_used_is_refused() -> None:
    config = files({"target": EXISTING, "federations": [FLOWER]})
    message = refusal(render_tool.render_config(config), with_storage(config, dataClass="fast"))
    assert "from unset (the cluster's default class) to 'fast'" in message


def test_a_changed_default_class_of_an_existing_cluster_is_refused_naming_its_key() -> None:
    """With storage.dataClass unset, the claims take the target's default: here an existing cluster's setting."""

    def stack(default_class: str) -> stack_files.StackFiles:
        existing = {**EXISTING["existing"], "defaultStorageClass": default_class}
        return files({"target": {"kind": "existing", "existing": existing}, "federations": [FLOWER]})

    message = refusal(render_tool.render_config(stack("slow")), stack("fast"))
    assert message.split("\n")[1].startswith(
        "  flstack:storage.dataClass (unset: flstack:target.existing.defaultStorageClass): would change the "
        "storageClassName of the retained claim demo/superlink-state from 'slow' to 'fast'"
    )


def test_a_changed_shared_class_is_refused_naming_the_shared_key() -> None:
    shared = {**FLOWER, "flower": {"supernodes": 2, "sharedData": {"size": "1Gi"}}}
    config = files({"target": EXISTING, "storage": {"shared": {"kind": "nfs"}}, "federations": [shared]})
    first = render_tool.render_config(config)
    moved = with_storage(config, shared={"kind": "existing", "storageClass": "cephfs"})
    message = refusal(first, moved)
    assert "flstack:storage.shared.storageClass: would change the storageClassName of the retained claim " in message
    assert "from 'shared-nfs' to 'cephfs'" in message


def test_a_moved_home_namespace_is_refused(flower: Rendering) -> None:
    moved = files({"target": MINIKUBE, "federations": [{**FLOWER, "namespace": "elsewhere"}]})
    message = refusal(flower, moved)
    assert "flstack:federations[0].namespace: would move federation 'demo' from its retained namespace " in message
    assert "'demo' to 'elsewhere'" in message


def test_a_party_moved_to_its_own_namespace_is_refused_naming_its_key() -> None:
    parties: list[dict[str, Any]] = [{"id": 9999}, {"id": 10000}]
    fate = {"name": "fate", "framework": "fate", "fate": {"parties": parties}}
    first = render_tool.render_config(files({"target": MINIKUBE, "federations": [fate]}))
    parties[1] = {"id": 10000, "namespace": "guest"}
    message = refusal(first, files({"target": MINIKUBE, "federations": [fate]}))
    assert message.split("\n")[1].startswith(
        "  flstack:federations[0].fate.parties[1]: would move the retained claim fateflow-data (of fate-10000) "
        "from namespace 'fate-10000' to 'guest'"
    )


def test_nvflare_sites_moved_into_the_shared_namespace_are_refused() -> None:
    nvflare: dict[str, Any] = {"name": "demo", "framework": "nvflare", "nvflare": {"sites": ["site-1"]}}
    first = render_tool.render_config(files({"target": MINIKUBE, "federations": [nvflare]}))
    nvflare["nvflare"]["siteNamespaces"] = "shared"
    message = refusal(first, files({"target": MINIKUBE, "federations": [nvflare]}))
    assert "flstack:federations[0].nvflare: would move the retained claim site-1-workspace (of demo) from " in message
    assert "namespace 'demo-site-1' to 'demo'" in message


def test_a_moved_home_namespace_is_one_line_naming_it_for_all_its_parties() -> None:
    fate = {"name": "fate", "framework": "fate", "fate": {"parties": [{"id": 9999}, {"id": 10000}]}}
    first = render_tool.render_config(files({"target": MINIKUBE, "federations": [fate]}))
    message = refusal(first, files({"target": MINIKUBE, "federations": [{**fate, "namespace": "fl"}]}))
    assert message.split("\n")[1].startswith(
        "  flstack:federations[0].namespace: would move the retained claims fateflow-data (of fate-10000) from "
        "namespace 'fate-10000' to 'fl-10000', fateflow-data (of fate-9999) from namespace 'fate-9999' to 'fl-9999'"
    )


def test_access_modes_are_compared_too(flower: Rendering) -> None:
    """No config key sets them: a flstack version that changed them would be refused the same way."""
    config, first = FLOWER_STACK, flower
    outputs = copy.deepcopy(first.stack_outputs().outputs)
    outputs["retained"]["claims"]["demo/superlink-state"]["accessModes"] = ["ReadWriteMany"]
    with pytest.raises(ConfigError) as err:
        render_tool.render_config(config, stack_outputs={own(config): StackOutputs(outputs)})
    assert "this flstack version: would change the accessModes of the retained claim demo/superlink-state" in str(
        err.value
    )


class Registrations(OfflineMocks):
    def __init__(self) -> None:
        super().__init__()
        self.types: list[str] = []

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.types.append(args.typ)
        return super().new_resource(args)


def test_nothing_retained_nor_anything_in_a_retained_namespace_is_registered_when_refused(
    flower: Rendering,
) -> None:
    config, first = FLOWER_STACK, flower
    registered = Registrations()
    with pytest.raises(ConfigError):
        after(first, with_storage(config, dataClass="fast"), mock=registered)
    assert "flstack:targets:Minikube" in registered.types  # the program did run up to the check
    # Flower keeps everything in its retained namespace: no Kubernetes object at all reached the engine.
    assert not [t for t in registered.types if t.startswith("kubernetes:")]


# --- allowed changes ------------------------------------------------------------------------------


def test_removing_a_federation_and_growing_a_claim_are_allowed(flower: Rendering) -> None:
    grown = files({"target": MINIKUBE, "federations": [{**FLOWER, "flower": {"supernodes": 2, "databaseSize": "5Gi"}}]})
    assert after(flower, grown).find("PersistentVolumeClaim", "superlink-state", "demo")
    emptied = after(flower, files({"target": MINIKUBE}))
    assert emptied.outputs()["retained"] == {"claims": {}, "namespaces": {}, "homes": {}}


def test_a_stack_without_a_record_compares_nothing(flower: Rendering) -> None:
    """A fresh stack, or one last updated by a flstack that did not export `retained`."""
    config, first = FLOWER_STACK, flower
    older = {k: v for k, v in first.stack_outputs().outputs.items() if k != "retained"}
    changed = with_storage(config, dataClass="fast")
    rendering = render_tool.render_config(changed, stack_outputs={own(config): StackOutputs(older)})
    assert rendering.find("PersistentVolumeClaim", "superlink-state", "demo")["spec"]["storageClassName"] == "fast"


def test_cli_refusal_is_one_message_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stacks").mkdir()
    for name in ("Pulumi.yaml", "__main__.py"):
        (tmp_path / name).write_text((stack_files.ROOT / name).read_text())
    stack_file = (stack_files.ROOT / "stacks" / "Pulumi.local-flower.yaml").read_text()
    (tmp_path / "stacks" / "Pulumi.local-flower.yaml").write_text(stack_file)
    monkeypatch.setattr(stack_files, "ROOT", tmp_path)
    assert render_tool.main(["local-flower", "--out", str(tmp_path / "before")]) == 0
    changed = stack_file.replace("config:\n", "config:\n  flstack:storage:\n    dataClass: fast\n", 1)
    assert changed != stack_file and "flstack:storage:" not in stack_file
    (tmp_path / "stacks" / "Pulumi.local-flower.yaml").write_text(changed)
    previous = f"organization/flstack/local-flower={tmp_path / 'before'}"
    assert render_tool.main(["local-flower", "--out", str(tmp_path / "after"), "--stack-outputs", previous]) == 2
    err = capsys.readouterr().err
    assert "flstack:storage.dataClass: would change the storageClassName" in err
    assert "Traceback" not in err
    assert not (tmp_path / "after").exists()

"""The GitHub workflows: pinned actions, least privilege, previews only where secrets exist, the pinned CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import bootstrap, stack_files

WORKFLOWS = sorted((stack_files.ROOT / ".github" / "workflows").glob("*.yml"))


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def requirement(name: str) -> str:
    text = (stack_files.ROOT / "requirements.txt").read_text()
    match = re.search(rf"^{re.escape(name)}==(\S+)$", text, re.M)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_every_action_is_pinned_by_commit_and_named_by_version(path: Path) -> None:
    uses = [line.strip() for line in path.read_text().splitlines() if line.strip().startswith(("uses:", "- uses:"))]
    assert uses
    for line in uses:
        assert re.fullmatch(r"(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line), line


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_least_privilege_no_stored_credentials_and_cancelled_superseded_runs(path: Path) -> None:
    doc = load(path)
    assert doc["permissions"] == {"contents": "read"}
    assert doc["concurrency"]["cancel-in-progress"] is True
    checkouts = [s for s in steps(doc) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)
    python = [s for s in steps(doc) if s.get("uses", "").startswith("actions/setup-python@")]
    assert python and all(s["with"]["cache"] == "pip" for s in python)


def test_the_real_preview_runs_only_for_same_repository_pull_requests_with_the_pack_and_pinned_cli() -> None:
    doc = load(stack_files.ROOT / ".github" / "workflows" / "preview.yml")
    job = doc["jobs"]["pulumi-preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]
    assert job["environment"] == "preview"  # the job's secrets live in an environment
    (preview,) = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert preview["with"]["pulumi-version"] == requirement("pulumi")
    assert preview["with"]["policyPacks"] == "policies"
    caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert [c["with"]["path"] for c in caches] == ["~/.pulumi/plugins"]
    assert "render-diff" in doc["jobs"] and "permissions" not in doc["jobs"]["render-diff"]


def test_the_eks_stack_names_the_secrets_provider_bootstrap_sets_up() -> None:
    doc = yaml.safe_load((stack_files.ROOT / "stacks" / "Pulumi.eks-flower.yaml").read_text())
    region = doc["config"]["flstack:target"]["eks"]["region"]
    init = bootstrap.next_steps("bucket", region, bootstrap.DEFAULT_ALIAS, "eks-flower")[1]
    assert f"--secrets-provider '{doc['secretsprovider']}'" in init

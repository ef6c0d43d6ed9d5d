"""KubeFATE cluster.yaml files become a flstack FATE federation that validates and renders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import MINIKUBE, render
from tools import import_kubefate

DATA = Path(__file__).with_name("kubefate")
FILES = [DATA / "party-9999.yaml", DATA / "party-10000.yaml"]


def test_two_cluster_yamls_become_one_federation_that_renders(capsys: pytest.CaptureFixture[str]) -> None:
    assert import_kubefate.main([*map(str, FILES), "--name", "fate"]) == 0
    out = capsys.readouterr().out
    entry = yaml.safe_load(out)["flstack:federations"][0]
    assert entry["fate"]["parties"] == [
        {"id": 9999, "namespace": "fate-9999"},
        {"id": 10000, "namespace": "fate-10000"},
        {"id": 10001},  # named only in party 10000's osx.partyList
    ]
    assert entry["fate"]["flowResources"] == {"cpu": "2", "memory": "6Gi"}  # memory: the limit
    # What changes is said, not dropped: the engines, the modules, the third party's assumed namespace.
    assert "federation OSX: flstack uses RabbitMQ between mTLS proxies" in out
    assert "modules clustermanager, mysql, nodemanager, osx: not deployed" in out
    assert entry["fate"]["fateboard"] == {"enabled": True}  # the fateboard module becomes flstack's FATEBoard
    assert "party 10001 has no cluster.yaml here: namespace fate-10001 assumed" in out
    rendering = render({"target": MINIKUBE, "federations": [entry]})
    namespaces = {o["metadata"]["name"] for o in rendering.manifests() if o["kind"] == "Namespace"}
    assert namespaces == {"fate-9999", "fate-10000", "fate-10001"}


def test_the_same_party_twice_is_one_error_naming_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "again.yaml"
    copy.write_text(FILES[0].read_text())
    assert import_kubefate.main([str(FILES[0]), str(copy)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {copy}: partyId: 9999 is already the party of {FILES[0]}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\n", "partyId: required"),
        ("partyId: guest\n", "partyId: 'guest' is not a FATE party id (an integer)"),
        ("- a\n- b\n", "expected a KubeFATE cluster.yaml mapping, got list"),
    ],
)
def test_bad_files_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text(text)
    assert import_kubefate.main([str(FILES[0]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.count("\n") == 1


def test_one_party_without_peers_fails_flstack_validation_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alone = tmp_path / "cluster.yaml"
    alone.write_text("partyId: 9999\nnamespace: fate-9999\n")
    assert import_kubefate.main([str(alone)]) == 2
    err = capsys.readouterr().err
    assert "flstack:federations[0].fate.parties: a federation needs at least 2 parties (got 1)" in err

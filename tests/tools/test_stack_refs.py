"""Cross-stack links: StackReference reads through components.stack_refs, answered offline by --stack-outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components import stack_refs
from tools import render
from tools.mock_runtime import (
    MissingStackOutputsError,
    OfflineMocks,
    PreviewMocks,
    Recording,
    RecordingMonitor,
    StackOutputs,
    is_secret,
    plain,
    run_under_mocks,
)
from tools.stack_files import StackFiles

HUB = "acme/flstack/hub"
HUB_OUTPUTS = StackOutputs(
    {"federations": {"fl": {"address": "hub.example.org:9093", "ca": "PEM"}}, "kits": {"site-1": "KIT"}},
    frozenset({"kits"}),
)
FILES = StackFiles(project="flstack", stack="participant", config={}, secret_keys=frozenset())


def run(program: Any, given: dict[str, StackOutputs] | None = None, preview: bool = False) -> Recording:
    mock = PreviewMocks() if preview else OfflineMocks()
    mock.stack_outputs = given if given is not None else {HUB: HUB_OUTPUTS}
    mock.own_stack = f"organization/{FILES.project}/{FILES.stack}"
    recording = Recording(preview=preview)
    run_under_mocks(program, FILES, RecordingMonitor(mock, recording), preview)
    return recording


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_reads_a_nested_value_and_keeps_each_outputs_secrecy(preview: bool) -> None:
    def program() -> None:
        pulumi.export("address", stack_refs.stack_output(HUB, "federations", "fl", "address", key="k"))
        pulumi.export("kit", stack_refs.stack_output(HUB, "kits", "site-1", key="k"))

    outputs = run(program, preview=preview).outputs
    assert outputs["address"] == "hub.example.org:9093"  # a read is answered in a preview too
    assert is_secret(outputs["kit"]) and plain(outputs["kit"], reveal=True) == "KIT"


def test_one_reference_per_stack_shown_as_a_read_without_values() -> None:
    def program() -> None:
        for path in (("federations", "fl", "address"), ("federations", "fl", "ca"), ("kits",)):
            pulumi.export(".".join(path), stack_refs.stack_output(HUB, *path, key="k"))

    reads = [r for r in run(program).resources.values() if r.type == "pulumi:pulumi:StackReference"]
    assert [(r.name, r.inputs, r.options["read"]) for r in reads] == [(f"stack-ref:{HUB}", {"name": HUB}, True)]


@pytest.mark.parametrize(
    ("path", "names"),
    [
        (("federations", "fl", "port"), "federations.fl has: address, ca"),
        (("federations", "other", "address"), "federations has: fl"),
        (("federations", "fl", "address", "host"), "federations.fl.address is not an object"),
        (("nothing",), "its outputs are: federations, kits"),
    ],
)
def test_a_missing_output_is_one_message_naming_key_stack_path_and_what_exists(
    path: tuple[str, ...], names: str
) -> None:
    def program() -> None:
        pulumi.export("x", stack_refs.stack_output(HUB, *path, key="flstack:federations[0].flower.join.stack"))

    with pytest.raises(stack_refs.MissingStackOutputError) as failure:
        run(program)
    message = str(failure.value)
    assert message.startswith(f"flstack:federations[0].flower.join.stack: stack {HUB} has no output {'.'.join(path)}")
    assert names in message and f"run `pulumi up` on {HUB} first" in message


def test_a_stack_whose_outputs_were_not_given_names_it_and_the_flag() -> None:
    def program() -> None:
        pulumi.export("x", stack_refs.stack_output("acme/flstack/elsewhere", "federations", key="k"))

    with pytest.raises(Exception, match=r"stack acme/flstack/elsewhere .*--stack-outputs acme/flstack/elsewhere=PATH"):
        run(program)


def test_the_own_stack_reads_no_earlier_outputs_offline() -> None:
    own = f"organization/{FILES.project}/{FILES.stack}"

    def program() -> None:
        pulumi.export("earlier", stack_refs.reference(own).outputs)

    assert run(program, given={}).outputs["earlier"] == {}


def test_a_render_directory_feeds_another_stacks_reference(tmp_path: Path) -> None:
    rendering = render.render("local-flower")
    rendering.write(tmp_path / "hub")
    loaded = StackOutputs.load(tmp_path / "hub")
    assert loaded == rendering.stack_outputs()
    assert loaded.outputs["federations"] == plain(rendering.recording.outputs["federations"], reveal=True)


def test_an_output_holding_any_secret_is_a_secret_output_as_the_engine_lists_it() -> None:
    def program() -> None:
        pulumi.export("public", {"ca": "PEM"})
        pulumi.export("mixed", {"ca": "PEM", "kit": pulumi.Output.secret("KIT")})

    written = StackOutputs.of(run(program))
    assert written.secret_names == {"mixed"}
    assert written.outputs == {"public": {"ca": "PEM"}, "mixed": {"ca": "PEM", "kit": "KIT"}}


def test_a_saved_pulumi_stack_output_file_counts_every_output_secret(tmp_path: Path) -> None:
    saved = tmp_path / "hub.json"
    saved.write_text(json.dumps({"federations": {"fl": {}}, "target": {"kind": "eks"}}))
    assert StackOutputs.load(saved).secret_names == {"federations", "target"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hub=render/hub", "expected STACK=PATH with STACK a fully qualified stack name ORG/PROJECT/STACK"),
        ("acme/flstack/hub", "expected STACK=PATH"),
        ("acme/flstack/hub=/nonexistent/dir", "--stack-outputs acme/flstack/hub: cannot read /nonexistent/dir"),
    ],
)
def test_bad_stack_outputs_arguments_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render.parse_stack_outputs([spec])


def test_the_cli_refuses_a_reference_it_was_not_given_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = render.main(["local-flower", "--out", str(tmp_path / "r"), "--stack-outputs", "a/b/c=/nonexistent"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --stack-outputs a/b/c: cannot read /nonexistent")
    assert "Traceback" not in err


def test_missing_stack_outputs_error_is_what_the_mock_raises() -> None:
    mock = OfflineMocks()
    mock.own_stack = "organization/flstack/x"
    args = pulumi.runtime.MockResourceArgs("pulumi:pulumi:StackReference", "r", {"name": HUB}, "", HUB)
    with pytest.raises(MissingStackOutputsError, match=HUB):
        mock.new_resource(args)

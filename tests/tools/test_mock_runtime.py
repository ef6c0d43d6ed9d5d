"""The recording monitor keeps the stack's outputs, not those of a component registered after them."""

from __future__ import annotations

from types import SimpleNamespace

from tools.mock_runtime import OfflineMocks, Recording, RecordingMonitor

STACK = "urn:pulumi:s::flstack::pulumi:pulumi:Stack::flstack-s"
COMPONENT = "urn:pulumi:s::flstack::pulumi:pulumi:Stack$flstack:targets:Minikube::cluster"


def outputs_request(urn: str, **values: str) -> SimpleNamespace:
    return SimpleNamespace(urn=urn, outputs=values)  # a Struct in gRPC; a dict reads the same way


def test_component_outputs_registered_last_do_not_replace_the_stack_outputs() -> None:
    recording = Recording()
    monitor = RecordingMonitor(OfflineMocks(), recording)
    monitor.RegisterResourceOutputs(outputs_request(STACK, target="stack-level"))
    monitor.RegisterResourceOutputs(outputs_request(COMPONENT, kind="minikube"))  # the order varies run to run
    assert recording.outputs == {"target": "stack-level"}

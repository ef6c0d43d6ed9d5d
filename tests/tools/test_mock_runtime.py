"""The mock runtime: the recording monitor keeps the stack's outputs; runs never share SDK state."""

from __future__ import annotations

from types import SimpleNamespace

from pulumi.runtime import settings

from tools.mock_runtime import OfflineMocks, Recording, RecordingMonitor, run_under_mocks
from tools.stack_files import StackFiles

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


def test_each_run_has_its_own_pending_outputs() -> None:
    """The SDK keeps outputs still pending in a context property whose first value is the default of every fresh
    context: shared, a run would await what a failed earlier run left pending (on its closed loop) and fail with
    "Event loop is closed"."""
    files = StackFiles(project="flstack", stack="s", config={}, secret_keys=frozenset())
    sets: list[object] = []
    for _ in range(2):
        run_under_mocks(
            lambda: sets.append(settings.SETTINGS.outputs), files, RecordingMonitor(OfflineMocks(), Recording())
        )
    assert sets[0] is not sets[1]

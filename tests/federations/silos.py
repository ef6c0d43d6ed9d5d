"""The shipped cross-silo FATE pair (stacks fate-silo-a and fate-silo-b), rendered with each other's outputs."""

from __future__ import annotations

import json
import re

import pulumi

from tests.helpers import LINKED_STACKS
from tools import render as render_tool
from tools.mock_runtime import StackOutputs, plain

FATE_SILOS = ("fate-silo-a", "fate-silo-b")
# The name each stack has for the other (its peers[].stack).
REFERENCES = {stack: name for name, stack in LINKED_STACKS.items() if stack in FATE_SILOS}
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.+?)\n-----END [A-Z ]*PRIVATE KEY-----", re.S)


def render_silo(
    stack: str, peer_outputs: dict[str, StackOutputs], mock: pulumi.runtime.Mocks | None = None
) -> render_tool.Rendering:
    """`stack` rendered with its peers' outputs (shipped stack name -> what its StackReference reads)."""
    by_reference = {REFERENCES[peer]: outputs for peer, outputs in peer_outputs.items()}
    return render_tool.render(stack, mock, stack_outputs=by_reference)


NOT_DEPLOYED = StackOutputs({})  # a stack that exists but has not run `pulumi up` yet: no outputs


def _flat(text: str) -> str:
    return text.replace("\\n", "").replace("\n", "")


def private_keys(rendering: render_tool.Rendering) -> set[str]:
    """The body of every private key among the inputs the program registered (revealed): keys it made or read."""
    found: set[str] = set()
    for registration in rendering.recording.resources.values():
        text = str(plain(registration.inputs, reveal=True)).replace("\\n", "\n")
        found.update(_flat(body) for body in PRIVATE_KEY.findall(text))
    return found


def everything(rendering: render_tool.Rendering) -> str:
    """The whole render, secrets revealed (manifests, every resource's inputs, outputs), without line breaks."""
    inputs = [plain(r.inputs, reveal=True) for r in rendering.recording.resources.values()]
    return _flat(json.dumps([rendering.manifests(), inputs, rendering.outputs(reveal=True)]))

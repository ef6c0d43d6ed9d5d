"""Offline renders of shipped stacks joined by StackReferences, each fed by the render of the stack it reads.

A stack's references are the REFERENCED_STACKS names (tools/stack_files.py) its config mentions. Each is
rendered first (as `up`: a referenced stack has been deployed) and its outputs passed in, as
`python -m tools.render STACK --stack-outputs ORG/PROJECT/STACK=DIR` would.

Hubs and participants read each other: the hub lists its participants, each participant reads the hub. That
mirrors the order of `pulumi up`s: the hub's first up (before the participants joined), each participant,
then the hub again. So a stack rendered for stacks that read it is rendered as it was before they joined:
without the config list entries that name them (the hub's `participants` items). References at the top of
a federation entry (a participant's `join`) are never dropped.

Peers (PEER_STACKS: FATE parties, which read each other as equals) stand in as after their first `up`,
before any peer had deployed: their own references read no outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi

from tools import render as render_tool
from tools import stack_files
from tools.mock_runtime import StackOutputs
from tools.stack_files import PEER_STACKS, REFERENCED_STACKS, StackFiles


@dataclass(frozen=True)
class Shipped:
    """Where stacks come from: the shipped files and table by default (tests add stacks of their own)."""

    load: Callable[[str], StackFiles] = stack_files.load
    referenced: Mapping[str, str] = field(default_factory=lambda: dict(REFERENCED_STACKS))
    peers: Mapping[str, str] = field(default_factory=lambda: dict(PEER_STACKS))
    mock: Callable[[], pulumi.runtime.Mocks | None] = lambda: None  # a fresh mock per render (default: offline)


def references(files: StackFiles, referenced: Mapping[str, str] = {**REFERENCED_STACKS, **PEER_STACKS}) -> list[str]:
    """The shipped stacks' reference names this stack's config mentions."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value in referenced:
            found.add(value)

    for text in files.config.values():
        walk(_value(text))
    return sorted(found)


def render(stack: str, preview: bool = False, shipped: Shipped | None = None) -> render_tool.Rendering:
    """The shipped stack `stack`, with the outputs of every shipped stack it references."""
    shipped = shipped or Shipped()
    files = shipped.load(stack)
    outputs = stack_outputs(files, (stack,), shipped)
    return render_tool.render_config(files, shipped.mock(), preview=preview, stack_outputs=outputs)


def stack_outputs(files: StackFiles, readers: tuple[str, ...], shipped: Shipped) -> dict[str, StackOutputs]:
    """reference -> what a StackReference reads from the shipped stack standing in for it."""
    refs = references(files, {**shipped.referenced, **shipped.peers})
    return {
        ref: (
            first_up(shipped.peers[ref], shipped)
            if ref in shipped.peers
            else feed(shipped.referenced[ref], readers, shipped)
        ).stack_outputs()
        for ref in refs
    }


def first_up(stack: str, shipped: Shipped) -> render_tool.Rendering:
    """A peer stack as after its first `up`, before any peer had deployed: its references read nothing."""
    files = shipped.load(stack)
    nothing = {ref: StackOutputs({}) for ref in references(files, {**shipped.referenced, **shipped.peers})}
    return render_tool.render_config(files, shipped.mock(), stack_outputs=nothing)


def feed(stack: str, readers: tuple[str, ...], shipped: Shipped | None = None) -> render_tool.Rendering:
    """`stack` as the stacks in `readers` (which read it) saw it: before they joined it."""
    shipped = shipped or Shipped()
    names = {ref for ref, name in shipped.referenced.items() if name in readers}
    files = before_joining(shipped.load(stack), names)
    outputs = stack_outputs(files, (*readers, stack), shipped)
    return render_tool.render_config(files, shipped.mock(), stack_outputs=outputs)


def before_joining(files: StackFiles, names: set[str]) -> StackFiles:
    """The config without the nested list entries (not whole federations) that mention any of `names`."""

    def mentions(value: Any) -> bool:
        if isinstance(value, dict):
            return any(mentions(v) for v in value.values())
        if isinstance(value, list):
            return any(mentions(v) for v in value)
        return isinstance(value, str) and value in names

    def strip(value: Any, nested: bool) -> Any:
        if isinstance(value, dict):
            return {k: strip(v, True) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v, True) for v in value if not (nested and mentions(v))]
        return value

    config = {}
    for key, text in files.config.items():
        value = _value(text)
        # The top-level list (federations) keeps its entries: only lists inside them lose items.
        top = [strip(v, False) for v in value] if isinstance(value, list) else strip(value, False)
        config[key] = text if top == value else json.dumps(top)
    return replace(files, config=config)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

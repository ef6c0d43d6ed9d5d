"""Other stacks' outputs: the links between cross-silo stacks (a hub and its participants).

`stack_output(stack, "federations", "hub", "address", key=...)` reads one value of another stack's
outputs through a `pulumi.StackReference` (one per referenced stack and program run). The first path
element is the stack output's name; further elements index into it. A value that is not there fails
the program with one message naming the config key that named the stack, the stack and the missing
path, and what does exist there: the usual cause is `pulumi up` of the other stack not having run yet
(or a different version of flstack there).

Secrecy is per top-level output, as the engine records it: an output holding any secret reads as a
secret as a whole. Export what another stack may read in the open (addresses, CA certificates, public
keys) in an output without secrets.

The offline render answers these references from `--stack-outputs STACK=PATH` (tools/render.py).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import pulumi
from pulumi.runtime import settings

from components.config.model import STACK_NAME, STACK_NAME_HELP

__all__ = [
    "STACK_NAME_HELP",
    "STACK_NAME_PATTERN",
    "MissingStackOutputError",
    "own_previous_output",
    "own_stack",
    "reference",
    "stack_output",
]

STACK_NAME_PATTERN = STACK_NAME

# One StackReference per referenced stack per program run: keyed by the run's resource monitor, since a
# process may run the program more than once (tests render many stacks in one interpreter).
_REFERENCES: weakref.WeakKeyDictionary[Any, dict[str, pulumi.StackReference]] = weakref.WeakKeyDictionary()


class MissingStackOutputError(pulumi.RunError):
    """A referenced stack lacks an output this stack needs. A RunError: the engine prints the message alone."""


def reference(stack: str) -> pulumi.StackReference:
    """The run's StackReference to `stack` (ORG/PROJECT/STACK), made on first use."""
    monitor = settings.get_monitor()
    per_run = _REFERENCES.setdefault(monitor, {}) if monitor is not None else {}
    if stack not in per_run:
        per_run[stack] = pulumi.StackReference(f"stack-ref:{stack}", stack_name=stack)
    return per_run[stack]


def stack_output(stack: str, *path: str, key: str) -> pulumi.Output[Any]:
    """The value at `path` in `stack`'s outputs (secret when that output is); `key` is the config key naming `stack`."""
    if not path:
        raise ValueError("stack_output needs at least the output's name")
    ref = reference(stack)
    top = ref.get_output(path[0])

    def walk(values: list[Any]) -> Any:
        value, outputs = values
        if value is None:
            raise _missing(stack, path, 0, key, outputs)
        for depth in range(1, len(path)):
            if not isinstance(value, dict) or path[depth] not in value:
                raise _missing(stack, path, depth, key, value)
            value = value[path[depth]]
        return value

    # The listing of what exists is read from all outputs; the result keeps the secretness of its own output.
    found = pulumi.Output.all(top, ref.outputs).apply(walk)
    return pulumi.Output(found.resources(), found.future(), found.is_known(), asyncio.ensure_future(top.is_secret()))


def own_stack() -> str:
    """This stack's fully qualified name (the DIY backends' organization is always `organization`)."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"


def own_previous_output(name: str) -> pulumi.Output[Any]:
    """This stack's output `name` as its last update left it: None on a fresh stack or when that update did
    not export it. The engine answers a reference to the stack itself from its last checkpoint (in `preview`
    too); the stack's outputs there change only when an update registers new ones, so never mid-run."""
    return reference(own_stack()).get_output(name)


def _missing(stack: str, path: tuple[str, ...], depth: int, key: str, there: Any) -> MissingStackOutputError:
    if depth == 0:
        names = ", ".join(sorted(there or {})) or "none"
        found = f"its outputs are: {names}"
    elif isinstance(there, dict):
        found = f"{'.'.join(path[:depth])} has: {', '.join(sorted(there)) or 'nothing'}"
    else:
        found = f"{'.'.join(path[:depth])} is not an object"
    return MissingStackOutputError(
        f"{key}: stack {stack} has no output {'.'.join(path)} ({found}); run `pulumi up` on {stack} first "
        "(with an flstack version that exports it), then here again"
    )


def federation_key(federation: str) -> str:
    """`flstack:federations[i]` of the federation named `federation`, for errors that surface at run time."""
    entries = pulumi.Config("flstack").get_object("federations") or []
    names = [e.get("name") if isinstance(e, dict) else None for e in entries] if isinstance(entries, list) else []
    return f"flstack:federations[{names.index(federation)}]" if federation in names else "flstack:federations"

"""Refuse config changes that would replace a retained claim or move a federation's retained namespace.

Retained claims (`retain_on_delete`) keep federation state across `destroy` and replacements, but
Kubernetes does not let a claim's storage class, access modes, selector or volume change: pulumi-kubernetes
replaces the claim for them, and with the old one retained and `upsertExistingObjects` the `up` stops on
the API server's "field is immutable" halfway through. A federation whose home namespace changes starts
empty in the new one while its data stays behind. The program alone cannot see what it deployed last
time, so every run exports `retained` (what it retained: per claim those fields, per federation its home
namespace) and the next run reads it back through a StackReference to the stack itself. The engine
allows that: the reference is a read the builtin provider answers from the stack's last checkpoint,
in `preview` as in `up` and on every backend, and the root stack's outputs there change only when an
update registers new ones. A refused run registers none (its `retained` export waits for the check, and the
stack's outputs go in one request), so the record stays that of the last good update. A fresh stack reads
none, so nothing is compared.

`Guard` holds back the registration of every retained claim and namespace (`kube.apply` adds it to their
`depends_on`, resolving to no dependency) until the program has built them all and they were compared:
one ConfigError lists every changed key, and no retained object, nor anything that depends on one, is
registered before that.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import TracebackType
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config import ConfigError, StackConfig
from components.stack_refs import own_previous_output

RECORD = "retained"  # the stack output this module writes and reads back
# What pulumi-kubernetes replaces a claim for (its forceNew paths besides name and namespace).
CLAIM_FIELDS = ("storageClassName", "accessModes", "selector", "volumeName")
MOVING_DATA = 'README, "Moving retained data"'


def previous_record() -> pulumi.Output[Any]:
    """What the stack's last update exported as `retained`: None on a fresh stack (or an older flstack's)."""
    return own_previous_output(RECORD)


def _shown(value: Any) -> str:
    return "unset (the cluster's default class)" if value is None else repr(value)


class Guard:
    """The check between the previous run's record and this run's retained objects (see the module doc)."""

    def __init__(self, provider: k8s.Provider, stack: StackConfig, previous: pulumi.Output[Any]) -> None:
        if not isinstance(provider, kube.ClusterProvider):
            raise TypeError("retained objects are held through the target's kube.ClusterProvider")
        self._stack = stack
        self._claims: dict[str, dict[str, Any]] = {}  # "namespace/name" -> CLAIM_FIELDS
        self._namespaces: set[str] = set()
        self._built: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # This run's record, once compared with the previous one (fails with the ConfigError otherwise).
        self.record: pulumi.Output[dict[str, Any]] = pulumi.Output.all(
            previous, pulumi.Output.from_input(cast(Any, self._built))
        ).apply(lambda both: self._compare(both[0], both[1]))
        # Resolves to no dependency, and has no resources of its own (the StackReference would become one).
        self._cleared: pulumi.Output[list[pulumi.Resource]] = pulumi.Output.from_input(cast(Any, self._wait()))
        provider.retention = self

    async def _wait(self) -> list[pulumi.Resource]:
        await self.record.future()
        return []

    def hold(self, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """`opts` of a retained object, registered only once the comparison passed."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        if obj["kind"] == "PersistentVolumeClaim":
            fields = {f: spec[f] for f in CLAIM_FIELDS if f in spec}
            # The component that made it: how a claim is recognised after its namespace changed.
            fields["owner"] = str(getattr(opts.parent, "_name", ""))
            self._claims[f"{meta['namespace']}/{meta['name']}"] = fields
        elif obj["kind"] == "Namespace":
            self._namespaces.add(meta["name"])
        return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=self._cleared))

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None:  # the program failed: held objects fail with it instead of waiting forever
            self._built.set_exception(error)
            return
        homes = {fed.name: fed.home_namespace for fed in self._stack.federations}
        namespaces = {name: ns for name, ns in homes.items() if ns in self._namespaces}
        record = {"claims": dict(sorted(self._claims.items())), "namespaces": namespaces, "homes": homes}
        self._built.set_result(record)

    def _compare(self, previous: Any, current: dict[str, Any]) -> dict[str, Any]:
        home_lines = self._namespace_changes(previous, current)
        old_homes = previous.get("homes") if isinstance(previous, dict) else None
        moved_homes = {
            i
            for i, fed in enumerate(self._stack.federations)
            if isinstance(old_homes, dict) and old_homes.get(fed.name) not in (None, fed.home_namespace)
        }
        problems = (
            self._claim_changes(previous, current) + home_lines + self._claim_moves(previous, current, moved_homes)
        )
        if problems:
            noun = "change" if len(problems) == 1 else "changes"
            raise ConfigError(
                f"refused: {len(problems)} config {noun} would replace retained data "
                "(compared with this stack's last update):\n  " + "\n  ".join(problems)
            )
        return current

    def _claim_key(self, fields: dict[str, Any]) -> str:
        if "ReadWriteMany" in (fields.get("accessModes") or []):
            shared = self._stack.storage.shared
            return f"flstack:storage.shared.{'storageClass' if shared.kind == 'existing' else 'kind'}"
        if self._stack.storage.data_class is not None:
            return "flstack:storage.dataClass"
        # Unset: the target's default class, which an existing cluster's settings name.
        if self._stack.target.kind == "existing":
            return "flstack:storage.dataClass (unset: flstack:target.existing.defaultStorageClass)"
        return "flstack:storage.dataClass (unset: the target's default class)"

    def _claim_changes(self, previous: Any, current: dict[str, Any]) -> list[str]:
        before = (previous or {}).get("claims") if isinstance(previous, dict) else None
        if not isinstance(before, dict):
            return []
        # (key, field, old, new) -> the claims it concerns: one line per change, however many claims it hits.
        changed: dict[tuple[str, str, str, str], list[str]] = defaultdict(list)
        for claim, fields in current["claims"].items():
            old = before.get(claim)
            if not isinstance(old, dict):
                continue  # new since the last update: created, nothing replaced
            for field in CLAIM_FIELDS:
                if old.get(field) != fields.get(field):
                    key = self._claim_key(fields) if field == "storageClassName" else "this flstack version"
                    changed[(key, field, _shown(old.get(field)), _shown(fields.get(field)))].append(claim)
        return [
            f"{key}: would change the {field} of the retained {'claim' if len(claims) == 1 else 'claims'} "
            f"{', '.join(claims)} from {old} to {new}; Kubernetes cannot change it, so pulumi-kubernetes would "
            f"replace {'it' if len(claims) == 1 else 'them'} and the up would stop halfway. Keep {old}, or move "
            f"the data first ({MOVING_DATA})"
            for (key, field, old, new), claims in sorted(changed.items())
        ]

    def _namespace_changes(self, previous: Any, current: dict[str, Any]) -> list[str]:
        before = (previous or {}).get("namespaces") if isinstance(previous, dict) else None
        if not isinstance(before, dict):
            return []
        lines = []
        for i, fed in enumerate(self._stack.federations):
            old, new = before.get(fed.name), current["namespaces"].get(fed.name)
            if isinstance(old, str) and new is not None and old != new:
                lines.append(
                    f"flstack:federations[{i}].namespace: would move federation {fed.name!r} from its retained "
                    f"namespace {old!r} to {new!r}, where it would start empty while its data stays in {old!r}. "
                    f"Keep {old!r}, or move the data first ({MOVING_DATA})"
                )
        return lines

    def _namespace_keys(self) -> dict[str, tuple[int, str]]:
        """namespace -> (federation index, the config key that names it) in this config."""
        keys: dict[str, tuple[int, str]] = {}
        for i, fed in enumerate(self._stack.federations):
            for relative, ns in fed.party_namespaces():
                keys.setdefault(ns, (i, f"flstack:federations[{i}].{fed.framework}.{relative}"))
            # A party's claim moving into the home namespace: the framework's settings put it there.
            keys[fed.home_namespace] = (i, f"flstack:federations[{i}].{fed.framework}")
        return keys

    def _claim_moves(self, previous: Any, current: dict[str, Any], moved_homes: set[int]) -> list[str]:
        """Claims of the same component under the same name, now in another namespace: the new claim starts
        empty while the data stays behind. A federation whose retained home namespace moved has its own line."""
        before = (previous or {}).get("claims") if isinstance(previous, dict) else None
        if not isinstance(before, dict):
            return []
        now = {(fields["owner"], claim.partition("/")[2]): claim for claim, fields in current["claims"].items()}
        keys = self._namespace_keys()
        moves: dict[str, list[str]] = defaultdict(list)  # config key -> "claim (of owner) from 'a' to 'b'"
        for claim, fields in sorted(before.items()):
            old_ns, _, name = claim.partition("/")
            owner = fields.get("owner") if isinstance(fields, dict) else None
            moved_to = now.get((owner, name)) if owner else None
            if claim in current["claims"] or moved_to is None or moved_to in before:
                continue
            new_ns = moved_to.partition("/")[0]
            index, key = keys.get(new_ns, (-1, "flstack:federations"))
            if index in moved_homes:
                fed = self._stack.federations[index]
                if fed.home_namespace in current["namespaces"].values():
                    continue  # its home namespace's line says it
                key = f"flstack:federations[{index}].namespace"
            moves[key].append(f"{name} (of {owner}) from namespace {old_ns!r} to {new_ns!r}")
        return [
            f"{key}: would move the retained {'claim' if len(found) == 1 else 'claims'} {', '.join(found)}, where "
            f"{'it' if len(found) == 1 else 'each'} would start empty while the data stays behind. Keep the "
            f"namespace as it was, or move the data first ({MOVING_DATA})"
            for key, found in sorted(moves.items())
        ]

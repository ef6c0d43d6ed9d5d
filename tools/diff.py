"""Compares two renders: resources added, removed and changed (with the changed field paths)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Key = tuple[str, str]


@dataclass
class Changes:
    added: list[Key] = field(default_factory=list)
    removed: list[Key] = field(default_factory=list)
    changed: dict[Key, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def load(render_dir: Path) -> list[dict[str, Any]]:
    path = render_dir / "resources.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: pass a directory written by `python -m tools.render`")
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data


def field_paths(old: Any, new: Any, path: str = "") -> list[str]:
    """The paths (`inputs.spec.replicas`, `inputs.args[2]`) where two values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            if key not in old or key not in new:
                out.append(sub)
            else:
                out += field_paths(old[key], new[key], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new, strict=True)) for p in field_paths(a, b, f"{path}[{i}]")]
    return [] if old == new else [path]


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> Changes:
    before = {(r["type"], r["name"]): r for r in old}
    after = {(r["type"], r["name"]): r for r in new}
    changes = Changes(
        added=sorted(set(after) - set(before)),
        removed=sorted(set(before) - set(after)),
    )
    for key in sorted(set(before) & set(after)):
        paths = field_paths(before[key], after[key])
        if paths:
            changes.changed[key] = paths
    return changes


def format_changes(changes: Changes) -> str:
    if changes.empty:
        return "no changes"
    lines = [f"+ {t}  {n}" for t, n in changes.added]
    lines += [f"- {t}  {n}" for t, n in changes.removed]
    for (t, n), paths in changes.changed.items():
        lines.append(f"~ {t}  {n}")
        lines += [f"    {p}" for p in paths]
    lines.append(f"{len(changes.added)} added, {len(changes.removed)} removed, {len(changes.changed)} changed")
    return "\n".join(lines)

"""Offline render: the credential-free preview of a stack.

    python -m tools.render STACK [--preview] [--out DIR] [--diff OLD_DIR] [--connectivity]
                                 [--stack-outputs ORG/PROJECT/STACK=PATH ...]

Runs the unchanged program under the Pulumi SDK's mock runtime with the stack's config and writes
DIR/resources.json (every resource: type, name, parent, provider, options, inputs; secrets shown as
[secret]), DIR/outputs.json (stack outputs) and DIR/manifests/ (one YAML file per Kubernetes object,
as the API server would receive it). With --diff it compares against an earlier render. By default the
program runs as `pulumi up` would (every output known); --preview runs it as the first `pulumi preview`
on an empty stack would (outputs of planned creates unknown, shown as [unknown]), which is where
preview-only faults show. With --connectivity it prints which workloads the rendered NetworkPolicies let
reach which (tools/netpol.py).

A stack that reads other stacks' outputs (cross-silo: a participant reads its hub's) renders without
credentials from those stacks' renders: `--stack-outputs ORG/PROJECT/STACK=render/HUB` (each render
directory holds the revealed `stack-outputs.json` a StackReference would read), or from a file saved with
`pulumi stack output --json --show-secrets` by someone who can read that stack.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml

from tools import diff as render_diff
from tools import netpol, stack_files
from tools.mock_runtime import (
    MissingStackOutputsError,
    Recording,
    StackOutputs,
    contains_unknown,
    plain,
    release_loops,
    run_program,
)


def _is_stack(urn: str | None) -> bool:
    return urn is None or urn.split("::")[2].rpartition("$")[2] == "pulumi:pulumi:Stack"


def _short(urn: str | None) -> str | None:
    """`urn:...::parent$type::name` -> `type::name` (readable and stable)."""
    if not urn:
        return None
    head, _, name = urn.rpartition("::")
    return f"{head.rpartition('::')[2].rpartition('$')[2]}::{name}"


def is_kubernetes_object(inputs: dict[str, Any]) -> bool:
    return "apiVersion" in inputs and "kind" in inputs and "metadata" in inputs


def _readable_links(options: dict[str, Any]) -> dict[str, Any]:
    """Resource options with the URNs they name shortened."""
    shown = {**options, "dependsOn": [_short(u) for u in options["dependsOn"]]}
    if "deletedWith" in options:
        shown["deletedWith"] = _short(options["deletedWith"])
    if "replaceWith" in options:
        shown["replaceWith"] = [_short(u) for u in options["replaceWith"]]
    return shown


@dataclass
class Rendering:
    stack: str
    recording: Recording

    def resources(self) -> list[dict[str, Any]]:
        rows = []
        for reg in self.recording.resources.values():
            rows.append(
                {
                    "type": reg.type,
                    "name": reg.name,
                    "parent": None if _is_stack(reg.parent) else _short(reg.parent),
                    "provider": _short(reg.provider),
                    "options": _readable_links(reg.options),
                    "inputs": plain(reg.inputs, reveal=False),
                }
            )
        return sorted(rows, key=lambda r: (r["type"], r["name"]))

    def manifests(self) -> list[dict[str, Any]]:
        """Kubernetes objects with secret values revealed: exactly what the provider would send."""
        objs = [
            plain(reg.inputs, reveal=True)
            for reg in self.recording.resources.values()
            if reg.type.startswith("kubernetes:") and is_kubernetes_object(reg.inputs)
        ]
        paths = [manifest_path(obj) for obj in objs]
        clashes = sorted({p for p in paths if paths.count(p) > 1})
        if clashes:  # two resources would fight over one Kubernetes object
            raise ValueError(f"{self.stack}: more than one resource manages {', '.join(clashes)}")
        return sorted(objs, key=manifest_path)

    def outputs(self, reveal: bool = False) -> dict[str, Any]:
        return dict(plain(self.recording.outputs, reveal=reveal))

    def stack_outputs(self) -> StackOutputs:
        return StackOutputs.of(self.recording)

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        for obj in self.manifests():
            meta = obj["metadata"]
            if (
                obj["kind"] == kind
                and meta["name"] == name
                and (namespace is None or meta.get("namespace") == namespace)
            ):
                return obj
        raise KeyError(f"no {kind} {namespace}/{name} in the render of {self.stack}")

    def of_type(self, type_token: str) -> list[dict[str, Any]]:
        return [r for r in self.resources() if r["type"] == type_token]

    def unconfigured_providers(self) -> list[str]:
        """Kubernetes providers whose kubeconfig is unknown here: in a preview they run unconfigured."""
        return sorted(
            reg.name
            for reg in self.recording.resources.values()
            if reg.type == "pulumi:providers:kubernetes" and contains_unknown(reg.inputs.get("kubeconfig"))
        )

    def counts(self) -> Counter[str]:
        return Counter(r.type for r in self.recording.resources.values())

    def write(self, out: Path) -> None:
        if out.exists():
            shutil.rmtree(out)
        (out / "manifests").mkdir(parents=True)
        (out / "resources.json").write_text(json.dumps(self.resources(), indent=2, sort_keys=True) + "\n")
        (out / "outputs.json").write_text(json.dumps(self.outputs(), indent=2, sort_keys=True) + "\n")
        # What a StackReference to this stack reads (secrets revealed, like manifests/): feeds --stack-outputs.
        (out / StackOutputs.FILE).write_text(self.stack_outputs().as_file())
        for obj in self.manifests():
            path = out / "manifests" / manifest_path(obj)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(obj, sort_keys=True))


def manifest_path(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '_cluster')}/{obj['kind']}.{meta['name']}.yaml"


StackOutputsByName = dict[str, StackOutputs]  # ORG/PROJECT/STACK -> what a StackReference to it reads


def render(
    stack: str,
    mock: pulumi.runtime.Mocks | None = None,
    preview: bool = False,
    stack_outputs: StackOutputsByName | None = None,
) -> Rendering:
    """Renders one stack (as `up`, or as the first `preview`). Raises StackNotFoundError or ConfigError."""
    files = stack_files.load(stack)
    return Rendering(stack, run_program(files, mock, preview, stack_outputs))


def render_config(
    files: stack_files.StackFiles,
    mock: pulumi.runtime.Mocks | None = None,
    preview: bool = False,
    stack_outputs: StackOutputsByName | None = None,
) -> Rendering:
    """Renders an in-memory config (tests build variants of the shipped stacks this way)."""
    return Rendering(files.stack, run_program(files, mock, preview, stack_outputs))


def parse_stack_outputs(specs: list[str]) -> StackOutputsByName:
    """`ORG/PROJECT/STACK=PATH` arguments -> outputs by stack name; raises ValueError naming the bad argument."""
    from components.stack_refs import STACK_NAME_HELP, STACK_NAME_PATTERN

    given: StackOutputsByName = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not re.fullmatch(STACK_NAME_PATTERN, name):
            raise ValueError(f"--stack-outputs {spec!r}: expected STACK=PATH with STACK {STACK_NAME_HELP}")
        if name in given:
            raise ValueError(f"--stack-outputs: {name} given twice")
        try:
            given[name] = StackOutputs.load(Path(path))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"--stack-outputs {name}: cannot read {path}: {err}") from err
    return given


def print_counts(rendering: Rendering) -> None:
    counts = rendering.counts()
    width = max((len(t) for t in counts), default=10)
    print(f"{'resource type':<{width}}  count")
    for type_token, n in sorted(counts.items()):
        print(f"{type_token:<{width}}  {n:>5}")
    print(f"{'total':<{width}}  {sum(counts.values()):>5}")


def main(argv: list[str] | None = None) -> int:
    from components.config import ConfigError
    from components.stack_refs import MissingStackOutputError

    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help=f"stack name (stacks/Pulumi.STACK.yaml): {', '.join(stack_files.stack_names())}")
    parser.add_argument("--out", type=Path, help="directory to write (default: render/STACK)")
    parser.add_argument("--diff", type=Path, metavar="OLD_DIR", help="compare with an earlier render")
    parser.add_argument(
        "--preview",
        action="store_true",
        help="run as the first `pulumi preview` on an empty stack: values only the engine would know are [unknown]",
    )
    parser.add_argument("--connectivity", action="store_true", help="print the allowed flows between workloads")
    parser.add_argument(
        "--stack-outputs",
        action="append",
        default=[],
        metavar="ORG/PROJECT/STACK=PATH",
        help="outputs of a stack this one references: its render directory, or `pulumi stack output --json "
        "--show-secrets` saved to a file (repeatable)",
    )
    parser.add_argument(
        "--linked",
        action="store_true",
        help="render the shipped stacks this one references first and use their outputs (tools/stack_files.py "
        "REFERENCED_STACKS), instead of --stack-outputs",
    )
    args = parser.parse_args(argv)
    out = args.out or stack_files.ROOT / "render" / (f"{args.stack}.preview" if args.preview else args.stack)
    try:
        if args.linked:
            from tools import linked

            rendering = linked.render(args.stack, preview=args.preview)
        else:
            given = parse_stack_outputs(args.stack_outputs)
            rendering = render(args.stack, preview=args.preview, stack_outputs=given)
    except (
        stack_files.StackNotFoundError,
        ConfigError,
        ValueError,
        MissingStackOutputsError,  # a referenced stack's outputs not given
        MissingStackOutputError,  # given, but without what this stack reads
    ) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # the program itself failed, as `pulumi up`/`preview` would report it
        print(f"error: the program failed: {err}", file=sys.stderr)
        return 1
    finally:
        release_loops()
    rendering.write(out)
    print_counts(rendering)
    if args.preview:
        for name in rendering.unconfigured_providers():
            print(f"preview: Kubernetes provider {name} runs unconfigured (kubeconfig unknown until the cluster is up)")
    print(f"wrote {out}")
    if args.diff:
        old = render_diff.load(args.diff)
        print()
        print(render_diff.format_changes(render_diff.compare(old, rendering.resources())))
    if args.connectivity:
        print()
        print(netpol.format_matrix(netpol.Cluster.from_manifests(rendering.manifests())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

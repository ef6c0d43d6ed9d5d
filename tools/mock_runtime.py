"""Runs the real, unchanged Pulumi program under the SDK's mock runtime and records what it registers.

No engine, no plugins, no cloud: every resource passes through `new_resource` with its inputs, and
we keep those inputs together with the request's parent, provider and resource options.

Two modes: `up` (OfflineMocks; every output known, as after a real create) and `preview` (PreviewMocks
with the SDK in dry-run: what `pulumi preview` sees on an empty stack, where the program's ordering
and preview-safety faults show up).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import runpy
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import known_types, mocks, settings, stack

from tools.stack_files import ROOT, StackFiles

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN_SHOWN = "[unknown]"  # how a render shows a value only the engine would know (preview: output<T>)
MOCK_ACCOUNT = "123456789012"
ORGANIZATION = "organization"  # the mock runtime's organization: a stack's own name is organization/PROJECT/STACK
MOCK_PROJECT_NUMBER = "210987654321"

# Outputs a provider would compute, keyed by resource type: deterministic stand-ins, named after the
# resource, so renders are byte-identical and a reader can see where each value came from.
Synthesizer = Callable[[mocks.MockResourceArgs], dict[str, Any]]


def _placeholder(args: mocks.MockResourceArgs, output: str) -> str:
    return f"<{output} of {args.name}>"


def _pem(args: mocks.MockResourceArgs, kind: str) -> str:
    return f"-----BEGIN {kind}-----\nmock-{args.name}\n-----END {kind}-----\n"


def _nvflare_ca(args: mocks.MockResourceArgs) -> dict[str, Any]:
    from components.federations import nvflare_kits

    return nvflare_kits.placeholder_ca_outputs(plain(args.inputs, reveal=True))


def _nvflare_kit(args: mocks.MockResourceArgs) -> dict[str, Any]:
    from components.federations import nvflare_kits

    return nvflare_kits.placeholder_kit_outputs(plain(args.inputs, reveal=True))


DEFAULT_SYNTHESIZERS: dict[str, Synthesizer] = {
    "tls:index/privateKey:PrivateKey": lambda a: {
        "privateKeyPem": _pem(a, "PRIVATE KEY"),
        "privateKeyOpenssh": _pem(a, "OPENSSH PRIVATE KEY"),
        "publicKeyPem": _pem(a, "PUBLIC KEY"),
        "publicKeyOpenssh": f"ecdsa-sha2-nistp384 mock-{a.name}\n",
    },
    "tls:index/selfSignedCert:SelfSignedCert": lambda a: {"certPem": _pem(a, "CERTIFICATE")},
    "tls:index/locallySignedCert:LocallySignedCert": lambda a: {"certPem": _pem(a, "CERTIFICATE")},
    "tls:index/certRequest:CertRequest": lambda a: {"certRequestPem": _pem(a, "CERTIFICATE REQUEST")},
    "random:index/randomPassword:RandomPassword": lambda a: {"result": f"mock-{a.name}"},
    "command:local:Command": lambda a: {"stdout": _placeholder(a, "stdout"), "stderr": ""},
    # AWS: the documentation account, and endpoints under .mock so nobody mistakes them for real ones.
    "aws:eks/cluster:Cluster": lambda a: {
        "arn": f"arn:aws:eks:mock:{MOCK_ACCOUNT}:cluster/{a.inputs['name']}",
        "endpoint": f"https://{a.inputs['name']}.eks.mock",
        "certificateAuthority": {"data": _placeholder(a, "certificateAuthority.data")},
        "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.mock/id/{a.inputs['name']}"}]}],
    },
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": lambda a: {
        "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{a.inputs['url'].removeprefix('https://')}",
    },
    # Auto-named: the engine would add a random suffix; the logical name stands in for it.
    "aws:iam/role:Role": lambda a: {"name": a.name, "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/{a.name}"},
    "aws:kms/key:Key": lambda a: {"arn": f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/{a.name}", "keyId": a.name},
    "aws:ec2/launchTemplate:LaunchTemplate": lambda a: {"latestVersion": 1},
    "aws:eks/nodeGroup:NodeGroup": lambda a: {
        "resources": [{"autoscalingGroups": [{"name": _placeholder(a, "autoscaling group")}]}]
    },
    "aws:efs/fileSystem:FileSystem": lambda a: {
        "arn": f"arn:aws:elasticfilesystem:mock:{MOCK_ACCOUNT}:file-system/{a.name}"
    },
    # GCP: endpoints under .mock, the project number above.
    "gcp:container/cluster:Cluster": lambda a: {
        "endpoint": f"{a.inputs['name']}.endpoint.gke.mock",
        "masterAuth": {
            **a.inputs.get("masterAuth", {}),
            "clusterCaCertificate": _placeholder(a, "masterAuth.clusterCaCertificate"),
        },
        "controlPlaneEndpointsConfig": {
            **a.inputs.get("controlPlaneEndpointsConfig", {}),
            "dnsEndpointConfig": {
                **a.inputs.get("controlPlaneEndpointsConfig", {}).get("dnsEndpointConfig", {}),
                "endpoint": f"gke-{a.inputs['name']}.{a.inputs['location']}.gke.mock",
            },
        },
    },
    "gcp:serviceaccount/account:Account": lambda a: {
        "email": f"{a.inputs['accountId']}@mock-project.iam.gserviceaccount.com",
    },
    # Dynamic resources appear with their own type token; nvflare kits are never provisioned offline.
    "pulumi-python:dynamic/flstack:NvflareCa": _nvflare_ca,
    "pulumi-python:dynamic/flstack:NvflareKit": _nvflare_kit,
}

# Invokes (data sources) the program makes, answered the same way every time.
Call = Callable[[dict[str, Any], str], dict[str, Any]]  # (args, region of the provider) -> result
DEFAULT_CALLS: dict[str, Call] = {
    "command:local:run": lambda args, region: {"stdout": f"<stdout of: {args.get('command')}>", "stderr": ""},
    "aws:index/getAvailabilityZones:getAvailabilityZones": lambda args, region: {
        "names": [f"{region}{zone}" for zone in "abcd"],
        "zoneIds": [f"mock-az{i}" for i in range(1, 5)],
    },
    "aws:eks/getAddonVersion:getAddonVersion": lambda args, region: {
        "addonName": args["addonName"],
        "kubernetesVersion": args["kubernetesVersion"],
        "version": f"<default {args['addonName']} for {args['kubernetesVersion']}>",
    },
    "gcp:organizations/getProject:getProject": lambda args, region: {
        "number": MOCK_PROJECT_NUMBER,
        "projectId": args.get("projectId"),
    },
    "aws:index/getPartition:getPartition": lambda args, region: {
        "partition": "aws",
        "dnsSuffix": "amazonaws.com",
        "id": "aws",
        "reverseDnsPrefix": "com.amazonaws",
    },
}


@dataclass(frozen=True)
class StackOutputs:
    """Another stack's outputs as a StackReference reads them: the values and which outputs are secret."""

    outputs: dict[str, Any]
    secret_names: frozenset[str] = frozenset()

    FILE = "stack-outputs.json"  # written into every render directory (tools/render.py)

    @classmethod
    def load(cls, path: Path) -> StackOutputs:
        """A render directory (its stack-outputs.json), or a file saved from `pulumi stack output --json
        --show-secrets`: that form does not say which outputs are secret, so every one is treated as secret."""
        if path.is_dir():
            data = json.loads((path / cls.FILE).read_text())
            return cls(data["outputs"], frozenset(data["secretOutputNames"]))
        outputs = json.loads(path.read_text())
        if not isinstance(outputs, dict):
            raise ValueError(f"{path}: expected a JSON object of stack outputs")
        return cls(outputs, frozenset(outputs))

    @classmethod
    def of(cls, recording: Recording) -> StackOutputs:
        """What a StackReference to the rendered stack would read."""
        return cls(
            plain(recording.outputs, reveal=True),
            frozenset(name for name, value in recording.outputs.items() if _holds_secret(value)),
        )

    def as_file(self) -> str:
        document = {"outputs": self.outputs, "secretOutputNames": sorted(self.secret_names)}
        return json.dumps(document, indent=2, sort_keys=True) + "\n"


class MissingStackOutputsError(Exception):
    """The program references a stack whose outputs the offline render was not given."""


STACK_REFERENCE = "pulumi:pulumi:StackReference"


class OfflineMocks(pulumi.runtime.Mocks):
    def __init__(
        self,
        synthesizers: dict[str, Synthesizer] | None = None,
        calls: dict[str, Call] | None = None,
    ) -> None:
        self.synthesizers = {**DEFAULT_SYNTHESIZERS, **(synthesizers or {})}
        self.calls = {**DEFAULT_CALLS, **(calls or {})}
        self.regions: dict[str, str] = {}  # aws provider name -> its region, for invokes through it
        self.stack_outputs: Mapping[str, StackOutputs] = {}  # other stacks' outputs, by ORG/PROJECT/STACK
        self.own_stack = ""  # ORG/PROJECT/STACK of the stack being rendered

    def read_stack(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        """A StackReference: a read the engine answers from the other stack's last checkpoint (in a preview too)."""
        name = str(args.resource_id or args.inputs.get("name"))
        given = self.stack_outputs.get(name)
        if given is None and name == self.own_stack:
            given = StackOutputs({})  # the stack's own earlier outputs: none, as on a fresh stack
        if given is None:
            raise MissingStackOutputsError(
                f"the program reads the outputs of stack {name} (a pulumi.StackReference); offline, give them with "
                f"--stack-outputs {name}=PATH (PATH: that stack's render directory, or a file saved from "
                "`pulumi stack output --json --show-secrets`)"
            )
        state = {"name": name, "outputs": given.outputs, "secretOutputNames": sorted(given.secret_names)}
        return name, state

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == STACK_REFERENCE:
            return self.read_stack(args)
        state = dict(args.inputs)
        if args.typ == "pulumi:providers:aws":
            self.regions[args.name] = str(args.inputs.get("region", "mock-region-1"))
        synth = self.synthesizers.get(args.typ)
        if synth is not None:
            state.update(synth(args))
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        answer = self.calls.get(args.token)
        if answer is None:
            raise NotImplementedError(f"the offline render has no answer for invoke {args.token}")
        provider_name = (args.provider or "").rpartition("::")[0].rpartition("::")[2]  # URN::ID -> name
        try:
            result = answer(dict(args.args), self.regions.get(provider_name, "mock-region-1"))
        except InvokeError as failure:
            return {}, [("command", str(failure))]
        return result, []  # failures must be a list, not None: the SDK iterates it


# Outputs that a provider computes already in its preview (Check), so they are known there too:
# auto-names of bridged (Terraform) resources.
KNOWN_IN_PREVIEW: dict[str, frozenset[str]] = {"aws:iam/role:Role": frozenset({"name"})}


class PreviewMocks(OfflineMocks):
    """The providers as `pulumi preview` meets them on an empty stack (every resource is a planned create).

    - A create's outputs that are not inputs are unknown, and so is its ID: the engine does not call
      Create in a preview. Python dynamic providers have no preview support, so the same holds for them.
    - pulumi-command is the exception that matters: its provider returns an ID for a planned Command
      even in a preview, so an invoke that `depends_on` the Command is NOT held back by the SDK.
    - New providers get an unknown ID; a Kubernetes provider whose kubeconfig is unknown runs
      unconfigured: it previews objects from their inputs alone, as here (Rendering.unconfigured_providers).
    - The machine is fresh: nothing a Command would create exists yet, so a `command:local:run`
      invoke that actually runs (its inputs all known) reads a machine without it and fails, as
      `kubectl config view --context PROFILE` does before `minikube start`.
    """

    def __init__(
        self,
        synthesizers: dict[str, Synthesizer] | None = None,
        calls: dict[str, Call] | None = None,
    ) -> None:
        super().__init__(synthesizers, calls)
        if "command:local:run" not in (calls or {}):
            self.calls["command:local:run"] = _fresh_machine_run

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == STACK_REFERENCE:
            return self.read_stack(args)
        known = KNOWN_IN_PREVIEW.get(args.typ, frozenset())
        _, planned = super().new_resource(args) if known else ("", {})
        state = dict(args.inputs)
        state.update({k: v for k, v in planned.items() if k in known})
        if args.typ == "pulumi:providers:aws":
            self.regions[args.name] = str(args.inputs.get("region", "mock-region-1"))
        if args.typ.startswith("command:") and args.custom:
            return f"{args.name}-id", state
        return "", state  # "" = unknown ID


def _fresh_machine_run(args: dict[str, Any], region: str) -> dict[str, Any]:
    raise InvokeError(
        f"{args.get('command')!r} ran during the preview, before any Command created what it reads "
        "(on a fresh machine it fails): make the invoke depend on an output that is unknown until the Command ran"
    )


class InvokeError(Exception):
    """An invoke the provider would fail; reported by the SDK as the program's error."""


def contains_unknown(value: Any) -> bool:
    if known_types.is_unknown(value):
        return True
    if is_secret(value):
        return contains_unknown(value["value"])
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return False


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    provider: str | None  # URN of the provider resource
    inputs: dict[str, Any]
    options: dict[str, Any]


@dataclass
class Recording:
    resources: dict[str, Registration] = field(default_factory=dict)  # by URN
    outputs: dict[str, Any] = field(default_factory=dict)
    preview: bool = False


_NO_OPTIONS: dict[str, Any] = {
    "protect": False,
    "retainOnDelete": False,
    "deleteBeforeReplace": False,
    "dependsOn": [],
    "ignoreChanges": [],
    "additionalSecretOutputs": [],
    "aliases": [],
}


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, mock: pulumi.runtime.Mocks, recording: Recording) -> None:
        super().__init__(mock)
        self.recording = recording

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            inputs = rpc.deserialize_properties(request.object)
            provider = request.provider.rpartition("::")[0] or None if request.provider else None
            self.recording.resources[response.urn] = Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent or None,
                provider=provider,
                inputs=inputs,
                options={
                    "protect": bool(request.protect),
                    "retainOnDelete": bool(request.retainOnDelete),
                    "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                    "dependsOn": sorted(request.dependencies),
                    "ignoreChanges": sorted(request.ignoreChanges),
                    "additionalSecretOutputs": sorted(request.additionalSecretOutputs),
                    "aliases": sorted(a.urn or a.spec.name for a in request.aliases),
                    # Lifecycle links, shown only when set (renders of resources without them stay as they were).
                    **({"deletedWith": request.deletedWith} if request.deletedWith else {}),
                    **({"replaceWith": sorted(request.replace_with)} if request.replace_with else {}),
                },
            )
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().ReadResource(request)  # type: ignore[no-untyped-call]
        from pulumi.runtime import rpc

        # Recorded like a registration so renders and diffs show which other stacks a stack reads (never
        # their values: those may be secret).
        self.recording.resources[response.urn] = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            custom=True,
            parent=request.parent or None,
            provider=request.provider.rpartition("::")[0] or None if request.provider else None,
            inputs={"name": rpc.deserialize_properties(request.properties).get("name", request.id)},
            options={**_NO_OPTIONS, "read": True, "dependsOn": sorted(request.dependencies)},
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        # Only the stack's own outputs: components whose parent is the stack also carry
        # `pulumi:pulumi:Stack` in their URN (`...::pulumi:pulumi:Stack$flstack:targets:Minikube::cluster`).
        if request.urn.split("::")[2] == "pulumi:pulumi:Stack":
            from pulumi.runtime import rpc

            self.recording.outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


def run_program(
    files: StackFiles,
    mock: pulumi.runtime.Mocks | None = None,
    preview: bool = False,
    stack_outputs: Mapping[str, StackOutputs] | None = None,
) -> Recording:
    """Runs the project's `__main__.py` for one stack and records every registration.

    `preview`: as `pulumi preview` on an empty stack (the SDK in dry-run, PreviewMocks by default).
    `stack_outputs`: what StackReferences to other stacks (ORG/PROJECT/STACK) read.
    """
    recording = Recording(preview=preview)
    mock = mock or (PreviewMocks() if preview else OfflineMocks())
    if isinstance(mock, OfflineMocks):
        mock.stack_outputs = dict(stack_outputs or {})
        mock.own_stack = f"{ORGANIZATION}/{files.project}/{files.stack}"
    main = str(files.root / "__main__.py")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the components package the program imports
    run_under_mocks(
        lambda: runpy.run_path(main, run_name="__main__"),
        files,
        RecordingMonitor(mock, recording),
        preview,
    )
    return recording


def run_under_mocks(
    program: Callable[[], object], files: StackFiles, monitor: mocks.MockMonitor, preview: bool = False
) -> None:
    """Runs `program` as a Pulumi program in a fresh context, so runs never share SDK state."""

    def body() -> None:
        runtime_config.set_all_config(dict(files.config), sorted(files.secret_keys))
        settings.configure(
            mocks.MockSettings(  # type: ignore[no-untyped-call]
                monitor=monitor,
                monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),  # type: ignore[no-untyped-call]
                engine=mocks.MockEngine(None),
                project=files.project,
                stack=files.stack,
                dry_run=preview,
                organization=ORGANIZATION,
                callbacks=None,
            )
        )
        # The SDK's pending-output set is a context property whose first value is the default of every fresh
        # context: without a set of its own, a run would await the outputs a failed earlier run left behind.
        settings.SETTINGS.outputs = set()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:

            def run() -> None:
                program()

            loop.run_until_complete(stack.run_in_stack(run))
        finally:
            # Join the SDK's worker threads now (each holds an event loop of its own; see release_loops).
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)
            loop.close()

    contextvars.Context().run(body)


def release_loops() -> None:
    """Close the event loops the SDK's mock monitor left in its worker threads, while sockets still exist.

    Left to interpreter exit they are finalized after their sockets and print a spurious traceback.
    Scanning the heap costs ~0.1 s with the providers' SDKs loaded, so tools call this once before exiting.
    """
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE_SIG


def _holds_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def plain(value: Any, reveal: bool) -> Any:
    """Unwraps secrets (or shows `[secret]`, as `pulumi preview` does), shows unknowns as `[unknown]`, and gives
    integral floats back as ints."""
    if known_types.is_unknown(value):
        return UNKNOWN_SHOWN
    if is_secret(value):
        return plain(value["value"], reveal) if reveal else "[secret]"
    if isinstance(value, dict):
        return {k: plain(v, reveal) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v, reveal) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format has only doubles; Kubernetes wants integers
    return value

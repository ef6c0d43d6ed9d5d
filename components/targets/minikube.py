"""A minikube cluster that the program itself starts (and deletes on destroy) with pulumi-command."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import ClassVar, Literal

import pulumi
import pulumi_command as command

from components import kube
from components.config.model import DNS_LABEL, DNS_LABEL_HELP, KUBE_VERSION, KUBE_VERSION_HELP
from components.config.schema import rule


@dataclass(frozen=True)
class MinikubeSettings:
    profile: str = rule("flstack", pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    cpus: int = rule(4, min=2, max=64)
    memory: str = rule("8g", pattern=r"[0-9]+(m|mb|g|gb)", pattern_help="a size such as 8g or 8192mb")
    kubernetes_version: str = rule("1.34.0", pattern=KUBE_VERSION, pattern_help=KUBE_VERSION_HELP)
    driver: Literal["docker", "podman", "kvm2", "qemu2", "virtualbox", "hyperkit", "vfkit"] = "docker"
    # calico by default: minikube's default CNI does not enforce NetworkPolicies.
    cni: Literal["calico", "cilium", "flannel", "kindnet", "bridge", "auto"] = "calico"
    addons: list[str] = rule(default_factory=lambda: ["storage-provisioner", "default-storageclass", "metrics-server"])


def start_command(s: MinikubeSettings) -> str:
    args = [
        "minikube",
        "start",
        "-p",
        s.profile,
        f"--cpus={s.cpus}",
        f"--memory={s.memory}",
        f"--kubernetes-version=v{s.kubernetes_version}",
        f"--driver={s.driver}",
        f"--cni={s.cni}",
    ]
    args += [f"--addons={addon}" for addon in s.addons]
    return shlex.join(args)


def kubeconfig_command(profile: str) -> str:
    return shlex.join(["kubectl", "config", "view", "--raw", "--minify", "--flatten", "--context", profile])


class MinikubeCluster(pulumi.ComponentResource):
    """`minikube start -p PROFILE` on create, `minikube delete -p PROFILE` on destroy, and a provider for it."""

    Settings = MinikubeSettings
    # Config validation refuses LoadBalancer exposure here: the Service would wait (10 minutes, on every up).
    NO_LOAD_BALANCERS = (
        "minikube gives a LoadBalancer Service an address only while `minikube tunnel` runs, which `pulumi up` "
        "does not start, so the Service would wait 10 minutes and fail on every up; use type 'NodePort'"
    )
    SHARED_STORAGE: ClassVar[dict[str, str | None]] = {}  # ReadWriteMany: nfs (or existing) only
    # The local stacks: `pulumi up` proves each federation works (its verification Job) unless `verify: false`.
    VERIFY_BY_DEFAULT = True

    def __init__(self, name: str, settings: MinikubeSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:targets:Minikube", name, None, opts)
        s = settings
        local = command.Provider(f"{name}-local", opts=pulumi.ResourceOptions(parent=self))
        start = command.local.Command(
            f"{name}-start",
            create=start_command(s),
            delete=shlex.join(["minikube", "delete", "-p", s.profile]),
            # minikube cannot resize a profile in place: a changed start line means delete, then start.
            triggers=[start_command(s)],
            opts=pulumi.ResourceOptions(parent=self, provider=local, delete_before_replace=True),
        )
        # Read on every run (an invoke, not a resource): with the docker driver the API server's port
        # changes after `minikube stop/start`, and a kubeconfig captured once would go stale.
        # It must wait for the cluster, and `depends_on=[start]` alone does not hold it back in a preview:
        # pulumi-command gives a planned Command an ID, so the SDK would run the read before minikube
        # exists. The start's stdout is unknown until the start really ran, and an invoke with an unknown
        # input is skipped in the preview (its result unknown: the provider previews unconfigured).
        kubeconfig = command.local.run_output(
            command=start.stdout.apply(lambda _: kubeconfig_command(s.profile)),
            # The output is a flattened kubeconfig with the client key: never into the engine's log.
            logging=command.local.Logging.NONE,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=local, depends_on=[start]),
        ).stdout
        self.provider = kube.ClusterProvider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(kubeconfig),
            cluster_identifier=f"minikube/{s.profile}",
            # A changed setting replaces the start (delete, then start): a new, empty cluster under the same
            # profile. The provider, and with it every object, is replaced along, so they are created again
            # rather than kept "in place" in the state.
            opts=pulumi.ResourceOptions(parent=self, replace_with=[start]),
            # `minikube delete` takes every object along: no API calls for them on destroy or replacement.
            objects_deleted_with=start,
        )
        self.kubernetes_version = s.kubernetes_version
        self.load_balancer_annotations: dict[str, str] = {}
        self.outputs: dict[str, pulumi.Input[str]] = {
            "kind": "minikube",
            "profile": s.profile,
            "kubernetesVersion": s.kubernetes_version,
            "kubectl": f"kubectl --context {s.profile}",
        }
        self.register_outputs(self.outputs)

    def block_storage(self) -> str:
        return "standard"  # minikube's hostpath provisioner, which it installs itself

    def shared_storage(self, kind: str) -> str:
        raise ValueError(f"minikube brings no ReadWriteMany storage of kind {kind!r}")

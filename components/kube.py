"""Kubernetes building blocks shared by every component: object registration and hardened defaults."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import Egress, Exposure

# apiVersion group -> pulumi_kubernetes module name, where they differ.
_GROUP_MODULES = {
    "": "core",
    "rbac.authorization.k8s.io": "rbac",
    "networking.k8s.io": "networking",
    "storage.k8s.io": "storage",
    "policy": "policy",
    "apps": "apps",
    "batch": "batch",
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


class ClusterProvider(k8s.Provider):
    """A target's one Kubernetes provider, with the lifecycle settings every target needs.

    `objects_deleted_with`: the resource whose deletion takes the cluster and every object in it along
    (minikube's start command). Objects registered through `apply`/`chart`/`bound` get `deleted_with` it,
    so `destroy` (or a replaced cluster) does not call the API of a cluster that is going anyway, with a
    kubeconfig from the last `up` that may no longer reach it.
    """

    def __init__(
        self,
        name: str,
        kubeconfig: pulumi.Input[str] | None,
        cluster_identifier: str,
        opts: pulumi.ResourceOptions,
        context: str | None = None,
        objects_deleted_with: pulumi.Resource | None = None,
    ) -> None:
        super().__init__(
            name,
            kubeconfig=kubeconfig,
            context=context,
            # The identity of the cluster, not its kubeconfig text: a refreshed kubeconfig (new port after
            # a restart, new endpoint, rotated certificates) must not replace every object on the cluster.
            cluster_identifier=cluster_identifier,
            # Certificate renewals and kit changes update Secrets and ConfigMaps in place instead of
            # delete-then-create (pods roll through their content-hash annotations).
            enable_secret_mutable=True,
            enable_config_map_mutable=True,
            # Retained namespaces and claims outlive `destroy`; since pulumi-kubernetes 4.29 creating an
            # object that exists fails unless upserting, so `up` after `destroy` would stop at the first one.
            # The price: a rename without `aliases` would create (adopt) and then delete the object.
            upsert_existing_objects=True,
            opts=opts,
        )
        self.objects_deleted_with = objects_deleted_with
        # What `apply` derives the first up's order from: objects registered so far, by (kind, namespace, name),
        # and per StorageClass name what must exist before a claim of that class binds.
        self.registered: dict[tuple[str, str | None, str], pulumi.Resource] = {}
        self.storage_ready: dict[str, list[pulumi.Resource]] = {}
        # The program's retention.Guard, when it has one: retained claims and namespaces wait for its check.
        self.retention: Any = None


def storage_ready(provider: k8s.Provider, storage_class: str, *resources: pulumi.Resource) -> None:
    """Claims of `storage_class` registered later wait for `resources` (its StorageClass, CSI driver, NFS server)
    and, on destroy, go before them: no claim left pointing at a removed provisioner or export."""
    if isinstance(provider, ClusterProvider):
        provider.storage_ready.setdefault(storage_class, []).extend(resources)


# Kinds whose pods mount what they reference: (kind -> path from the object to its pod spec).
_POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _named(kind: str, name: Any) -> list[tuple[str, str]]:
    return [(kind, name)] if isinstance(name, str) else []  # names still unknown (Outputs) cannot be looked up


def pod_references(pod: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every ServiceAccount, Secret, ConfigMap and claim a pod spec mounts or reads."""
    refs = _named("ServiceAccount", pod.get("serviceAccountName"))
    refs += [ref for s in pod.get("imagePullSecrets") or [] for ref in _named("Secret", s.get("name"))]
    for volume in pod.get("volumes") or []:
        refs += _named("Secret", (volume.get("secret") or {}).get("secretName"))
        refs += _named("ConfigMap", (volume.get("configMap") or {}).get("name"))
        refs += _named("PersistentVolumeClaim", (volume.get("persistentVolumeClaim") or {}).get("claimName"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            refs += _named("Secret", (source.get("secret") or {}).get("name"))
            refs += _named("ConfigMap", (source.get("configMap") or {}).get("name"))
    for container in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for var in container.get("env") or []:
            source = var.get("valueFrom") or {}
            refs += _named("Secret", (source.get("secretKeyRef") or {}).get("name"))
            refs += _named("ConfigMap", (source.get("configMapKeyRef") or {}).get("name"))
        for source in container.get("envFrom") or []:
            refs += _named("Secret", (source.get("secretRef") or {}).get("name"))
            refs += _named("ConfigMap", (source.get("configMapRef") or {}).get("name"))
    return refs


def _prerequisites(obj: dict[str, Any], provider: ClusterProvider) -> list[pulumi.Resource]:
    """What must exist before `obj` is created (and outlive it on destroy), among objects registered so far."""
    ns = obj["metadata"].get("namespace")
    if obj["kind"] == "PersistentVolumeClaim":
        storage_class = (obj.get("spec") or {}).get("storageClassName")
        return list(provider.storage_ready.get(storage_class, [])) if isinstance(storage_class, str) else []
    pod: Any = obj
    for key in _POD_SPEC_PATHS.get(obj["kind"], ("-",)):
        pod = pod.get(key) if isinstance(pod, dict) else None
    if not isinstance(pod, dict):
        return []
    found = {ref: provider.registered.get((ref[0], ns, ref[1])) for ref in sorted(set(pod_references(pod)))}
    return [res for res in found.values() if res is not None]


def ordered(obj: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """`opts` plus `depends_on` what `obj` needs on the first up: a claim its storage, a workload the
    ServiceAccount, Secrets, ConfigMaps and claims it mounts (when registered through `apply` before it)."""
    provider = opts.provider
    if not isinstance(provider, ClusterProvider):
        return opts
    needs = _prerequisites(obj, provider)
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=needs)) if needs else opts


def bound(opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """`opts` plus `deleted_with` the cluster, when its provider's objects go with their cluster."""
    provider = opts.provider
    lifetime = provider.objects_deleted_with if isinstance(provider, ClusterProvider) else None
    if lifetime is None or opts.deleted_with is not None:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(deleted_with=lifetime))


def apply(obj: dict[str, Any], opts: pulumi.ResourceOptions, logical_name: str | None = None) -> pulumi.CustomResource:
    """Registers one Kubernetes object (a manifest dict) as its typed pulumi_kubernetes resource.

    Components describe objects as plain manifests, which keeps them readable and testable; the typed
    class gives per-object previews and lets policies see each object. The logical name is
    `namespace/name` (or `name` for cluster-scoped objects), like pulumi-kubernetes' own YAML support;
    `logical_name` stands in for `name` there when the object's name is an Output (a content digest).
    """
    api_version, kind = obj["apiVersion"], obj["kind"]
    meta = obj["metadata"]
    name = logical_name or meta["name"]
    logical = f"{meta['namespace']}/{name}" if meta.get("namespace") else name
    logical = f"{kind.lower()}:{logical}"
    group, _, version = api_version.rpartition("/")
    module = getattr(k8s, _GROUP_MODULES.get(group, "-"), None)
    cls = getattr(getattr(module, version, None), kind, None)
    fields = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    opts = bound(ordered(obj, opts))
    guard = opts.provider.retention if isinstance(opts.provider, ClusterProvider) else None
    if guard is not None and opts.retain_on_delete and kind in ("PersistentVolumeClaim", "Namespace"):
        opts = guard.hold(obj, opts)
    resource: pulumi.CustomResource
    if cls is None:  # a custom resource (PyTorchJob, ...)
        resource = k8s.apiextensions.CustomResource(logical, api_version=api_version, kind=kind, opts=opts, **fields)
    else:
        resource = cls(logical, opts=opts, **fields)
    if isinstance(opts.provider, ClusterProvider):
        opts.provider.registered[(kind, meta.get("namespace"), name)] = resource
    return resource


def chart(
    name: str,
    chart: str,
    version: str,
    repository: str,
    ns: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
) -> k8s.helm.v4.Chart:
    """An upstream Helm chart at a pinned version; helm.v4 registers each object for previews and policies."""
    return k8s.helm.v4.Chart(
        name,
        chart=chart,
        version=version,
        repository_opts={"repo": repository},
        namespace=ns,
        values=values,
        opts=bound(opts),
    )


def content_hash(*values: pulumi.Input[str]) -> pulumi.Output[str]:
    """A short, stable digest of file contents, for pod-template annotations that roll pods on change."""
    return pulumi.Output.all(*values).apply(lambda texts: hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16])


def labels(app: str, component: str, part_of: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": part_of,
        "app.kubernetes.io/managed-by": "flstack",
    }


def selector(labels: dict[str, str], *extra_keys: str) -> dict[str, str]:
    """The identifying labels of `labels` (not managed-by), plus any of `extra_keys` present: a workload's selector."""
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of", *extra_keys)
    return {k: labels[k] for k in keys if k in labels}


def namespace(name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A namespace enforcing the `restricted` Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                "app.kubernetes.io/managed-by": "flstack",
                **(extra_labels or {}),
            },
        },
    }


def service_account(name: str, ns: str, labels: dict[str, str], automount: bool = False) -> dict[str, Any]:
    """A pod identity; no API token mounted unless asked for."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "automountServiceAccountToken": automount,
    }


def claim(name: str, ns: str, size: str, storage_class: str | None, labels: dict[str, str]) -> dict[str, Any]:
    """A ReadWriteOnce PersistentVolumeClaim; storage_class None = the cluster's default class."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    }


def env(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """Container env entries from (name, value) pairs, in order."""
    return [{"name": k, "value": v} for k, v in pairs]


def scratch_volumes(home: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, volumes): writable emptyDirs at `home` and /tmp for containers with a read-only root."""
    mounts = [{"name": "home", "mountPath": home}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    return mounts, volumes


def deny_all(ns: str) -> dict[str, Any]:
    """Default-deny ingress AND egress for every pod in the namespace; components then allow what they need."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


# Cluster DNS: kube-dns (CoreDNS keeps the label) in kube-system, on UDP and TCP 53.
DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def allow_dns(ns: str) -> dict[str, Any]:
    """Egress to cluster DNS for every pod in the namespace (Service names must resolve under deny_all)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "allow-dns", "namespace": ns},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [DNS_PEER], "ports": DNS_PORTS}],
        },
    }


def network_policy(
    name: str,
    ns: str,
    pod_labels: dict[str, str],
    *,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A NetworkPolicy for the pods matching `pod_labels` ({} = every pod); policyTypes name the directions
    given (an empty rule list admits nothing that way)."""
    metadata: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        metadata["labels"] = labels
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": pod_labels} if pod_labels else {},
        "policyTypes": [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None],
    }
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": spec}


def allow_egress(
    ns: str, name: str, pod_labels: dict[str, str], peers: list[dict[str, Any]], ports: list[dict[str, Any]]
) -> dict[str, Any]:
    """Egress from the pods matching `pod_labels` ({} = every pod) to `peers` ([] = any address) on `ports`."""
    rule: dict[str, Any] = {"to": peers} if peers else {}
    if ports:
        rule["ports"] = ports
    return network_policy(name, ns, pod_labels, egress=[rule])


def in_namespace(ns: str, pod_labels: dict[str, str]) -> dict[str, Any]:
    """A NetworkPolicy peer: the pods matching `pod_labels` in namespace `ns` (by its built-in name label)."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "podSelector": {"matchLabels": pod_labels},
    }


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def user_egress(ns: str, egress: Egress) -> list[dict[str, Any]]:
    """The destinations the stack lists (`egress.cidrs`) for every pod of the namespace: none, no object."""
    if not egress.cidrs:
        return []
    peers = [{"ipBlock": {"cidr": cidr}} for cidr in sorted(set(egress.cidrs))]
    return [allow_egress(ns, "allow-listed-egress", {}, peers, tcp(*sorted(set(egress.ports))))]


# The LimitRange backstop: what a container that names no resources gets (a job pod nvflare's launcher starts,
# a container a future component forgets). flstack's own containers always set their own.
LIMIT_DEFAULT_REQUEST = {"cpu": "100m", "memory": "256Mi"}
LIMIT_DEFAULT = {"memory": "1Gi"}


def limit_range(ns: str) -> dict[str, Any]:
    """Default requests and memory limit for every container of the namespace that sets none."""
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "container-defaults", "namespace": ns},
        "spec": {"limits": [{"type": "Container", "defaultRequest": LIMIT_DEFAULT_REQUEST, "default": LIMIT_DEFAULT}]},
    }


def baseline(ns: str, egress: Egress | None = None) -> list[dict[str, Any]]:
    """What every federation namespace gets first: default-deny both ways, DNS, the LimitRange, listed egress.

    Components then allow their own peers (allow_egress and their ingress policies).
    """
    return [deny_all(ns), allow_dns(ns), limit_range(ns), *user_egress(ns, egress or Egress())]


def image(ref: str, digests: Mapping[str, str]) -> str:
    """`repository:tag`, with `@digest` when the stack pins one (flstack:imageDigests): the kubelet then pulls
    exactly those bytes, whatever the tag points at now."""
    digest = digests.get(ref)
    return f"{ref}@{digest}" if digest else ref


def pod_security(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(read_only_root: bool = True) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def deployment(
    name: str,
    ns: str,
    labels: dict[str, str],
    selector: dict[str, str],
    pod: dict[str, Any],
    annotations: dict[str, Any] | None = None,
    replicas: int = 1,
    recreate: bool = False,
) -> dict[str, Any]:
    """A Deployment; `recreate` for single writers of a ReadWriteOnce volume (never two pods at once)."""
    template_meta: dict[str, Any] = {"labels": labels}
    if annotations:
        template_meta["annotations"] = annotations
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {"metadata": template_meta, "spec": pod},
    }
    if recreate:
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": spec,
    }


def exposed_service(
    name: str,
    ns: str,
    labels: dict[str, str],
    selector: dict[str, str],
    ports: list[dict[str, Any]],
    exposure: Exposure,
    load_balancer_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A coordinator's Service, exposed as the stack asks; the first port gets the fixed nodePort, if any."""
    ports = [dict(p) for p in ports]
    if exposure.node_port is not None:
        ports[0]["nodePort"] = exposure.node_port
    spec: dict[str, Any] = {"type": exposure.type, "selector": selector, "ports": ports}
    if exposure.type == "LoadBalancer":
        spec["loadBalancerSourceRanges"] = exposure.source_ranges
    if exposure.type != "ClusterIP":
        # Keep client source IPs so the NetworkPolicy's ipBlocks see who is really connecting.
        spec["externalTrafficPolicy"] = "Local"
    metadata: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if exposure.type == "LoadBalancer" and load_balancer_annotations:
        metadata["annotations"] = dict(load_balancer_annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def service_dns_names(service: str, ns: str) -> list[str]:
    """Every name a pod can dial a Service by (certificate SANs must hold them all)."""
    return [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"]

"""Rules for every pod-bearing kind: the `restricted` Pod Security Standard and more, checked before apply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.base import EXEMPT_NAMESPACES, Config, Props, Rule, flag, kind_of, name_of, string_list

# Where each kind keeps its pod spec.
POD_SPEC_PATHS = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# What `restricted` lets a container add back after dropping ALL.
ALLOWED_CAPABILITIES = {"NET_BIND_SERVICE"}
DOCKER_HUB = "docker.io"


def pod_spec(resource_type: str, props: Props) -> dict[str, Any] | None:
    path = POD_SPEC_PATHS.get(kind_of(resource_type) or "")
    if path is None:
        return None
    node: Any = props
    for key in path:
        node = (node or {}).get(key)
    return node or {}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *(pod.get("ephemeralContainers") or []), *(pod.get("containers") or [])]


def _pods(resource_type: str, props: Props, config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) for a pod-bearing object outside the exempt namespaces."""
    pod = pod_spec(resource_type, props)
    namespace = (props.get("metadata") or {}).get("namespace")
    if pod is not None and namespace not in config.get("exemptNamespaces", []):
        yield name_of(props), pod


def _where(obj: str, c: dict[str, Any]) -> str:
    return f"{obj}/{c.get('name')}"


def _each_container(resource_type: str, props: Props, config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(`object/container`, the container's securityContext) for every container of a checked object."""
    for obj, pod in _pods(resource_type, props, config):
        for c in containers(pod):
            yield _where(obj, c), c.get("securityContext") or {}


def non_root(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers run as a non-root user (runAsNonRoot true, never UID 0)."""
    for obj, pod in _pods(resource_type, props, config):
        pod_sc = pod.get("securityContext") or {}
        for c in containers(pod):
            sc = {**pod_sc, **(c.get("securityContext") or {})}
            if sc.get("runAsNonRoot") is not True:
                yield f"{_where(obj, c)}: runAsNonRoot must be true (pod or container securityContext)"
            if sc.get("runAsUser") == 0:
                yield f"{_where(obj, c)}: runAsUser 0 is root"


def no_privilege_escalation(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers set allowPrivilegeEscalation false (no setuid gains)."""
    for where, sc in _each_container(resource_type, props, config):
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{where}: securityContext.allowPrivilegeEscalation must be false"


def drop_all_capabilities(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers drop ALL capabilities and add back at most NET_BIND_SERVICE."""
    for where, sc in _each_container(resource_type, props, config):
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            yield f"{where}: securityContext.capabilities.drop must include ALL"
        added = sorted(set(caps.get("add") or []) - ALLOWED_CAPABILITIES)
        if added:
            yield f"{where}: adds capabilities {added}; only NET_BIND_SERVICE is allowed"


def read_only_root(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers have a read-only root filesystem (writes go to volumes)."""
    for where, sc in _each_container(resource_type, props, config):
        if sc.get("readOnlyRootFilesystem") is not True:
            yield f"{where}: securityContext.readOnlyRootFilesystem must be true"


def seccomp(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers run under the RuntimeDefault (or a Localhost) seccomp profile."""
    for obj, pod in _pods(resource_type, props, config):
        pod_profile = ((pod.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
        for c in containers(pod):
            profile = ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type") or pod_profile
            if profile not in ("RuntimeDefault", "Localhost"):
                yield f"{_where(obj, c)}: seccompProfile must be RuntimeDefault (got {profile or 'none'})"


def host_isolation(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """No privileged containers, host namespaces (network, PID, IPC), hostPath volumes or hostPorts."""
    for obj, pod in _pods(resource_type, props, config):
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                yield f"{obj}: {key} shares the node's namespace"
        for volume in pod.get("volumes") or []:
            if "hostPath" in volume:
                yield f"{obj}: volume {volume.get('name')!r} is a hostPath (the node's filesystem)"
        for c in containers(pod):
            if (c.get("securityContext") or {}).get("privileged"):
                yield f"{_where(obj, c)}: privileged containers are root on the node"
            for port in c.get("ports") or []:
                if port.get("hostPort"):
                    yield f"{_where(obj, c)}: hostPort {port['hostPort']} binds on the node"


def resources(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Containers request cpu and memory and have a memory limit (no pod can exhaust its node)."""
    for obj, pod in _pods(resource_type, props, config):
        for c in containers(pod):
            res = c.get("resources") or {}
            missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in (res.get("requests") or {})]
            missing += ["limits.memory"] if "memory" not in (res.get("limits") or {}) else []
            if missing:
                yield f"{_where(obj, c)}: resources need {', '.join(missing)}"


def pinned_images(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Images name a version (a tag other than latest, or a digest); with requireDigest, a digest."""
    for obj, pod in _pods(resource_type, props, config):
        for c in containers(pod):
            image = str(c.get("image", ""))
            if "@sha256:" in image:
                continue
            if config.get("requireDigest"):
                yield f"{_where(obj, c)}: image {image!r} must be pinned by digest (@sha256:...)"
                continue
            last = image.rsplit("/", 1)[-1]
            if ":" not in last or last.endswith(":latest"):
                yield f"{_where(obj, c)}: image {image!r} must be pinned to a version"


def registry(image: str) -> str:
    """The registry host of an image reference (Docker Hub when the first part is not a host)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def allowed_registries(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Images come only from the registries the pack's config allows."""
    allowed = config.get("registries") or []
    for obj, pod in _pods(resource_type, props, config):
        for c in containers(pod):
            host = registry(str(c.get("image", "")))
            if host not in allowed:
                yield f"{_where(obj, c)}: registry {host!r} is not allowed (allowed: {', '.join(allowed)})"


def _rule(name: str, check: Any, severity: Any, **config: dict[str, Any]) -> Rule:
    return Rule(name, check, severity, config={"exemptNamespaces": EXEMPT_NAMESPACES, **config})


RULES = [
    _rule("flstack-pods-non-root", non_root, "critical"),
    _rule("flstack-pods-no-privilege-escalation", no_privilege_escalation, "high"),
    _rule("flstack-pods-drop-all-capabilities", drop_all_capabilities, "high"),
    _rule("flstack-pods-read-only-root", read_only_root, "medium"),
    _rule("flstack-pods-seccomp", seccomp, "medium"),
    _rule("flstack-pods-host-isolation", host_isolation, "critical"),
    _rule("flstack-pods-resources", resources, "high"),
    _rule(
        "flstack-pods-pinned-images",
        pinned_images,
        "medium",
        requireDigest=flag("Only image digests (set flstack:imageDigests for every image)"),
    ),
    _rule(
        "flstack-pods-allowed-registries",
        allowed_registries,
        "high",
        # Where flstack's images come from (flwr/*, nvflare/* on Docker Hub, the NFS server on registry.k8s.io)
        # and the registries the FL frameworks and clouds publish to. Narrow it to your mirror.
        registries=string_list(
            ["docker.io", "registry.k8s.io", "ghcr.io", "nvcr.io", "public.ecr.aws", "quay.io"],
            "Registry hosts images may come from (docker.io for Docker Hub names)",
        ),
    ),
]

"""Runs a rendered pod's container as a local process: the same args, env and files, only paths mapped.

Volumes are materialized under a temp dir (Secret and ConfigMap keys become files, emptyDir and PVCs
become empty dirs), every mountPath in args and env is mapped to its local dir, and `$(VAR)` references
are expanded from the container's env exactly as the kubelet does.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.render import Rendering

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass
class LocalContainer:
    args: list[str]
    env: dict[str, str]
    mounts: dict[str, Path] = field(default_factory=dict)  # mountPath -> local dir

    def local(self, pod_path: str) -> Path:
        for mount, local in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if pod_path == mount or pod_path.startswith(mount + "/"):
                return local / pod_path[len(mount) :].lstrip("/")
        raise KeyError(f"{pod_path} is not under any volume mount")


def _listed(files: dict[str, str], source: dict[str, Any]) -> dict[str, str]:
    """A Secret's or ConfigMap's keys as the volume shows them: only the listed `items`, at their paths."""
    items = source.get("items")
    return {item["path"]: files[item["key"]] for item in items} if items else files


def _volume_files(rendering: Rendering, namespace: str, volume: dict[str, Any]) -> dict[str, str] | None:
    if "secret" in volume:
        secret = rendering.find("Secret", volume["secret"]["secretName"], namespace)
        files = dict(secret.get("stringData", {}))
        files.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
        return _listed(files, volume["secret"])
    if "configMap" in volume:
        data = dict(rendering.find("ConfigMap", volume["configMap"]["name"], namespace).get("data", {}))
        return _listed(data, volume["configMap"])
    if "emptyDir" in volume or "persistentVolumeClaim" in volume:
        return {}
    if "projected" in volume:  # each source's listed items, at their paths (all keys if none are listed)
        files = {}
        for source in volume["projected"]["sources"]:
            (kind, ref), name_key = next(iter(source.items())), "secretName" if "secret" in source else "name"
            keys = _volume_files(rendering, namespace, {kind: {name_key: ref["name"], "name": ref["name"]}}) or {}
            files.update(_listed(keys, ref))
        return files
    raise NotImplementedError(f"volume type of {volume}")


def expand(value: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: defined vars are replaced, `$$(` escapes, others stay as is."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0).startswith("$$"):
            return match.group(0)[1:]
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def _field_ref(path: str, labels: dict[str, str], name: str, namespace: str) -> str:
    label = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
    if label:
        return labels[label.group(1)]
    return {"metadata.name": name, "metadata.namespace": namespace}[path]


def materialize(
    rendering: Rendering,
    workload: dict[str, Any],
    container_name: str,
    root: Path,
    pod_index: int = 0,
    host_map: dict[str, str] | None = None,
    map_files: bool = False,
) -> LocalContainer:
    """The container (or init container) `container_name` of pod `pod_index` of a Deployment/StatefulSet, ready
    to run under `root`. `map_files`: mount paths inside mounted files are mapped too (config files naming
    other mounted files)."""
    namespace = workload["metadata"]["namespace"]
    template = workload["spec"]["template"]
    pod = template["spec"]
    ordinal = workload["spec"].get("ordinals", {}).get("start", 0) + pod_index
    pod_name = f"{workload['metadata']['name']}-{ordinal}"
    labels = {**template["metadata"].get("labels", {})}
    if workload["kind"] == "StatefulSet":
        labels[POD_INDEX_LABEL] = str(ordinal)
    container = next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == container_name)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    mounts: dict[str, Path] = {}
    volume_files: dict[Path, dict[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        local = root / pod_name / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        volume_files[local] = _volume_files(rendering, namespace, volumes[mount["name"]]) or {}
        mounts[mount["mountPath"]] = local

    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
        else:
            env[var["name"]] = _field_ref(var["valueFrom"]["fieldRef"]["fieldPath"], labels, pod_name, namespace)

    # One pass over all mount paths, longest first, so a mapped path is never mapped again.
    mount_pattern = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))

    def map_text(text: str) -> str:
        if mounts:
            text = re.sub(rf"(?<![\w/])({mount_pattern})(?=/|$|\s|:|'|\")", lambda m: str(mounts[m.group(1)]), text)
        for host, target in (host_map or {}).items():
            text = text.replace(host, target)
        return text

    for local, files in volume_files.items():
        for key, text in files.items():
            (local / key).parent.mkdir(parents=True, exist_ok=True)  # projected items may name subdirectories
            (local / key).write_text(map_text(text) if map_files else text)
    env = {k: map_text(v) for k, v in env.items()}
    args = [map_text(expand(a, env)) for a in [*container.get("command", []), *container.get("args", [])]]
    return LocalContainer(args=args, env=env, mounts=mounts)

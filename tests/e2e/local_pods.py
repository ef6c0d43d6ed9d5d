"""Runs rendered pods as local processes: volumes materialized at their mount paths, the container's own command.

A pod gets a directory standing in for its filesystem: every mount path P becomes `root/P`, filled the
way the kubelet fills it (Secret and ConfigMap volumes with the kubelet's `..data` symlink layout, PVCs
and emptyDirs empty). The only things translated are paths (mount paths in the command, working
directory, environment and mounted file contents) and the interpreter (`python3` -> a given venv).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# What the kubelet names the timestamped directory a projected volume's files live in.
PROJECTION_DIR = "..2026_01_01_00_00_00.000000000"


@dataclass
class LocalPod:
    name: str
    root: Path
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    mount_paths: list[str]

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def translate(self, text: str) -> str:
        return path_pattern(self.mount_paths).sub(lambda m: str(self.path(m.group(0))), text)


def path_pattern(mount_paths: Iterable[str]) -> re.Pattern[str]:
    """Mount paths standing alone or followed by `/...`: never a prefix of a longer name."""
    alternatives = "|".join(re.escape(p) for p in sorted(mount_paths, key=len, reverse=True))
    return re.compile(rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])")


def materialize(
    deployment: dict[str, Any], manifests: list[dict[str, Any]], root: Path, python: Path, env: dict[str, str]
) -> LocalPod:
    """Lays out the Deployment's first container's volumes under `root` and returns how to run it."""
    ns = deployment["metadata"]["namespace"]
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: m["mountPath"])
    pod = LocalPod(
        name=deployment["metadata"]["name"],
        root=root,
        argv=[],
        env={},
        cwd=root,
        mount_paths=[m["mountPath"] for m in mounts],
    )
    for mount in mounts:  # parents before the mounts nested in them
        target = pod.path(mount["mountPath"])
        volume = volumes[mount["name"]]
        if "secret" in volume:
            secret = _find(manifests, "Secret", volume["secret"]["secretName"], ns)
            files = dict(secret.get("stringData") or {})
            files |= {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            _project(
                target, {k: pod.translate(v) for k, v in files.items()}, volume["secret"].get("defaultMode", 0o644)
            )
        elif "configMap" in volume:
            config_map = _find(manifests, "ConfigMap", volume["configMap"]["name"], ns)
            files = {k: pod.translate(v) for k, v in (config_map.get("data") or {}).items()}
            _project(target, files, volume["configMap"].get("defaultMode", 0o644))
        elif "persistentVolumeClaim" in volume or "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
        else:
            raise ValueError(f"{pod.name}: volume {mount['name']} has a type this emulation does not know")
    command = [*container.get("command", []), *container.get("args", [])]
    if command[0] != "python3":
        raise ValueError(f"{pod.name}: expected a python3 command, got {command[0]!r}")
    pod.argv = [str(python), *(pod.translate(arg) for arg in command[1:])]
    pod.env = {**env, **{e["name"]: pod.translate(e["value"]) for e in container.get("env", []) if "value" in e}}
    if "/tmp" in pod.mount_paths:
        pod.env["TMPDIR"] = str(pod.path("/tmp"))  # the pod's /tmp is its own volume
    pod.cwd = pod.path(container.get("workingDir", "/"))
    return pod


def _find(manifests: list[dict[str, Any]], kind: str, name: str, ns: str) -> dict[str, Any]:
    for obj in manifests:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == ns:
            return obj
    raise KeyError(f"the render has no {kind} {ns}/{name}, which a pod mounts")


def _project(target: Path, files: dict[str, str], mode: int) -> None:
    """The kubelet's atomic-writer layout: files in a timestamped dir, `..data` -> it, `name` -> `..data/name`."""
    real = target / PROJECTION_DIR
    real.mkdir(parents=True)
    for name, content in files.items():
        (real / name).write_text(content)
        (real / name).chmod(mode)
    (target / "..data").symlink_to(PROJECTION_DIR)
    for name in files:
        (target / name).symlink_to(f"..data/{name}")


@dataclass
class Processes:
    """Started pods, each in its own process group so a stop takes its children too."""

    logs: Path
    running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = field(default_factory=list)

    def start(self, pod: LocalPod, stdin: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{pod.name}.log").open("wb")
        process = subprocess.Popen(
            pod.argv,
            cwd=pod.cwd,
            env=pod.env,
            stdin=stdin,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append((pod.name, process, log))
        return process

    def check_alive(self) -> None:
        for name, process, _ in self.running:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_all(self, grace: float = 10.0) -> None:
        for _, process, _ in reversed(self.running):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _, process, log in self.running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=5)
            _signal_group(process, signal.SIGKILL)  # children left behind by a leader that exited
            log.close()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)

"""GKE node pools from config: shielded, Workload Identity metadata, a dedicated service account, GPUs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_gcp as gcp

from components.config.schema import rule

from .taints import TAINT, TAINT_HELP, is_tainted, parse_taint

POOL_NAME = r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?"
MACHINE_TYPE = r"[a-z][a-z0-9]*-[a-z0-9-]+"
GPU_TYPE = r"nvidia-[a-z0-9-]+"
# Machine series that attach only Hyperdisk: their boot disk cannot be a pd-* type.
HYPERDISK_ONLY = ("c4-", "c4a-", "c4d-", "n4-", "n4a-", "n4d-", "x4-", "a4-", "a4x-")
# GPU type prefix -> the machine series that carry it (GKE refuses other pairings).
GPU_MACHINES = {"nvidia-l4": ("g2-",), "nvidia-tesla-t4": ("n1-",), "nvidia-tesla-a100": ("a2-",)}
GPU_MACHINES |= {"nvidia-a100-80gb": ("a2-ultragpu",), "nvidia-h100": ("a3-",)}


@dataclass(frozen=True)
class GpuSettings:
    type: str = rule("nvidia-l4", pattern=GPU_TYPE, pattern_help="a GKE accelerator type such as nvidia-l4")
    count: int = rule(1, min=1, max=16)
    # GKE installs the NVIDIA driver itself; the field is explicit because older versions installed none.
    driver_version: Literal["DEFAULT", "LATEST"] = "DEFAULT"


@dataclass(frozen=True)
class NodePoolSettings:
    name: str = rule(pattern=POOL_NAME, pattern_help="a node pool name (lowercase, digits, '-', at most 40)")
    machine_type: str = rule("e2-standard-4", pattern=MACHINE_TYPE, pattern_help="a machine type such as e2-standard-4")
    disk_type: Literal["pd-balanced", "pd-ssd", "pd-standard", "hyperdisk-balanced"] = "pd-balanced"
    disk_size_gb: int = rule(100, min=10, max=65536)  # boot disk: images and emptyDirs live here
    # Autoscaling bounds for the whole pool (not per zone): GPU capacity is scarce in any one zone.
    min_nodes: int = rule(1, min=0, max=1000)
    max_nodes: int = rule(3, min=1, max=1000)
    spot: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[str] = rule(default_factory=list, pattern=TAINT, pattern_help=TAINT_HELP)
    gpu: GpuSettings | None = None

    def check(self) -> Iterator[tuple[str, str]]:
        if self.min_nodes > self.max_nodes:
            yield "minNodes", f"need minNodes <= maxNodes, got {self.min_nodes} > {self.max_nodes}"
        hyperdisk_only = self.machine_type.startswith(HYPERDISK_ONLY)
        if hyperdisk_only and self.disk_type != "hyperdisk-balanced":
            yield "diskType", f"{self.machine_type} attaches only Hyperdisk: use 'hyperdisk-balanced'"
        if self.gpu is not None:
            series = next((m for prefix, m in GPU_MACHINES.items() if self.gpu.type.startswith(prefix)), None)
            if series and not self.machine_type.startswith(series):
                yield "machineType", f"{self.gpu.type} needs a {' or '.join(s.rstrip('-') for s in series)} machine"

    @property
    def tainted(self) -> bool:
        return is_tainted(self.taints)


def taint(text: str) -> gcp.container.NodePoolNodeConfigTaintArgs:
    """`fltk.node=normal:NoSchedule` -> GKE's {key, value, effect: NO_SCHEDULE}."""
    key, value, effect = parse_taint(text)
    return gcp.container.NodePoolNodeConfigTaintArgs(key=key, value=value or "", effect=effect)


def node_pool(
    name: str,
    cluster: gcp.container.Cluster,
    pool: NodePoolSettings,
    service_account: pulumi.Input[str],
    boot_disk_key: str | None,
    opts: pulumi.ResourceOptions,
) -> gcp.container.NodePool:
    accelerators = None
    if pool.gpu is not None:
        driver = gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
            gpu_driver_version=pool.gpu.driver_version
        )
        accelerators = [
            gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                type=pool.gpu.type, count=pool.gpu.count, gpu_driver_installation_config=driver
            )
        ]
    # Named as configured (GKE also labels nodes cloud.google.com/gke-nodepool=<name>). A change GKE cannot
    # make in place (machine type, GPUs) recreates the pool under the same name: delete before replace.
    return gcp.container.NodePool(
        name,
        name=pool.name,
        cluster=cluster.id,
        location=cluster.location,
        autoscaling=gcp.container.NodePoolAutoscalingArgs(
            total_min_node_count=pool.min_nodes,
            total_max_node_count=pool.max_nodes,
            location_policy="ANY" if pool.gpu or pool.spot else "BALANCED",
        ),
        # On a release channel GKE upgrades nodes itself; auto_upgrade must stay on.
        management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
        upgrade_settings=gcp.container.NodePoolUpgradeSettingsArgs(max_surge=1, max_unavailable=0),
        node_config=gcp.container.NodePoolNodeConfigArgs(
            machine_type=pool.machine_type,
            disk_type=pool.disk_type,
            disk_size_gb=pool.disk_size_gb,
            boot_disk_kms_key=boot_disk_key,
            image_type="COS_CONTAINERD",
            # Never the default Compute Engine account (project Editor): this one may only write logs
            # and metrics and read images.
            service_account=service_account,
            oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],  # IAM roles decide, not scopes
            labels=dict(pool.labels),
            taints=[taint(t) for t in pool.taints],
            guest_accelerators=accelerators,
            spot=pool.spot,
            # Pods see the GKE metadata server (Workload Identity), never the node's own credentials.
            workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                enable_secure_boot=True, enable_integrity_monitoring=True
            ),
            metadata={"disable-legacy-endpoints": "true"},
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
    )

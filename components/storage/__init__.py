"""Storage: the ReadWriteOnce class for federation state and the ReadWriteMany class called `shared`."""

from __future__ import annotations

from dataclasses import dataclass

from components.config import ConfigError, StorageConfig
from components.targets import Target
from components.targets.eks import EksCluster

from .ebs_csi import EbsCsi
from .efs import Efs
from .nfs import NfsServer


@dataclass(frozen=True)
class Storage:
    data_class: str | None  # None: the cluster's default StorageClass
    shared_class: str | None  # None: no ReadWriteMany storage on this target

    def require_shared(self, who: str) -> str:
        if self.shared_class is None:
            raise ValueError(f"{who} needs ReadWriteMany storage: set flstack:storage.shared")
        return self.shared_class

    @property
    def outputs(self) -> dict[str, str | None]:
        return {"dataClass": self.data_class, "sharedClass": self.shared_class}


def provision(config: StorageConfig, target: Target) -> Storage:
    eks = target if isinstance(target, EksCluster) else None
    data_class = config.data_class
    if eks is not None:
        # EKS has no working default class: install the EBS driver, state goes on volumes that are retained.
        data_class = data_class or EbsCsi("storage-ebs", eks).retain_class
    else:
        data_class = data_class or target.default_data_class

    shared = config.shared
    shared_class: str | None = None
    if shared.kind == "existing":
        shared_class = shared.storage_class
    elif shared.kind == "nfs":
        shared_class = NfsServer("storage-nfs", target.provider, data_class, shared.size).class_name
    elif shared.kind == "efs":
        if eks is None:  # StackConfig.check reports this before any resource exists; kept for direct callers
            raise ConfigError("flstack:storage.shared.kind: 'efs' needs the eks target")
        shared_class = Efs("storage-efs", eks).class_name
    return Storage(data_class=data_class, shared_class=shared_class)

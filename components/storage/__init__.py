"""Storage: the ReadWriteOnce class for federation state and the ReadWriteMany class called `shared`."""

from __future__ import annotations

from dataclasses import dataclass

from components.config import StorageConfig
from components.targets import Target


@dataclass(frozen=True)
class Storage:
    data_class: str | None  # None: the cluster's default StorageClass
    shared_class: str | None  # None: no ReadWriteMany storage on this target

    def require_shared(self, who: str) -> str:
        if self.shared_class is None:
            raise ValueError(f"{who} needs ReadWriteMany storage: set flstack:storage.shared")
        return self.shared_class


def provision(config: StorageConfig, target: Target) -> Storage:
    shared = config.shared.storage_class if config.shared.kind == "existing" else None
    return Storage(data_class=config.data_class or target.default_data_class, shared_class=shared)

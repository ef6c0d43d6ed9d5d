"""Storage: the ReadWriteOnce class for federation state and the ReadWriteMany class called `shared`.

Which block storage a cluster needs, and which ReadWriteMany kinds it has beyond `nfs` and `existing`, is
the target's to say (`Target.block_storage`, `Target.SHARED_STORAGE`): nothing here names a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.config import ConfigError, StorageConfig

from .nfs import NfsServer

if TYPE_CHECKING:  # targets build their storage from this package's modules: no import back at run time
    from components.targets import Target


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


def provision(config: StorageConfig, target: Target, image_digests: Mapping[str, str] | None = None) -> Storage:
    data_class = config.data_class or target.block_storage()
    shared = config.shared
    shared_class: str | None = None
    if shared.kind == "existing":
        shared_class = shared.storage_class
    elif shared.kind == "nfs":
        shared_class = NfsServer("storage-nfs", target.provider, data_class, shared.size, image_digests).class_name
    elif shared.kind in target.SHARED_STORAGE:
        shared_class = target.shared_storage(shared.kind)
    elif shared.kind != "none":  # StackConfig.check reports this before any resource exists; kept for direct callers
        raise ConfigError(f"flstack:storage.shared.kind: {shared.kind!r} is not offered by this target")
    return Storage(data_class=data_class, shared_class=shared_class)

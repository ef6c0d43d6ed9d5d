"""flstack: config -> target -> storage -> federations -> exports."""

import pulumi

from components import config, federations, retention, storage, targets

stack = config.load()  # validates everything before any resource is registered

cluster = targets.provision(stack.target, name="cluster")
# Retained claims and namespaces are registered only once compared with the last update's (retention.py).
with retention.Guard(cluster.provider, stack, retention.previous_record()) as guard:
    volumes = storage.provision(stack.storage, cluster, stack.image_digests)
    platform = federations.platform(cluster, volumes, stack.operators, stack.image_digests)
    deployed = federations.deploy(stack.federations, platform)

pulumi.export("target", cluster.outputs)
pulumi.export("storage", volumes.outputs)
pulumi.export("federations", {name: fed.outputs for name, fed in deployed.items()})
if platform.operators.outputs:
    pulumi.export("operators", platform.operators.outputs)
pulumi.export(retention.RECORD, guard.record)

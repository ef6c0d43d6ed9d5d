"""The post-deploy verification Job: `pulumi up` fails, with the check's own output, unless the federation works.

A framework that can prove itself sets `VERIFIES = True` on its component and, when `federation.verify` is
true (the config resolves it: default on for the local minikube target, see `Target.VERIFY_BY_DEFAULT`),
registers one Job through `verification_job`:

    verification_job(name, namespace, *, subject, container, volumes, depends_on, opts, labels,
                     uid, service_account=None, deadline_seconds=DEADLINE_SECONDS, backoff_limit=1,
                     indexed=None)
        -> k8s.batch.v1.Job

- `name`: the Job's name prefix (at most 52 characters); the Job is called `<name>-<10 hex digits>`, the
  sha256 of `subject`. `subject` is a JSON-able description of everything the check verifies (endpoints,
  participants, certificates' digests, the command; Outputs allowed, no secrets): a changed federation gets a
  new Job (replaced, so it runs again on that `up`), an unchanged one the same name and no diff. Its logical
  name stays `job:<namespace>/<name>`, so the replacement is an update of one resource, not add + delete.
- `container`: the one container (name, image, command/args, env, volumeMounts, resources). The builder adds
  what every verification container must have: the restricted-grade securityContext (non-root, read-only
  root filesystem, no privilege escalation, every capability dropped) and `FallbackToLogsOnError`, so the
  failed pod's status carries the log tail; resources must give cpu and memory requests and a memory limit.
- `volumes`: the pod's volumes; Secrets/ConfigMaps registered through `kube.apply` before it are awaited.
- `depends_on`: every workload the check talks to: the Job is created only once they are ready.
- `labels`: the pod's and Job's labels, from `labels(app, federation)`: the federation's NetworkPolicies
  admit exactly these pods (`peer`), nothing else is loosened.
- `uid`: the pod's user and group (the image's non-root user); no service account token is mounted.
- `indexed`: `Indexed(pods, subdomain)` for a check that is several pods (FedML's round: one pod per rank);
  the Job completes only when every index succeeded.

`log_command(job)` gives the stack output that reads the verification log (`kubectl -n NS logs job/NAME`).

How pulumi-kubernetes (v4, here 4.34) awaits a Job, and what flstack sets for it:
- A batch/v1 Job is awaited until its `Complete` condition is True; a `Failed` condition (BackoffLimitExceeded,
  DeadlineExceeded) fails the create/update at once, the error listing the Job's condition and its pods'
  container errors (provider/pkg/await/job.go, https://github.com/pulumi/pulumi-kubernetes/pull/633 "Add Job
  awaiter"; registry docs of kubernetes.batch/v1.Job). A pod's error includes its terminated container's
  `message` (provider/pkg/await/checker/pod/check.go, containerTerminatedError/containerLastTerminationState):
  with `terminationMessagePolicy: FallbackToLogsOnError` that message is the log tail, so the failed `up`
  shows why (the scripts end with one line naming the problem).
- The default wait is 10 minutes; `pulumi.com/timeoutSeconds` overrides it (PR #457 "Add configurable
  timeouts for complex awaiters"). flstack sets it a minute above `activeDeadlineSeconds`, so Kubernetes'
  own DeadlineExceeded (with the pod's log tail) fails the update before Pulumi's timeout would.
- `pulumi.com/skipAwait` would create the Job without waiting (never set here); `pulumi.com/waitFor` (4.18+)
  replaces the built-in await with a custom condition (not needed: the built-in one is what we want).
- A Job that failed stays failed, and by default the next update keeps waiting on it; with
  `pulumi.com/replaceUnready: "true"` (same registry docs) the next `up` replaces it, so it runs again.
- No `ttlSecondsAfterFinished`: the finished Job would be deleted and the next refresh see it gone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import kube

COMPONENT = "verify"  # app.kubernetes.io/component of every verification pod
DEADLINE_SECONDS = 600  # activeDeadlineSeconds: the whole check, image pull included
AWAIT_MARGIN_SECONDS = 60  # Pulumi's await outlives the deadline, so Kubernetes reports the failure
MAX_PREFIX = 52  # a Job name is a DNS label: prefix + '-' + 10 digest characters <= 63
DIGEST_CHARS = 10


@dataclass(frozen=True)
class Indexed:
    """A check that runs as several pods (an Indexed Job: the pod's index in JOB_COMPLETION_INDEX), e.g. a
    whole FedML round; `subdomain` names the headless Service that gives each pod its DNS name."""

    pods: int
    subdomain: str


def labels(app: str, federation: str) -> dict[str, str]:
    """The verification pod's (and Job's) labels: the federation's policies admit exactly these."""
    return kube.labels(app, COMPONENT, federation)


def peer(app: str, federation: str, ns: str | None = None) -> dict[str, Any]:
    """A NetworkPolicy peer naming the verification pod (`ns`: it runs in another namespace than the policy)."""
    selector = kube.selector(labels(app, federation))
    return kube.in_namespace(ns, selector) if ns else {"podSelector": {"matchLabels": selector}}


def digest(subject: Any) -> str:
    """The short sha256 of a JSON-able value: key order and whitespace do not matter."""
    text = json.dumps(subject, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def job_name(name: str, subject: Any) -> pulumi.Output[str]:
    """`<name>-<digest of subject>`; the subject may hold Outputs (certificates), never secrets."""
    if len(name) > MAX_PREFIX:
        raise ValueError(f"verification Job prefix {name!r} is longer than {MAX_PREFIX} characters")
    resolved = pulumi.Output.from_input(subject).apply(lambda value: f"{name}-{digest(value)}")
    # A digest reveals nothing of what it digests: the name is plain even if a subject value was secret.
    return pulumi.Output.unsecret(resolved)


def _checked_container(container: dict[str, Any]) -> dict[str, Any]:
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    if not ({"cpu", "memory"} <= set(requests) and "memory" in limits):
        name = container.get("name")
        raise ValueError(f"verification container {name!r} needs cpu and memory requests and a memory limit")
    return {
        **container,
        "securityContext": kube.container_security(read_only_root=True),
        # The log tail becomes the pod's termination message: the failed `pulumi up` prints it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def manifest(
    name: pulumi.Input[str],
    namespace: str,
    *,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    labels: dict[str, str],
    uid: int,
    service_account: str | None = None,
    deadline_seconds: int = DEADLINE_SECONDS,
    backoff_limit: int = 1,
    indexed: Indexed | None = None,
) -> dict[str, Any]:
    """The Job manifest `verification_job` registers (exposed for tests and for frameworks that need it)."""
    if not 30 <= deadline_seconds <= 3600:
        raise ValueError(f"verification deadline {deadline_seconds}s is outside 30..3600")
    if not 0 <= backoff_limit <= 3:
        raise ValueError(f"verification backoffLimit {backoff_limit} is outside 0..3")
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # a check talks to the federation, never to the Kubernetes API
        "securityContext": kube.pod_security(uid),
        "containers": [_checked_container(container)],
        "volumes": volumes,
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    spec: dict[str, Any] = {"backoffLimit": backoff_limit, "activeDeadlineSeconds": deadline_seconds}
    if indexed is not None:
        # Every index must succeed for the Job to complete; each pod is `<job>-<index>.<subdomain>` in DNS.
        spec.update(completions=indexed.pods, parallelism=indexed.pods, completionMode="Indexed")
        pod["subdomain"] = indexed.subdomain
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {
                "pulumi.com/timeoutSeconds": str(deadline_seconds + AWAIT_MARGIN_SECONDS),
                "pulumi.com/replaceUnready": "true",
            },
        },
        "spec": {**spec, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def verification_job(
    name: str,
    namespace: str,
    *,
    subject: Any,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    depends_on: Sequence[pulumi.Resource],
    opts: pulumi.ResourceOptions,
    labels: dict[str, str],
    uid: int,
    service_account: str | None = None,
    deadline_seconds: int = DEADLINE_SECONDS,
    backoff_limit: int = 1,
    indexed: Indexed | None = None,
) -> pulumi.CustomResource:
    """Registers the verification Job (see the module docstring), created after everything in `depends_on`."""
    obj = manifest(
        job_name(name, subject),
        namespace,
        container=container,
        volumes=volumes,
        labels=labels,
        uid=uid,
        service_account=service_account,
        deadline_seconds=deadline_seconds,
        backoff_limit=backoff_limit,
        indexed=indexed,
    )
    after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(depends_on)))
    return kube.apply(obj, after, logical_name=name)


def log_command(job: pulumi.CustomResource) -> pulumi.Output[str]:
    """The stack output that reads the verification log: `kubectl -n NS logs job/NAME`."""
    if not isinstance(job, k8s.batch.v1.Job):
        raise TypeError(f"expected a batch/v1 Job, got {type(job).__name__}")
    return job.metadata.apply(lambda m: f"kubectl -n {m.namespace} logs job/{m.name}")

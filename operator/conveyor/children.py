"""Pure builders of what the operator creates for a Workflow: one worker Deployment per task
type and the Secret that carries the broker URL into the Workflow's namespace.

With amqps and a CA file, that Secret carries the CA too (key `ca.crt`) and the workers mount
it read-only: a worker trusts what the operator trusts, through the Secret in its own
namespace, and never reads the operator's Secret (which lives elsewhere, under other RBAC).

The manifests are server-side applied by the operator (field manager `conveyor-operator`), so a
builder returns every field the operator owns and nothing else; replicas are the autoscaler's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from conveyor import names
from conveyor.models import TaskType, WorkflowSpec

AMQP_SECRET_KEY = "url"
AMQP_CA_KEY = "ca.crt"  # the key cert-manager and kubernetes.io/tls Secrets use for a CA
AMQP_CA_VOLUME = "conveyor-amqp-ca"
AMQP_CA_DIR = "/etc/conveyor/amqp"
AMQP_CA_FILE = f"{AMQP_CA_DIR}/{AMQP_CA_KEY}"
# Time a worker gets to finish or requeue what it holds after SIGTERM, when no task of its
# type declares a timeout; otherwise the longest timeout plus a margin, capped at an hour.
DEFAULT_GRACE_SECONDS = 60
GRACE_MARGIN_SECONDS = 10
GRACE_DRAIN_MARGIN = 5  # seconds between the worker's own drain deadline and SIGKILL
WORKER_METRICS_PORT = 9464  # conveyor-worker's default CONVEYOR_METRICS_PORT
MAX_GRACE_SECONDS = 3600
_NAME_BUDGET = 52  # ReplicaSet and pod suffixes must still fit a 63-character label


@dataclass(frozen=True)
class Owner:
    """The Workflow that owns the children: they live in its namespace and go with it."""

    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
                "name": self.name, "uid": self.uid, "controller": True,
                "blockOwnerDeletion": True}


def child_name(*parts: str) -> str:
    """`a-b-c`, shortened with a stable hash when it would be too long for a pod name."""
    name = "-".join(parts)
    if len(name) <= _NAME_BUDGET:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _NAME_BUDGET - 9].rstrip('-')}-{digest}"


def deployment_name(workflow: str, task_type: str) -> str:
    return child_name(workflow, task_type)


def amqp_secret_name(workflow: str) -> str:
    return child_name("conveyor", workflow, "amqp")


def selector_labels(workflow: str, task_type: str) -> dict[str, str]:
    return {names.LABEL_WORKFLOW: workflow, names.LABEL_TASK_TYPE: task_type}


def _labels(workflow: str, task_type: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "conveyor-worker",
        "app.kubernetes.io/part-of": "conveyor",
        names.LABEL_MANAGED_BY: names.FIELD_MANAGER,
        names.LABEL_WORKFLOW: workflow,
    }
    if task_type is not None:
        labels[names.LABEL_TASK_TYPE] = task_type
    return labels


def grace_seconds(spec: WorkflowSpec, task_type: str) -> int:
    timeouts = [t.timeout_seconds for t in [*spec.tasks, *spec.finally_]
                if t.type == task_type and t.timeout_seconds]
    if not timeouts:
        return DEFAULT_GRACE_SECONDS
    return min(max(timeouts) + GRACE_MARGIN_SECONDS, MAX_GRACE_SECONDS)


def amqp_secret(owner: Owner, amqp_url: str, ca: str | None = None) -> dict[str, Any]:
    """The broker URL (and the CA, PEM, that verifies it) for the Workflow's workers; owned
    by the Workflow, so it goes with it."""
    data = {AMQP_SECRET_KEY: amqp_url}
    if ca is not None:
        data[AMQP_CA_KEY] = ca
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": amqp_secret_name(owner.name), "namespace": owner.namespace,
                     "labels": _labels(owner.name),
                     "ownerReferences": [owner.reference()]},
        "type": "Opaque",
        "stringData": data,
    }


def _worker_env(workflow: str, task_type: TaskType, queue: str,
                grace: int, amqp_ca: bool) -> list[dict[str, Any]]:
    # Ours come after the user's: Kubernetes lets the last duplicate win, so a task type's
    # env cannot point its workers at another queue by accident.
    ca = [{"name": "CONVEYOR_AMQP_CA_FILE", "value": AMQP_CA_FILE}] if amqp_ca else []
    return [
        *(var.model_dump(by_alias=True, exclude_none=True) for var in task_type.env),
        {"name": "CONVEYOR_AMQP_URL", "valueFrom": {"secretKeyRef": {
            "name": amqp_secret_name(workflow), "key": AMQP_SECRET_KEY}}},
        *ca,
        {"name": "CONVEYOR_QUEUE", "value": queue},
        {"name": "CONVEYOR_TASK_TYPE", "value": task_type.name},
        {"name": "CONVEYOR_CONCURRENCY", "value": str(task_type.concurrency)},
        {"name": "CONVEYOR_DELIVERY_LIMIT", "value": str(task_type.delivery_limit)},
        # The worker drains within this, a margin before the kubelet's SIGKILL.
        {"name": "CONVEYOR_GRACE_SECONDS", "value": str(max(1, grace - GRACE_DRAIN_MARGIN))},
        {"name": "CONVEYOR_WORKER_NAME", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.name"}}},
        {"name": "CONVEYOR_METRICS_ADDRESS", "valueFrom": {"fieldRef": {
            "fieldPath": "status.podIP"}}},
    ]


def worker_deployment(
    owner: Owner, spec: WorkflowSpec, task_type: TaskType, replicas: int, *,
    amqp_ca: bool = False,
) -> dict[str, Any]:
    """The Deployment of one worker pool, consuming `conveyor.<ns>.<workflow>.<type>`;
    `amqp_ca`: the broker Secret carries a CA, which the workers mount and verify with."""
    workflow, namespace = owner.name, owner.namespace
    queue = names.queue_name(namespace, workflow, task_type.name)
    container: dict[str, Any] = {
        "name": "worker",
        "image": task_type.image,
        "env": _worker_env(workflow, task_type, queue, grace_seconds(spec, task_type.name),
                           amqp_ca),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if task_type.command is not None:
        container["command"] = list(task_type.command)
    if task_type.args:
        container["args"] = list(task_type.args)
    if task_type.resources is not None:
        container["resources"] = task_type.resources.model_dump(by_alias=True,
                                                                exclude_none=True)
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_seconds(spec, task_type.name),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
    }
    if amqp_ca:
        container["volumeMounts"] = [{"name": AMQP_CA_VOLUME, "mountPath": AMQP_CA_DIR,
                                      "readOnly": True}]
        pod["volumes"] = [{"name": AMQP_CA_VOLUME, "secret": {
            "secretName": amqp_secret_name(workflow),
            # Only the CA: the URL, with its password, stays out of the filesystem.
            "items": [{"key": AMQP_CA_KEY, "path": AMQP_CA_KEY}]}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(workflow, task_type.name),
            "namespace": namespace,
            "labels": _labels(workflow, task_type.name),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(workflow, task_type.name)},
            "template": {
                "metadata": {"labels": _labels(workflow, task_type.name)},
                "spec": pod,
            },
        },
    }

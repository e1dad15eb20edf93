"""Pure builders of what the operator creates for a Workflow: one worker Deployment per task
type and the Secret that carries the broker URL into the Workflow's namespace.

With amqps and a CA file, that Secret carries the CA too (key `ca.crt`) and the workers mount
it read-only: a worker trusts what the operator trusts, through the Secret in its own
namespace, and never reads the operator's Secret (which lives elsewhere, under other RBAC).

With an object store, the same Secret carries the workers' store key pair (keys named as the
variables they become, `CONVEYOR_S3_ACCESS_KEY` and `CONVEYOR_S3_SECRET_KEY`) and, for a
private CA, the store's CA (`s3-ca.crt`, mounted like the broker's); the store's location
(endpoint, bucket, region, prefix) is plain env, since it is no secret.

The manifests are server-side applied by the operator (field manager `conveyor-operator`), so a
builder returns every field the operator owns and nothing else; replicas are the autoscaler's.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from conveyor import names
from conveyor.models import (
    MAX_GRACE_SECONDS,
    RESERVED_MOUNT_DIR,
    RESERVED_VOLUME_PREFIX,
    PodTemplate,
    TaskType,
    WorkflowSpec,
)

AMQP_SECRET_KEY = "url"
AMQP_CA_KEY = "ca.crt"  # the key cert-manager and kubernetes.io/tls Secrets use for a CA
AMQP_CA_VOLUME = f"{RESERVED_VOLUME_PREFIX}amqp-ca"  # names a podTemplate may not take
AMQP_CA_DIR = f"{RESERVED_MOUNT_DIR}/amqp"
AMQP_CA_FILE = f"{AMQP_CA_DIR}/{AMQP_CA_KEY}"
# The object store's variables (conveyor.store.settings reads them; the pure core may not
# import the adapter, so a unit test holds the two spellings together).
STORE_ENDPOINT_ENV = "CONVEYOR_S3_ENDPOINT"
STORE_BUCKET_ENV = "CONVEYOR_S3_BUCKET"
STORE_REGION_ENV = "CONVEYOR_S3_REGION"
STORE_PREFIX_ENV = "CONVEYOR_S3_PREFIX"
STORE_CA_FILE_ENV = "CONVEYOR_S3_CA_FILE"
STORE_MAX_OBJECT_ENV = "CONVEYOR_S3_MAX_OBJECT_BYTES"
STORE_ACCESS_KEY = "CONVEYOR_S3_ACCESS_KEY"  # keys in the Secret, named as their variables
STORE_SECRET_KEY = "CONVEYOR_S3_SECRET_KEY"
STORE_CA_KEY = "s3-ca.crt"
STORE_CA_VOLUME = f"{RESERVED_VOLUME_PREFIX}s3-ca"
STORE_CA_DIR = f"{RESERVED_MOUNT_DIR}/s3"
STORE_CA_FILE = f"{STORE_CA_DIR}/{STORE_CA_KEY}"
# Time a worker gets to finish or requeue what it holds after SIGTERM, when no task of its
# type declares a timeout; otherwise the longest timeout plus a margin, capped at an hour.
DEFAULT_GRACE_SECONDS = 60
GRACE_MARGIN_SECONDS = 10
GRACE_DRAIN_MARGIN = 5  # seconds between the worker's own drain deadline and SIGKILL
WORKER_METRICS_PORT = 9464  # conveyor-worker's default CONVEYOR_METRICS_PORT
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


@dataclass(frozen=True)
class StoreKeys:
    """The object store key pair the workers get, which travels in the Workflow's Secret
    only."""

    access_key: str
    secret_key: str = field(repr=False)


@dataclass(frozen=True)
class WorkerStore:
    """Where the workers' object store is: plain values of their environment. `ca`: the
    Workflow's Secret carries the store's CA, which the workers mount."""

    bucket: str
    region: str
    endpoint: str | None = None
    prefix: str = ""
    max_object_bytes: int | None = None
    ca: bool = False

    def env(self, secret: str) -> list[dict[str, Any]]:
        """The store's variables, the key pair from `secret`."""
        plain = [(STORE_ENDPOINT_ENV, self.endpoint), (STORE_BUCKET_ENV, self.bucket),
                 (STORE_REGION_ENV, self.region), (STORE_PREFIX_ENV, self.prefix or None),
                 (STORE_CA_FILE_ENV, STORE_CA_FILE if self.ca else None),
                 (STORE_MAX_OBJECT_ENV, None if self.max_object_bytes is None
                  else str(self.max_object_bytes))]
        return [
            *({"name": name, "value": value} for name, value in plain if value is not None),
            *({"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
              for key in (STORE_ACCESS_KEY, STORE_SECRET_KEY)),
        ]


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
    """terminationGracePeriodSeconds of the type's pods: the podTemplate's, or else the
    longest timeout of its tasks plus a margin (DEFAULT_GRACE_SECONDS without one)."""
    declared = next((t for t in spec.task_types if t.name == task_type), None)
    template = declared.pod_template if declared is not None else None
    if template is not None and template.termination_grace_period_seconds is not None:
        return template.termination_grace_period_seconds
    timeouts = [t.timeout_seconds for t in [*spec.tasks, *spec.finally_]
                if t.type == task_type and t.timeout_seconds]
    if not timeouts:
        return DEFAULT_GRACE_SECONDS
    return min(max(timeouts) + GRACE_MARGIN_SECONDS, MAX_GRACE_SECONDS)


def amqp_secret(owner: Owner, amqp_url: str, ca: str | None = None, *,
                store_keys: StoreKeys | None = None,
                store_ca: str | None = None) -> dict[str, Any]:
    """The broker URL (and the CA, PEM, that verifies it) for the Workflow's workers, and
    their object store's key pair (and its CA) when there is a store; owned by the Workflow,
    so it goes with it."""
    data = {AMQP_SECRET_KEY: amqp_url}
    if ca is not None:
        data[AMQP_CA_KEY] = ca
    if store_keys is not None:
        data[STORE_ACCESS_KEY] = store_keys.access_key
        data[STORE_SECRET_KEY] = store_keys.secret_key
    if store_ca is not None:
        data[STORE_CA_KEY] = store_ca
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": amqp_secret_name(owner.name), "namespace": owner.namespace,
                     "labels": _labels(owner.name),
                     "ownerReferences": [owner.reference()]},
        "type": "Opaque",
        "stringData": data,
    }


def _worker_env(workflow: str, task_type: TaskType, queue: str, grace: int, *,
                amqp_ca: bool, store: WorkerStore | None) -> list[dict[str, Any]]:
    # Ours come after the user's: Kubernetes lets the last duplicate win, so a task type's
    # env cannot point its workers at another queue (or store) by accident.
    ca = [{"name": "CONVEYOR_AMQP_CA_FILE", "value": AMQP_CA_FILE}] if amqp_ca else []
    stored = store.env(amqp_secret_name(workflow)) if store is not None else []
    return [
        *(var.model_dump(by_alias=True, exclude_none=True) for var in task_type.env),
        {"name": "CONVEYOR_AMQP_URL", "valueFrom": {"secretKeyRef": {
            "name": amqp_secret_name(workflow), "key": AMQP_SECRET_KEY}}},
        *ca,
        *stored,
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
    amqp_ca: bool = False, store: WorkerStore | None = None,
) -> dict[str, Any]:
    """The Deployment of one worker pool, consuming `conveyor.<ns>.<workflow>.<type>`;
    `amqp_ca`: the broker Secret carries a CA, which the workers mount and verify with;
    `store`: the object store the workers keep large outputs in."""
    workflow, namespace = owner.name, owner.namespace
    queue = names.queue_name(namespace, workflow, task_type.name)
    container: dict[str, Any] = {
        "name": "worker",
        "image": task_type.image,
        "env": _worker_env(workflow, task_type, queue, grace_seconds(spec, task_type.name),
                           amqp_ca=amqp_ca, store=store),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT}],
        "securityContext": container_security(task_type.pod_template),
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
    # Only the CAs are mounted: the URL with its password, and the store's keys, stay out of
    # the filesystem. A directory mount, not a subPath, so a rotated CA reaches the pods.
    mounts = [(AMQP_CA_VOLUME, AMQP_CA_DIR, AMQP_CA_KEY)] if amqp_ca else []
    if store is not None and store.ca:
        mounts.append((STORE_CA_VOLUME, STORE_CA_DIR, STORE_CA_KEY))
    if mounts:
        container["volumeMounts"] = [{"name": volume, "mountPath": path, "readOnly": True}
                                     for volume, path, _ in mounts]
        pod["volumes"] = [{"name": volume, "secret": {
            "secretName": amqp_secret_name(workflow),
            "items": [{"key": key, "path": key}]}} for volume, _, key in mounts]
    metadata: dict[str, Any] = {"labels": _labels(workflow, task_type.name)}
    if task_type.pod_template is not None:
        _overlay(task_type.pod_template, metadata, pod, container)
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
            "template": {"metadata": metadata, "spec": pod},
        },
    }


# The worker container's security defaults (the restricted Pod Security Standard's).
SECURITY_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_POD_LEVEL = ("runAsNonRoot", "seccompProfile")  # defaults the pod's securityContext may set


def container_security(template: PodTemplate | None) -> dict[str, Any]:
    """The worker container's securityContext: the operator's defaults, each field the
    podTemplate sets (in containerSecurityContext; runAsNonRoot and seccompProfile also in the
    pod's securityContext, which the container's would otherwise override) replacing it;
    capabilities' add and drop each replace the default's on their own."""
    security = copy.deepcopy(SECURITY_DEFAULTS)
    if template is None:
        return security
    pod = _dump(template.security_context)
    for key in _POD_LEVEL:
        if key in pod:
            del security[key]
    given = _dump(template.container_security_context)
    capabilities = given.pop("capabilities", None)
    security.update(given)
    if capabilities is not None:
        security["capabilities"] = {**security["capabilities"], **capabilities}
    return security


def _dump(model: Any) -> dict[str, Any]:
    if model is None:
        return {}
    dumped: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True)
    return dumped


def _overlay(template: PodTemplate, metadata: dict[str, Any], pod: dict[str, Any],
             container: dict[str, Any]) -> None:
    """The podTemplate on the pod the operator built: its lists after the operator's entries
    (volumes, mounts), its fields where the operator has none. Admission keeps the operator's
    names (labels, volumes, mount paths) out of it; the operator's labels go last anyway."""
    if template.labels:
        metadata["labels"] = {**template.labels, **metadata["labels"]}
    if template.annotations:
        metadata["annotations"] = dict(template.annotations)
    if template.image_pull_policy is not None:
        container["imagePullPolicy"] = template.image_pull_policy
    if template.env_from:
        container["envFrom"] = [_dump(source) for source in template.env_from]
    if template.volume_mounts:
        container["volumeMounts"] = [*container.get("volumeMounts", []),
                                     *(_dump(m) for m in template.volume_mounts)]
    if template.volumes:
        pod["volumes"] = [*pod.get("volumes", []), *(_dump(v) for v in template.volumes)]
    if template.service_account_name is not None:
        pod["serviceAccountName"] = template.service_account_name
    if template.automount_service_account_token is not None:
        pod["automountServiceAccountToken"] = template.automount_service_account_token
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = [_dump(secret) for secret in template.image_pull_secrets]
    if template.node_selector:
        pod["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod["tolerations"] = [_dump(toleration) for toleration in template.tolerations]
    if template.affinity is not None:
        pod["affinity"] = _dump(template.affinity)
    if template.priority_class_name is not None:
        pod["priorityClassName"] = template.priority_class_name
    if template.security_context is not None:
        pod["securityContext"] = _dump(template.security_context)

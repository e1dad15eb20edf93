"""The API of Conveyor as pydantic models: the one source of the CRDs and the message bodies.

Field names and semantics are fixed by DESIGN.md §2 (resources) and §3 (messages). Every field
carries its description as an attribute docstring; `crdgen` turns these models into structural
CRD schemas, so a field documented here is what `kubectl explain` prints.

Size bounds (`max_length`) are part of the API: the CEL rules in `crdgen` iterate these lists,
and the API server only accepts rules whose estimated cost, computed from these bounds, fits
its budget.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic.config import JsonValue as SchemaValue

from conveyor import names

# A DNS-1123 label, as Kubernetes names of Deployments and label values require.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 63

# Bounds that keep the admission rules within the API server's CEL cost budget: the rule
# that resolves every dependsOn costs about tasks x dependsOn x tasks comparisons. Measured on
# kube-apiserver 1.36: 150 x 20 fits (about 0.7 of the budget), 200 x 20 does not.
MAX_TASKS = 150
MAX_FINALLY = 20
MAX_TASK_TYPES = 50
MAX_DEPENDS_ON = 20
MAX_TRIGGERS = 20
MAX_SCHEDULES = 20
MAX_EXPRESSION = 4096
MAX_FAILED_ATTEMPTS = 5  # kept per task in its status, whatever the number of items
MAX_ATTEMPT_MESSAGE = 200  # characters of an error kept in a failed attempt's record
# Durations in seconds are at most ten years: the engine turns them into due times, and a due
# time past year 9999 cannot be written to a status (it crashed the status write).
MAX_SECONDS = 10 * 365 * 24 * 3600

# Free-form JSON (inputs, outputs): the only place the CRD keeps unknown fields.
FREE_FORM = {"x-kubernetes-preserve-unknown-fields": True}
JsonObject = Annotated[dict[str, Any], WithJsonSchema({"type": "object", **FREE_FORM})]
JsonValue = Annotated[Any, WithJsonSchema(dict(FREE_FORM))]
# A Kubernetes resource quantity: `2`, `500m`, `1Gi`.
Quantity = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]

Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX, pattern=DNS_LABEL)]
Expression = Annotated[str, Field(max_length=MAX_EXPRESSION)]

TaskPhase = Literal[
    "Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed", "Skipped", "Cancelled"
]
RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
ConditionStatus = Literal["True", "False", "Unknown"]


def rule(cel: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; the message names the field it is about."""
    entry: JsonDict = {"rule": cel, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


# What admission rejects in a Workflow spec. Each rule iterates bounded lists only (see the
# MAX_ constants), so the API server's cost estimator accepts it; `finally` and `dependsOn`
# are optional and absent when empty, hence the has() guards.
SPEC_RULES: list[SchemaValue] = [
    rule("self.taskTypes.all(a, self.taskTypes.exists_one(b, b.name == a.name))",
         "spec.taskTypes: task type names must be unique", ".taskTypes"),
    rule("self.tasks.all(a, self.tasks.exists_one(b, b.name == a.name))",
         "spec.tasks: task names must be unique", ".tasks"),
    rule("!has(self.finally) || self.finally.all(a,"
         " self.finally.exists_one(b, b.name == a.name)"
         " && !self.tasks.exists(b, b.name == a.name))",
         "spec.finally: task names must be unique across spec.tasks and spec.finally",
         ".finally"),
    rule("self.tasks.all(t, t.type in self.taskTypes.map(x, x.name))",
         "spec.tasks: every type must name an entry of spec.taskTypes", ".tasks"),
    rule("!has(self.finally) || self.finally.all(t,"
         " t.type in self.taskTypes.map(x, x.name))",
         "spec.finally: every type must name an entry of spec.taskTypes", ".finally"),
    rule("self.tasks.all(t, !has(t.dependsOn)"
         " || t.dependsOn.all(d, d in self.tasks.map(x, x.name)))",
         "spec.tasks: every dependsOn must name a task of spec.tasks", ".tasks"),
    rule("!has(self.finally) || self.finally.all(t, !has(t.dependsOn)"
         " || t.dependsOn.all(d, d in self.finally.map(x, x.name)))",
         "spec.finally: every dependsOn must name another finally task"
         " (finally tasks run after all of spec.tasks)", ".finally"),
]


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )


# --- core/v1 pieces a task type's container takes, modelled structurally -------------------


class KeySelector(Model):
    """Selects a key of a ConfigMap or Secret."""

    name: str = Field(max_length=253)
    """Name of the ConfigMap or Secret, in the Workflow's namespace."""
    key: str = Field(max_length=253)
    """The key to select."""
    optional: bool | None = None
    """Whether the ConfigMap or Secret (or its key) may be missing."""


class FieldSelector(Model):
    """Selects a field of the pod (downward API)."""

    field_path: str = Field(max_length=253)
    """Path of the field, e.g. `metadata.name` or `status.podIP`."""
    api_version: str | None = None
    """Version of the schema the fieldPath is written in; default `v1`."""


class ResourceFieldSelector(Model):
    """Selects a resource limit or request of a container."""

    resource: str = Field(max_length=253)
    """The resource, e.g. `limits.cpu`."""
    container_name: str | None = None
    """The container; default the worker container."""
    divisor: Quantity | None = None
    """Output format of the exposed resource; default `1`."""


class EnvVarSource(Model):
    """Where an environment variable's value comes from (core/v1 EnvVarSource)."""

    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    field_ref: FieldSelector | None = None
    """A field of the pod."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource limit or request of the container."""


class EnvVar(Model):
    """An environment variable of the worker container (core/v1 EnvVar)."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the variable."""
    value: str | None = None
    """Literal value; `$(VAR)` references expand as in any container."""
    value_from: EnvVarSource | None = None
    """Source of the value, instead of `value`."""


class ResourceClaim(Model):
    """A dynamic resource claim the container uses (core/v1 ResourceClaim)."""

    name: str = Field(max_length=253)
    """Name of an entry of the pod's resourceClaims."""
    request: str | None = None
    """The request of that claim to use, if it has several."""


class ResourceRequirements(Model):
    """Compute resources of the worker container (core/v1 ResourceRequirements)."""

    limits: dict[str, Quantity] | None = None
    """Most the container may use, e.g. `{cpu: 2, memory: 1Gi}`."""
    requests: dict[str, Quantity] | None = None
    """What the scheduler reserves, e.g. `{cpu: 500m, memory: 256Mi}`."""
    claims: list[ResourceClaim] | None = None
    """Dynamic resource claims the container uses."""


# --- core/v1 pieces of the worker pod (a task type's podTemplate), modelled structurally ------
# Kubernetes' own shapes and names, cut to what a worker pool needs; what is left out is listed
# in PodTemplate's docstring. Lists are bounded so the admission rules stay within budget.

MAX_POD_LIST = 32  # volumes, volumeMounts, tolerations, sources of a projected volume
MAX_POD_SMALL = 16  # imagePullSecrets, envFrom, items, terms, expressions, capabilities
MAX_POD_MAP = 64  # labels, annotations, nodeSelector, volumeAttributes
MAX_GRACE_SECONDS = 3600  # longest terminationGracePeriodSeconds the operator sets
FILE_MODE_MAX = 0o777
# What the operator keeps for itself in a worker pod (children.py builds with these).
RESERVED_VOLUME_PREFIX = "conveyor-"  # its CA volumes: conveyor-amqp-ca, conveyor-s3-ca
RESERVED_MOUNT_DIR = "/etc/conveyor"  # where they are mounted
RESERVED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of",
                   names.LABEL_MANAGED_BY)  # besides every conveyor.dev/ key
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"  # set on busy pods by the operator
SourceName = Annotated[str, Field(min_length=1, max_length=253)]
FileMode = Annotated[int, Field(ge=0, le=FILE_MODE_MAX)]
RelativePath = Annotated[str, Field(min_length=1, max_length=4096)]


def _one_of(*fields: str) -> str:
    """CEL: exactly one of `fields` is set."""
    return " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields) + " == 1"


def _keyed_by(key: str) -> JsonDict:
    """A list the API server keeps unique by `key` (and merges by it, as server-side apply)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


def _starts(value: str, prefixes: tuple[str, ...]) -> str:
    return " || ".join(f"{value}.startsWith('{p}')" for p in prefixes)


class LocalObjectReference(Model):
    """Names an object in the Workflow's namespace."""

    name: SourceName
    """Name of the object."""


class KeyToPath(Model):
    """A key of a Secret or ConfigMap written as a file of the volume."""

    key: SourceName
    """The key."""
    path: RelativePath
    """Relative path of the file in the volume; no `..` element, not absolute."""
    mode: FileMode | None = None
    """Permission bits of the file (octal 0-0777; YAML reads `0400` as octal); default the
    volume's defaultMode."""


class SecretVolumeSource(Model):
    """A Secret's keys as files (core/v1 SecretVolumeSource)."""

    secret_name: SourceName
    """Name of the Secret, in the Workflow's namespace."""
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """Keys to project, each to a path; default every key to a file named as the key."""
    default_mode: FileMode | None = None
    """Permission bits of the files; default 0644."""
    optional: bool | None = None
    """Whether the Secret (or its keys) may be missing."""


class ConfigMapVolumeSource(Model):
    """A ConfigMap's keys as files (core/v1 ConfigMapVolumeSource)."""

    name: SourceName
    """Name of the ConfigMap, in the Workflow's namespace."""
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """Keys to project, each to a path; default every key to a file named as the key."""
    default_mode: FileMode | None = None
    """Permission bits of the files; default 0644."""
    optional: bool | None = None
    """Whether the ConfigMap (or its keys) may be missing."""


class EmptyDirVolumeSource(Model):
    """A scratch directory that lives as long as the pod (core/v1 EmptyDirVolumeSource)."""

    medium: Literal["", "Memory"] | None = None
    """`Memory` for a tmpfs; default the node's disk."""
    size_limit: Quantity | None = None
    """Most the directory may hold, e.g. `1Gi`."""


class PersistentVolumeClaimVolumeSource(Model):
    """A PersistentVolumeClaim of the Workflow's namespace (core/v1)."""

    claim_name: SourceName
    """Name of the claim."""
    read_only: bool | None = None
    """Mount it read-only."""


class CSIVolumeSource(Model):
    """An inline volume of a CSI driver, e.g. the Secrets Store CSI driver (core/v1)."""

    driver: SourceName
    """Name of the driver, e.g. `secrets-store.csi.k8s.io`."""
    read_only: bool | None = None
    """Mount it read-only."""
    fs_type: str | None = Field(default=None, max_length=63)
    """Filesystem type, e.g. `ext4`, where the driver takes one."""
    volume_attributes: dict[str, str] | None = Field(default=None, max_length=MAX_POD_MAP)
    """Driver-specific attributes."""
    node_publish_secret_ref: LocalObjectReference | None = None
    """A Secret the driver passes to its NodePublishVolume call."""


class DownwardAPIVolumeFile(Model):
    """One field of the pod, or a resource of the worker container, as a file."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule(_one_of("fieldRef", "resourceFieldRef"),
             "podTemplate.volumes: each downwardAPI item takes exactly one of fieldRef and "
             "resourceFieldRef"),
    ]})

    path: RelativePath
    """Relative path of the file in the volume."""
    field_ref: FieldSelector | None = None
    """A field of the pod, e.g. `metadata.labels`."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource limit or request of the container."""
    mode: FileMode | None = None
    """Permission bits of the file."""


class DownwardAPIVolumeSource(Model):
    """Fields of the pod as files (core/v1 DownwardAPIVolumeSource)."""

    items: list[DownwardAPIVolumeFile] = Field(default_factory=list, max_length=MAX_POD_SMALL)
    """The files."""
    default_mode: FileMode | None = None
    """Permission bits of the files; default 0644."""


class SecretProjection(Model):
    """A Secret's keys in a projected volume."""

    name: SourceName
    """Name of the Secret."""
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """Keys to project; default every key."""
    optional: bool | None = None
    """Whether the Secret may be missing."""


class ConfigMapProjection(Model):
    """A ConfigMap's keys in a projected volume."""

    name: SourceName
    """Name of the ConfigMap."""
    items: list[KeyToPath] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """Keys to project; default every key."""
    optional: bool | None = None
    """Whether the ConfigMap may be missing."""


class DownwardAPIProjection(Model):
    """Fields of the pod in a projected volume."""

    items: list[DownwardAPIVolumeFile] = Field(default_factory=list, max_length=MAX_POD_SMALL)
    """The files."""


class ServiceAccountTokenProjection(Model):
    """A token of the pod's ServiceAccount for an audience (workload identity, Vault)."""

    path: RelativePath
    """Relative path of the token file."""
    audience: str | None = Field(default=None, max_length=253)
    """Who the token is for; default the API server."""
    expiration_seconds: int | None = Field(default=None, ge=600, le=MAX_SECONDS)
    """Requested lifetime; the kubelet renews it; default one hour."""


class VolumeProjection(Model):
    """One source of a projected volume."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule(_one_of("secret", "configMap", "downwardAPI", "serviceAccountToken"),
             "podTemplate.volumes: each projected source takes exactly one of secret, "
             "configMap, downwardAPI and serviceAccountToken"),
    ]})

    secret: SecretProjection | None = None
    """Keys of a Secret."""
    config_map: ConfigMapProjection | None = None
    """Keys of a ConfigMap."""
    downward_api: DownwardAPIProjection | None = Field(default=None, alias="downwardAPI")
    """Fields of the pod."""
    service_account_token: ServiceAccountTokenProjection | None = None
    """A ServiceAccount token for an audience."""


class ProjectedVolumeSource(Model):
    """Several sources in one directory (core/v1 ProjectedVolumeSource)."""

    sources: list[VolumeProjection] = Field(min_length=1, max_length=MAX_POD_LIST)
    """The sources."""
    default_mode: FileMode | None = None
    """Permission bits of the files; default 0644."""


VOLUME_SOURCES = ("secret", "configMap", "emptyDir", "persistentVolumeClaim", "projected",
                  "downwardAPI", "csi")


class Volume(Model):
    """A volume of the worker pod (core/v1 Volume), of one of the kinds a worker pool needs:
    secret, configMap, emptyDir, persistentVolumeClaim, projected, downwardAPI, csi. Others
    (hostPath among them: a node's filesystem is not a worker's to write) are refused."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule(_one_of(*VOLUME_SOURCES),
             "podTemplate.volumes: each volume takes exactly one source, of "
             + ", ".join(VOLUME_SOURCES)),
        rule(f"!self.name.startsWith('{RESERVED_VOLUME_PREFIX}')",
             f"podTemplate.volumes: names beginning {RESERVED_VOLUME_PREFIX} are the "
             "operator's (it mounts its CAs under them)", ".name"),
    ]})

    name: Name
    """Name of the volume, a DNS-1123 label unique in the pod; volumeMounts refer to it."""
    secret: SecretVolumeSource | None = None
    """A Secret's keys as files."""
    config_map: ConfigMapVolumeSource | None = None
    """A ConfigMap's keys as files."""
    empty_dir: EmptyDirVolumeSource | None = None
    """A scratch directory as long as the pod lives."""
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None
    """A PersistentVolumeClaim."""
    projected: ProjectedVolumeSource | None = None
    """Secrets, ConfigMaps, pod fields and ServiceAccount tokens in one directory."""
    downward_api: DownwardAPIVolumeSource | None = Field(default=None, alias="downwardAPI")
    """Fields of the pod as files."""
    csi: CSIVolumeSource | None = None
    """An inline volume of a CSI driver."""


class VolumeMount(Model):
    """A volume mounted into the worker container (core/v1 VolumeMount)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule(f"self.mountPath != '{RESERVED_MOUNT_DIR}'"
             f" && !self.mountPath.startsWith('{RESERVED_MOUNT_DIR}/')",
             f"podTemplate.volumeMounts: {RESERVED_MOUNT_DIR} is the operator's (its CAs are "
             "mounted there)", ".mountPath"),
    ]})

    name: Name
    """The volume, an entry of podTemplate.volumes."""
    mount_path: str = Field(min_length=1, max_length=1024, pattern=r"^/")
    """Absolute path in the container, unique among the mounts."""
    sub_path: str | None = Field(default=None, max_length=1024)
    """A relative path inside the volume to mount instead of its root (no `..`)."""
    read_only: bool | None = None
    """Mount read-only."""


class ConfigMapEnvSource(Model):
    """A ConfigMap whose keys become environment variables."""

    name: SourceName
    """Name of the ConfigMap."""
    optional: bool | None = None
    """Whether the ConfigMap may be missing."""


class SecretEnvSource(Model):
    """A Secret whose keys become environment variables."""

    name: SourceName
    """Name of the Secret."""
    optional: bool | None = None
    """Whether the Secret may be missing."""


class EnvFromSource(Model):
    """Every key of a ConfigMap or Secret as a variable of the worker container (core/v1).
    A variable of `env`, and every one the operator sets (CONVEYOR_QUEUE, ...), wins over one
    of the same name from here."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule(_one_of("configMapRef", "secretRef"),
             "podTemplate.envFrom: each entry takes exactly one of configMapRef and secretRef"),
    ]})

    prefix: str | None = Field(default=None, max_length=253)
    """Prepended to every key."""
    config_map_ref: ConfigMapEnvSource | None = None
    """The ConfigMap."""
    secret_ref: SecretEnvSource | None = None
    """The Secret."""


class Toleration(Model):
    """Lets the workers run on nodes with a matching taint (core/v1 Toleration)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule("!has(self.operator) || self.operator != 'Exists' || !has(self.value)"
             " || self.value == ''",
             "podTemplate.tolerations: value must be empty when operator is Exists", ".value"),
        rule("(has(self.key) && self.key != '')"
             " || (has(self.operator) && self.operator == 'Exists')",
             "podTemplate.tolerations: an empty key needs operator Exists (it matches every "
             "taint)", ".operator"),
        rule("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
             "podTemplate.tolerations: tolerationSeconds applies to effect NoExecute only",
             ".tolerationSeconds"),
    ]})

    key: str | None = Field(default=None, max_length=317)
    """The taint's key; empty with operator Exists matches every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Equal (default) compares the value; Exists matches any."""
    value: str | None = Field(default=None, max_length=63)
    """The taint's value, for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect to match; default every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    """How long a NoExecute taint is tolerated before eviction; default for ever."""


def _requirement_rules(field: str) -> list[SchemaValue]:
    return [
        rule("self.operator in ['Exists', 'DoesNotExist'] ? !has(self.values)"
             " || size(self.values) == 0 : true",
             f"podTemplate.affinity: values must be empty for operators Exists and "
             f"DoesNotExist ({field})", ".values"),
        rule("self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0"
             " : true",
             f"podTemplate.affinity: values must not be empty for operators In and NotIn "
             f"({field})", ".values"),
    ]


class NodeSelectorRequirement(Model):
    """A key, an operator and values that a node's label (or field) must satisfy."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        *_requirement_rules("matchExpressions"),
        rule("self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1"
             " : true",
             "podTemplate.affinity: values must hold one integer for operators Gt and Lt",
             ".values"),
    ]})

    key: str = Field(min_length=1, max_length=317)
    """The label key (or field name) compared."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """How the key's value is compared with values."""
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(default=None,
                                                                      max_length=MAX_POD_MAP)
    """The values."""


class NodeSelectorTerm(Model):
    """Requirements a node must all meet."""

    match_expressions: list[NodeSelectorRequirement] | None = Field(default=None,
                                                                    max_length=MAX_POD_SMALL)
    """Requirements on the node's labels."""
    match_fields: list[NodeSelectorRequirement] | None = Field(default=None,
                                                               max_length=MAX_POD_SMALL)
    """Requirements on the node's fields (`metadata.name`)."""


class NodeSelector(Model):
    """Terms of which a node must meet at least one."""

    node_selector_terms: list[NodeSelectorTerm] = Field(min_length=1, max_length=MAX_POD_SMALL)
    """The terms, ORed."""


class PreferredSchedulingTerm(Model):
    """A node term the scheduler prefers, with its weight."""

    weight: int = Field(ge=1, le=100)
    """Weight of the preference, 1-100."""
    preference: NodeSelectorTerm
    """The term."""


class NodeAffinity(Model):
    """Which nodes the workers may or should run on (core/v1 NodeAffinity)."""

    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the workers must run on."""
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        Field(default=None, max_length=MAX_POD_SMALL))
    """Nodes the scheduler prefers, by weight."""


class LabelSelectorRequirement(Model):
    """A key, an operator and values that a pod's label must satisfy."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations":
                                                 _requirement_rules("labelSelector")})

    key: str = Field(min_length=1, max_length=317)
    """The label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value is compared with values."""
    values: list[Annotated[str, Field(max_length=63)]] | None = Field(default=None,
                                                                      max_length=MAX_POD_MAP)
    """The values."""


class LabelSelector(Model):
    """Selects pods (or namespaces) by label (meta/v1 LabelSelector)."""

    match_labels: dict[str, str] | None = Field(default=None, max_length=MAX_POD_MAP)
    """Labels that must all be present with these values."""
    match_expressions: list[LabelSelectorRequirement] | None = Field(default=None,
                                                                     max_length=MAX_POD_SMALL)
    """Requirements that must all hold."""


class PodAffinityTerm(Model):
    """Pods to run near (or away from), within a topology domain."""

    label_selector: LabelSelector | None = None
    """The pods; e.g. this pool's own, by `conveyor.dev/task-type`."""
    namespaces: list[Annotated[str, Field(max_length=63)]] | None = Field(
        default=None, max_length=MAX_POD_SMALL)
    """Namespaces of those pods; default the Workflow's."""
    namespace_selector: LabelSelector | None = None
    """Namespaces of those pods, by label."""
    topology_key: str = Field(min_length=1, max_length=317)
    """The node label that defines a domain, e.g. `kubernetes.io/hostname`."""
    match_label_keys: list[Annotated[str, Field(max_length=317)]] | None = Field(
        default=None, max_length=MAX_POD_SMALL)
    """Label keys whose values, taken from the incoming pod, are added to labelSelector."""
    mismatch_label_keys: list[Annotated[str, Field(max_length=317)]] | None = Field(
        default=None, max_length=MAX_POD_SMALL)
    """Label keys whose values, taken from the incoming pod, must differ."""


class WeightedPodAffinityTerm(Model):
    """A pod affinity term the scheduler prefers, with its weight."""

    weight: int = Field(ge=1, le=100)
    """Weight of the preference, 1-100."""
    pod_affinity_term: PodAffinityTerm
    """The term."""


class PodAffinity(Model):
    """Pods to schedule the workers near, or (as podAntiAffinity) away from."""

    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = Field(
        default=None, max_length=MAX_POD_SMALL)
    """Terms that must hold."""
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        Field(default=None, max_length=MAX_POD_SMALL))
    """Terms the scheduler prefers, by weight."""


class Affinity(Model):
    """Scheduling constraints of the worker pods (core/v1 Affinity)."""

    node_affinity: NodeAffinity | None = None
    """Which nodes."""
    pod_affinity: PodAffinity | None = None
    """Near which pods."""
    pod_anti_affinity: PodAffinity | None = None
    """Away from which pods, e.g. one worker per node."""


class SeccompProfile(Model):
    """The seccomp filter of a container."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule("self.type == 'Localhost' ? has(self.localhostProfile)"
             " : !has(self.localhostProfile)",
             "seccompProfile: localhostProfile is given exactly for type Localhost",
             ".localhostProfile"),
    ]})

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    """RuntimeDefault (the operator's default), Localhost or Unconfined."""
    localhost_profile: str | None = Field(default=None, max_length=4096)
    """The profile's path on the node, for type Localhost."""


class AppArmorProfile(Model):
    """The AppArmor profile of a container."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule("self.type == 'Localhost' ? has(self.localhostProfile)"
             " : !has(self.localhostProfile)",
             "appArmorProfile: localhostProfile is given exactly for type Localhost",
             ".localhostProfile"),
    ]})

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]
    """RuntimeDefault, Localhost or Unconfined."""
    localhost_profile: str | None = Field(default=None, max_length=4096)
    """Name of a profile loaded on the node, for type Localhost."""


class SELinuxOptions(Model):
    """The SELinux context of a container."""

    user: str | None = Field(default=None, max_length=253)
    """SELinux user."""
    role: str | None = Field(default=None, max_length=253)
    """SELinux role."""
    type: str | None = Field(default=None, max_length=253)
    """SELinux type."""
    level: str | None = Field(default=None, max_length=253)
    """SELinux level, e.g. `s0:c123,c456`."""


class Sysctl(Model):
    """A namespaced kernel parameter of the pod."""

    name: str = Field(min_length=1, max_length=253)
    """The parameter, e.g. `net.ipv4.tcp_keepalive_time`."""
    value: str = Field(max_length=253)
    """Its value."""


class PodSecurityContext(Model):
    """Security settings of the whole worker pod (core/v1 PodSecurityContext)."""

    run_as_user: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """UID the containers run as; default the image's."""
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """GID the containers run as; default the image's."""
    run_as_non_root: bool | None = None
    """Refuse to start a container as root. The operator sets it true on the worker container
    unless it is set here or in containerSecurityContext."""
    fs_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """Group that owns the volumes' files, and a supplemental group of the containers."""
    fs_group_change_policy: Literal["Always", "OnRootMismatch"] | None = None
    """When the kubelet changes the volumes' ownership to fsGroup."""
    supplemental_groups: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None, max_length=MAX_POD_SMALL)
    """More groups of the containers' first process."""
    seccomp_profile: SeccompProfile | None = None
    """Seccomp filter of the containers; the operator sets RuntimeDefault on the worker
    container unless it is set here or in containerSecurityContext."""
    app_armor_profile: AppArmorProfile | None = None
    """AppArmor profile of the containers."""
    se_linux_options: SELinuxOptions | None = None
    """SELinux context of the containers."""
    sysctls: list[Sysctl] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """Namespaced kernel parameters."""


class Capabilities(Model):
    """Linux capabilities added to and dropped from the container's."""

    add: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None,
                                                                   max_length=MAX_POD_SMALL)
    """Capabilities added, e.g. `NET_BIND_SERVICE`."""
    drop: list[Annotated[str, Field(max_length=64)]] | None = Field(default=None,
                                                                    max_length=MAX_POD_SMALL)
    """Capabilities dropped; the operator's default is `[ALL]`."""


class SecurityContext(Model):
    """Security settings of the worker container, merged field by field over the operator's
    defaults (allowPrivilegeEscalation false, capabilities.drop [ALL], runAsNonRoot true,
    seccompProfile RuntimeDefault): a field set here wins, the others keep the default.
    `privileged` is not offered: a worker pool does not need the node."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule("!has(self.capabilities) || !has(self.capabilities.add)"
             " || !self.capabilities.add.exists(c, c == 'SYS_ADMIN' || c == 'CAP_SYS_ADMIN')"
             " || (has(self.allowPrivilegeEscalation) && self.allowPrivilegeEscalation)",
             "containerSecurityContext.capabilities: adding SYS_ADMIN needs "
             "allowPrivilegeEscalation: true (the operator's default is false)",
             ".capabilities"),
    ]})

    allow_privilege_escalation: bool | None = None
    """Whether a process may gain more privileges than its parent; default false."""
    capabilities: Capabilities | None = None
    """Capabilities added and dropped; each of add and drop given here replaces the
    operator's (drop [ALL], add none)."""
    run_as_non_root: bool | None = None
    """Refuse to start as root; default true. Set false for an image that runs as root."""
    run_as_user: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """UID to run as, e.g. for an image whose user is a name (runAsNonRoot cannot check
    one)."""
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    """GID to run as."""
    read_only_root_filesystem: bool | None = None
    """Mount the container's root filesystem read-only (the worker writes nowhere; give an
    emptyDir volume for tasks that need scratch space)."""
    seccomp_profile: SeccompProfile | None = None
    """Seccomp filter; default RuntimeDefault."""
    app_armor_profile: AppArmorProfile | None = None
    """AppArmor profile."""
    se_linux_options: SELinuxOptions | None = None
    """SELinux context."""


# Label keys and annotation keys of the pod the operator keeps, as CEL over a map's keys.
_OPERATOR_LABEL = _starts("k", (f"{names.GROUP}/",)) + "".join(
    f" || k == '{key}'" for key in RESERVED_LABELS)
_OPERATOR_ANNOTATION = _starts("k", (f"{names.GROUP}/",)) + f" || k == '{DELETION_COST}'"


class PodTemplate(Model):
    """What a worker pool's pods take beyond the image: an overlay on the pod the operator
    builds, which keeps its own env, CA mounts, labels and security defaults. Not offered:
    more containers (sidecars, init containers; the pool's readiness, drain and scale-down
    are the worker's), hostNetwork, hostPID, hostPath volumes, privileged containers."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [
        rule("!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes)"
             " && self.volumes.exists(v, v.name == m.name))",
             "podTemplate.volumeMounts: every name must name an entry of podTemplate.volumes",
             ".volumeMounts"),
        rule(f"!has(self.labels) || !self.labels.exists(k, {_OPERATOR_LABEL})",
             "podTemplate.labels: conveyor.dev/ keys and " + ", ".join(RESERVED_LABELS)
             + " are the operator's: it selects and counts the pool's pods by them",
             ".labels"),
        rule(f"!has(self.annotations) || !self.annotations.exists(k, {_OPERATOR_ANNOTATION})",
             f"podTemplate.annotations: conveyor.dev/ keys and {DELETION_COST} are the "
             "operator's (it marks busy pods with the latter)", ".annotations"),
    ]})

    service_account_name: SourceName | None = None
    """ServiceAccount the workers run as, in the Workflow's namespace; default `default`."""
    automount_service_account_token: bool | None = None
    """Mount the ServiceAccount's API token into the pod; default false (the SDK needs no
    API access). Set true for workers that call the API server."""
    image_pull_secrets: list[LocalObjectReference] | None = Field(default=None,
                                                                  max_length=MAX_POD_SMALL)
    """Secrets (type kubernetes.io/dockerconfigjson) to pull the image with."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When the kubelet pulls the image; default Always for `:latest`, else IfNotPresent."""
    volumes: list[Volume] | None = Field(default=None, max_length=MAX_POD_LIST,
                                         json_schema_extra=_keyed_by("name"))
    """Volumes of the pod, beside the operator's CA volumes; names unique."""
    volume_mounts: list[VolumeMount] | None = Field(default=None, max_length=MAX_POD_LIST,
                                                    json_schema_extra=_keyed_by("mountPath"))
    """Mounts of those volumes in the worker container; mountPaths unique."""
    env_from: list[EnvFromSource] | None = Field(default=None, max_length=MAX_POD_SMALL)
    """ConfigMaps and Secrets whose keys become variables of the worker container."""
    node_selector: dict[str, str] | None = Field(default=None, max_length=MAX_POD_MAP)
    """Node labels the workers' nodes must have."""
    tolerations: list[Toleration] | None = Field(default=None, max_length=MAX_POD_LIST)
    """Taints the workers tolerate."""
    affinity: Affinity | None = None
    """Node and pod affinity of the workers."""
    priority_class_name: SourceName | None = None
    """PriorityClass of the workers' pods."""
    security_context: PodSecurityContext | None = None
    """Security settings of the pod."""
    container_security_context: SecurityContext | None = None
    """Security settings of the worker container, merged over the operator's defaults."""
    termination_grace_period_seconds: int | None = Field(default=None, ge=1,
                                                         le=MAX_GRACE_SECONDS)
    """Seconds a stopping worker gets before SIGKILL (it drains within this less 5 seconds:
    tasks still running then are requeued); default the longest timeoutSeconds of the type's
    tasks plus 10, or 60 when none has one."""
    labels: dict[str, str] | None = Field(default=None, max_length=MAX_POD_MAP)
    """Labels of the pods (not of the Deployment); the operator's keys cannot be set."""
    annotations: dict[str, str] | None = Field(default=None, max_length=MAX_POD_MAP)
    """Annotations of the pods, e.g. for a service mesh or a log shipper."""


# --- Workflow ----------------------------------------------------------------------------


class Scaling(Model):
    """How the operator scales the task type's Deployment with the work waiting."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [
            rule("self.minReplicas <= self.maxReplicas",
                 "scaling.minReplicas must not exceed scaling.maxReplicas", ".minReplicas"),
        ]}
    )

    min_replicas: int = Field(default=0, ge=0, le=1000)
    """Replicas kept when there is no work; 0 lets the pool scale to zero."""
    max_replicas: int = Field(default=5, ge=1, le=1000)
    """Most replicas the pool scales to."""
    backlog_per_replica: int = Field(default=10, ge=1)
    """Waiting plus in-flight tasks one replica is expected to absorb."""
    idle_seconds_before_scale_down: int = Field(default=60, ge=0, le=MAX_SECONDS)
    """Seconds without work before replicas are removed."""


class TaskType(Model):
    """A worker pool: one RabbitMQ queue and one Deployment that consumes it."""

    name: Name
    """Name of the task type, a DNS-1123 label unique in the Workflow; tasks refer to it."""
    image: str = Field(min_length=1, max_length=512)
    """Container image of the workers."""
    command: list[str] | None = None
    """Entrypoint of the container, as in a pod; default the image's."""
    args: list[str] = Field(default_factory=list)
    """Arguments to the entrypoint, as in a pod."""
    env: list[EnvVar] = Field(default_factory=list)
    """Environment variables of the worker container (valueFrom allowed)."""
    resources: ResourceRequirements | None = None
    """Compute resources of the worker container."""
    concurrency: int = Field(default=1, ge=1, le=1000)
    """Tasks in flight per replica (the AMQP prefetch)."""
    scaling: Scaling = Field(default_factory=Scaling)
    """Autoscaling of the worker Deployment."""
    delivery_limit: int = Field(default=5, ge=0, le=1000)
    """Redeliveries after worker crashes before a task message is dead-lettered."""
    pod_template: PodTemplate | None = None
    """What the worker pods take beyond the image: ServiceAccount, volumes, scheduling,
    security settings, labels and annotations; an overlay on the pod the operator builds."""


RetryPolicy = Literal["Always", "OnFailure", "OnTimeout", "Never"]


class Retry(Model):
    """When and how often a failed attempt is retried."""

    limit: int = Field(default=0, ge=0, le=100)
    """Retries after the first attempt; 0 means a failure is final."""
    policy: RetryPolicy = "Always"
    """Which failures are retried: Always (any: the task raised, timed out or lost its
    worker), OnFailure (raised or lost its worker, not timed out), OnTimeout (timed out only)
    or Never. A failure the worker marks non-retryable (`NonRetryable`, `@task`'s
    `non_retryable` or `retry_on`) is never retried."""
    backoff_seconds: float = Field(default=1, ge=0, le=MAX_SECONDS)
    """Delay before the first retry."""
    backoff_factor: float = Field(default=2, ge=1)
    """Each further retry waits this many times longer than the previous one."""
    max_backoff_seconds: float = Field(default=60, ge=0, le=MAX_SECONDS)
    """Cap of the delay between attempts."""


class Task(Model):
    """One step of the DAG, executed by a worker of its task type."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [
            rule("!has(self.dependsOn) || !(self.name in self.dependsOn)",
                 "dependsOn: a task must not depend on itself", ".dependsOn"),
            rule("!has(self.maxParallel) || has(self.forEach)",
                 "maxParallel: only a forEach task takes maxParallel", ".maxParallel"),
        ]}
    )

    name: Name
    """Name of the task, a DNS-1123 label unique among tasks and finally tasks."""
    type: Name
    """The task type (an entry of spec.taskTypes) whose workers execute it."""
    depends_on: list[Name] = Field(
        default_factory=list,
        max_length=MAX_DEPENDS_ON,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    """Tasks that must end Succeeded or Skipped before this one is ready."""
    inputs: JsonObject = Field(default_factory=dict)
    """Inputs given to the worker: any JSON; strings may embed `${{ CEL }}`."""
    when: Expression | None = None
    """`${{ CEL }}` evaluated when the task is ready; false skips the task."""
    for_each: Expression | None = None
    """`${{ CEL }}` yielding a list: one instance per item, which sees `item` and `index`."""
    max_parallel: int | None = Field(default=None, ge=1)
    """Most forEach items in flight at once; default all."""
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    """Limit of one attempt, counted from its start; a timed-out attempt fails (retryable)."""
    retry: Retry = Field(default_factory=Retry)
    """Retry policy of failed attempts."""


# A Kafka topic name as the broker takes it: letters, digits, `.`, `_`, `-`, at most 249.
KAFKA_TOPIC = r"^[a-zA-Z0-9._-]+$"


class KafkaTrigger(Model):
    """A Kafka topic whose records start runs; CEL sees each record as `record`: `topic`,
    `partition`, `offset`, `key` (text, empty when the record has none), `headers` (a map of
    text), `value` (the JSON value; null for a record without one) and `timestamp`
    (milliseconds since the epoch)."""

    topic: str = Field(min_length=1, max_length=249, pattern=KAFKA_TOPIC)
    """The topic to consume (one name, not a pattern), in the operator's consumer group."""
    filter: Expression | None = None
    """A `${{ CEL }}` expression on `record`; a record for which it is not true starts no
    run. Default: every record starts one."""
    key: Expression | None = None
    """A `${{ CEL }}` expression on `record` whose text names the run: records with the same
    key start one run between them. Default: the record's topic, partition and offset."""


class Trigger(Model):
    """Starts a run when a matching event is published on the conveyor.events exchange, or a
    record arrives on a Kafka topic."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [
            rule("has(self.event) != has(self.kafka)",
                 "spec.triggers: each trigger names exactly one source, event (RabbitMQ) or "
                 "kafka"),
        ]}
    )

    event: str | None = Field(default=None, min_length=1, max_length=255)
    """AMQP topic pattern matched against the event's routing key (`*` a word, `#` any)."""
    kafka: KafkaTrigger | None = None
    """A Kafka topic instead of an event pattern (with the `kafka` settings of the operator)."""
    inputs: JsonObject = Field(default_factory=dict)
    """Inputs of the run; strings may embed `${{ CEL }}` that sees the event body as `event`
    (a RabbitMQ trigger) or the record as `record` (a Kafka trigger)."""

    @model_validator(mode="after")
    def _one_source(self) -> "Trigger":
        if (self.event is None) == (self.kafka is None):
            raise ValueError("each trigger names exactly one source, event (RabbitMQ) or kafka")
        return self

# Five cron fields of the characters cron takes (`cronsim` checks the rest: `conveyor lint`
# and the Workflow's Ready condition); a whole line is at most 255 characters.
CRON_FIELDS = r"^\\s*[0-9A-Za-z*?,/#-]+(\\s+[0-9A-Za-z*?,/#-]+){4}\\s*$"
# An IANA zone name's shape (`Asia/Kolkata`, `UTC`, `America/Argentina/Buenos_Aires`,
# `Etc/GMT+5`); whether the zone exists is checked by the operator and `conveyor lint`.
TIME_ZONE = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"


class Schedule(Model):
    """Starts a run at every due time of a cron expression in a time zone, as a CronJob
    starts a Job; each due time starts at most one run, named from the Workflow, the
    schedule and the due time."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [
            rule(f"self.cron.matches('{CRON_FIELDS}')",
                 "spec.schedules[].cron: must be five cron fields (minute hour day-of-month "
                 "month day-of-week)", ".cron"),
            rule(f"!has(self.timeZone) || self.timeZone.matches('{TIME_ZONE}')",
                 "spec.schedules[].timeZone: must be an IANA time zone name such as "
                 "Europe/Berlin", ".timeZone"),
        ]}
    )

    name: Annotated[str, Field(min_length=1, max_length=30, pattern=DNS_LABEL)]
    """Name of the schedule, a DNS-1123 label of at most 30 characters unique in the
    Workflow; its runs are named `<workflow>-<name>-<due time as UTC yyyymmddhhmm>`."""
    cron: str = Field(min_length=1, max_length=255)
    """Five-field cron expression (minute hour day-of-month month day-of-week) as Debian's
    cron reads it: names (`MON`, `JAN`), ranges, steps, lists, `L`, `W`, `#`."""
    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    """IANA time zone the expression is read in. Across a DST change, due times follow
    Debian's cron: a time that does not exist that day (skipped by the clock) falls due when
    the clock jumps past it; a time that happens twice starts one run if the expression fixes
    the hour, and one per occurrence if its hour field is a wildcard or a step."""
    inputs: JsonObject = Field(default_factory=dict)
    """Inputs of each run; strings may embed `${{ CEL }}` that sees `schedule.name` and
    `schedule.time` (the due time, RFC 3339 in UTC)."""
    concurrency_policy: Literal["Allow", "Forbid", "Replace"] = "Allow"
    """What a due time does while a run of this schedule is not finished: `Allow` starts
    another, `Forbid` skips the due time (recorded in status), `Replace` deletes the
    unfinished run and starts the new one. As a CronJob's."""
    starting_deadline_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    """How late a due time may still start its run (after an operator outage, say): every
    missed due time at most this old starts one, older ones are skipped and recorded.
    Default: only the latest missed due time starts, as a CronJob without a deadline."""
    successful_runs_history_limit: int = Field(default=3, ge=0, le=1000)
    """Succeeded runs of this schedule kept; older ones are deleted."""
    failed_runs_history_limit: int = Field(default=1, ge=0, le=1000)
    """Failed or cancelled runs of this schedule kept; older ones are deleted."""
    suspend: bool = False
    """True: due times start no run (and are not caught up on resume: a due time passed
    while suspended is skipped)."""


class WorkflowSpec(Model):
    """A DAG of tasks and the worker pools that execute them."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": SPEC_RULES})

    task_types: list[TaskType] = Field(min_length=1, max_length=MAX_TASK_TYPES)
    """Worker pools: one RabbitMQ queue and one Deployment each."""
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)
    """The tasks of the DAG."""
    finally_: list[Task] = Field(default_factory=list, max_length=MAX_FINALLY, alias="finally")
    """Tasks run after every task is terminal, whatever the outcome; may depend on each other."""
    outputs: JsonObject = Field(default_factory=dict)
    """Outputs of a succeeded run; strings may embed `${{ CEL }}`."""
    deadline_seconds: int | None = Field(default=None, ge=1, le=MAX_SECONDS)
    """Limit of the whole run; past it the run fails."""
    max_active_runs: int | None = Field(default=None, ge=1)
    """Most runs of this Workflow running at once; more wait in phase Pending."""
    triggers: list[Trigger] = Field(default_factory=list, max_length=MAX_TRIGGERS)
    """Events that start a run."""
    schedules: list[Schedule] = Field(default_factory=list, max_length=MAX_SCHEDULES,
                                      json_schema_extra=_keyed_by("name"))
    """Cron schedules that start runs."""
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    """Seconds after which a finished run is deleted; default never."""


class Condition(Model):
    """An observation of one aspect of the object, as in metav1.Condition."""

    type: str = Field(max_length=316)
    """Aspect observed, e.g. `Ready` or `Succeeded`."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """CamelCase reason of the last transition."""
    message: str = Field(default="", max_length=32768)
    """Human-readable detail."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: int | None = None
    """The object's generation this condition was computed from."""


class TaskTypeStatus(Model):
    """Observed state of one worker pool."""

    name: str
    """Name of the task type."""
    queue: str | None = None
    """The RabbitMQ queue of its tasks."""
    deployment: str | None = None
    """The worker Deployment."""
    replicas: int | None = None
    """Replicas wanted."""
    ready_replicas: int | None = None
    """Replicas ready."""
    backlog: int | None = None
    """Messages waiting in the queue."""
    in_flight: int | None = None
    """Tasks taken by workers and not yet finished."""
    dead_letters: int | None = None
    """Messages in the dead-letter queue."""
    reason: str | None = None
    """Why the pool's pods cannot run, as the kubelet or the scheduler says: `ErrImagePull`,
    `ImagePullBackOff`, `InvalidImageName`, `CrashLoopBackOff`,
    `CreateContainerConfigError` (a missing Secret or ConfigMap, say), `Unschedulable`...;
    unset while nothing keeps them from running."""
    message: str | None = None
    """What `reason` is about: how many of the pool's pods, the first one's name, its
    container and image, and the kubelet's or scheduler's message."""


class ScheduleSkip(Model):
    """A due time that started no run, and why."""

    schedule_time: datetime
    """The due time."""
    reason: Literal["Forbidden", "Suspended", "DeadlineExceeded", "Superseded",
                    "InputsFailed", "Refused", "NameTaken"]
    """`Forbidden`: a run of the schedule was not finished (concurrencyPolicy Forbid);
    `Suspended`: the schedule was suspended; `DeadlineExceeded`: the operator saw it later
    than startingDeadlineSeconds allows (or, without a deadline, a later one was due too);
    `Superseded`: Forbid or Replace started a later due time owed at the same moment;
    `InputsFailed`: the run's inputs did not render (the expression's error is the
    message); `Refused`: the API server refused to create the run for good (a 4xx other than
    a conflict: its answer is the message); `NameTaken`: a WorkflowRun of the due time's name
    exists that this schedule did not start (another Workflow's schedule whose names join to
    the same run name)."""
    message: str = Field(default="", max_length=1024)
    """Detail: the unfinished run, or the range of due times missed."""


class ScheduleStatus(Model):
    """What the operator did with one schedule: the cursor it resumes from after a
    restart."""

    name: str
    """Name of the schedule."""
    last_schedule_time: datetime | None = None
    """The latest due time that started a run (as a CronJob's)."""
    last_run: str | None = None
    """The run that due time started."""
    next_schedule_time: datetime | None = None
    """The next due time, recorded when the schedule is first seen: a due time that falls
    while no operator runs is still owed (within startingDeadlineSeconds)."""
    last_skipped: ScheduleSkip | None = None
    """The latest due time that started no run."""


class WorkflowStatus(Model):
    """Observed state of a Workflow."""

    observed_generation: int | None = None
    """The generation last reconciled."""
    conditions: list[Condition] = Field(default_factory=list)
    """`Ready`: the spec is valid and every worker pool is provisioned. `PoolsHealthy`:
    False while some pool's pods cannot run, with the first such pool's reason (see
    `taskTypes[].reason`)."""
    task_types: list[TaskTypeStatus] = Field(default_factory=list)
    """One entry per worker pool."""
    task_type_names: str | None = None
    """Names of the worker pools, comma-separated: the `kubectl get` column (a printer column
    shows only the first value of a list)."""
    active_runs: int | None = None
    """Runs of this Workflow in phase Running."""
    schedules: list[ScheduleStatus] = Field(default_factory=list)
    """One entry per schedule of spec.schedules, written by the operator's leader."""


class Workflow(Model):
    """A DAG of tasks and the worker pools that execute them."""

    spec: WorkflowSpec
    """Desired state."""
    status: WorkflowStatus | None = None
    """Observed state, written by the operator."""


# --- WorkflowRun -------------------------------------------------------------------------


class WorkflowRef(Model):
    """Names the Workflow a run executes, in the run's namespace."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [
            rule("self == oldSelf", "spec.workflowRef is immutable"),
        ]}
    )

    name: str = Field(min_length=1, max_length=253)
    """Name of the Workflow."""


class WorkflowRunSpec(Model):
    """One execution of a Workflow."""

    workflow_ref: WorkflowRef
    """The Workflow to run (immutable)."""
    inputs: JsonObject = Field(default_factory=dict)
    """Inputs of the run, seen by expressions as `inputs`."""
    cancel: bool = False
    """Set true to cancel the run."""
    reuse: dict[str, JsonValue] = Field(default_factory=dict, max_length=MAX_TASKS)
    """Outputs to reuse, by task name: each task named here (of spec.tasks, not finally) is
    Succeeded from the start with these outputs (a list of item outputs for a forEach task),
    reason Reused, and is not run. `conveyor retry` fills it from the tasks that succeeded in
    an earlier run; names that match no such task are ignored."""


class ItemStatus(Model):
    """A forEach item that needs more than its phase to be resumed: a retry or a timer."""

    index: int = Field(ge=0)
    """Position of the item in the forEach list."""
    attempt: int = Field(ge=1)
    """Its current attempt."""
    due_at: datetime | None = None
    """When its attempt times out (Running) or its next attempt starts (Retrying)."""


class ItemsStatus(Model):
    """Progress of a forEach task, summarised so it stays small for any number of items."""

    total: int = Field(ge=0)
    """Items in the forEach list."""
    succeeded: int = Field(ge=0)
    """Items succeeded."""
    failed: int = Field(ge=0)
    """Items failed."""
    running: int = Field(ge=0)
    """Items dispatched and not finished (queued, running or waiting to retry)."""
    states: str = ""
    """Phase of every item, run-length encoded in item order (`S98R2P10`: P pending,
    Q queued, R running, W retrying, S succeeded, F failed, C cancelled)."""
    active: list[ItemStatus] = Field(default_factory=list)
    """Items past their first attempt or with a timer; the others are on attempt 1."""


class FailedAttempt(Model):
    """One attempt that failed, and why: kept for the latest few of a task."""

    attempt: int = Field(ge=1)
    """Its attempt number, from 1 (of its item, for a forEach task)."""
    index: int | None = Field(default=None, ge=0)
    """The forEach item it ran, if any."""
    reason: str
    """Why it ended: Error (the task raised), NonRetryable (the worker marked the failure
    as final), Timeout (past timeoutSeconds), Lost (its workers were lost deliveryLimit
    times) or OutputTooLarge."""
    error_type: str | None = None
    """The class of the exception the task raised, e.g. `ConnectionError`."""
    message: str | None = None
    """The error, cut to its first 200 characters."""
    started_at: datetime | None = None
    """When its worker started it, if the operator saw that."""
    finished_at: datetime
    """When the operator learned it had failed."""
    retried: bool
    """Whether the retry policy gave it another attempt (false: it failed the task)."""


class TaskStatus(Model):
    """Progress of one task (or finally task) of the run."""

    name: str
    """Name of the task."""
    phase: TaskPhase
    """Pending, Queued, Running, Retrying, Succeeded, Failed, Skipped or Cancelled."""
    reason: str | None = None
    """Why the task ended as it did, e.g. UpstreamFailed, WhenFalse, OutputTooLarge, or
    the reason its last attempt failed (Error, NonRetryable, Timeout, Lost)."""
    attempts: int = Field(default=0, ge=0)
    """Attempts dispatched (for forEach tasks, over all items)."""
    started_at: datetime | None = None
    """When the first attempt was dispatched."""
    finished_at: datetime | None = None
    """When the task reached its final phase."""
    next_attempt_at: datetime | None = None
    """When the next attempt is dispatched (phase Retrying)."""
    timeout_at: datetime | None = None
    """When the running attempt times out."""
    worker: str | None = None
    """The worker that ran the latest attempt."""
    message: str | None = None
    """Human-readable detail, e.g. the last error."""
    outputs: JsonValue = None
    """Outputs of the task; for forEach tasks the list of item outputs in item order."""
    items: ItemsStatus | None = None
    """Item progress of a forEach task."""
    failed_attempts: list[FailedAttempt] = Field(default_factory=list)
    """The latest attempts that failed (of any item, for a forEach task), oldest first: at
    most 5, so the status stays small for any number of items."""


class WorkflowRunStatus(Model):
    """Observed state of a run, written by the operator; it rebuilds the run from it."""

    phase: RunPhase = "Pending"
    """Pending, Running, Succeeded, Failed or Cancelled."""
    observed_generation: int | None = None
    """The run's generation last acted on."""
    workflow_generation: int | None = None
    """The Workflow generation the run executes; later edits do not change it."""
    started_at: datetime | None = None
    """When the run left Pending."""
    finished_at: datetime | None = None
    """When the run reached its final phase."""
    progress: str | None = None
    """Terminal tasks / all tasks, e.g. `4/6`."""
    message: str | None = None
    """Why the run ended as it did, e.g. the failure that failed it."""
    conditions: list[Condition] = Field(default_factory=list)
    """`Succeeded`: True, False or Unknown, so `kubectl wait --for=condition=Succeeded` works."""
    tasks: list[TaskStatus] = Field(default_factory=list)
    """Progress of each task, in declaration order (tasks, then finally tasks)."""
    outputs: JsonObject | None = None
    """Outputs of a succeeded run, from spec.outputs of the Workflow."""


class WorkflowRun(Model):
    """One execution of a Workflow with its inputs."""

    spec: WorkflowRunSpec
    """Desired state."""
    status: WorkflowRunStatus | None = None
    """Observed state, written by the operator."""


# --- Message bodies (DESIGN.md §3), versioned JSON ---------------------------------------


class MessageBody(Model):
    """Base of the message bodies: a tolerant reader. A field added within a version (as
    `replyTo` was) is ignored by a reader that predates it, instead of dead-lettering every
    message of a newer sender; a field missing or of the wrong type is still an error."""

    model_config = ConfigDict(extra="ignore")


class TaskMessage(MessageBody):
    """Body of a task on the conveyor.tasks exchange: one attempt for one worker."""

    v: Literal[1] = 1
    """Version of this body."""
    attempt_id: str
    """`<run-uid>/<task>[<index>]/<attempt>`: the idempotency key of the attempt."""
    namespace: str
    """Namespace of the run."""
    workflow: str
    """Name of the Workflow."""
    run: str
    """Name of the WorkflowRun."""
    run_uid: str
    """UID of the WorkflowRun."""
    task: str
    """Name of the task."""
    index: int | None = None
    """Index of the forEach item, if any."""
    attempt: int = Field(ge=1)
    """Attempt number, from 1."""
    task_type: str
    """Task type whose workers consume the message."""
    inputs: JsonObject = Field(default_factory=dict)
    """Rendered inputs of the task."""
    timeout_seconds: int | None = None
    """Limit of the attempt, if any."""
    reply_to: str | None = None
    """The install that dispatched the attempt: the worker publishes the attempt's events as
    `task.<status>.<replyTo>`, which only that install's events queue binds."""


class TaskEvent(MessageBody):
    """Body of a worker's event on conveyor.events, routing key `task.<status>`."""

    v: Literal[1] = 1
    """Version of this body."""
    status: Literal["started", "heartbeat", "succeeded", "failed"]
    """What happened to the attempt."""
    attempt_id: str
    """The attempt the event is about."""
    worker: str | None = None
    """The worker (pod name) that sent it."""
    at: datetime | None = None
    """When the worker observed it."""
    outputs: JsonObject | None = None
    """Outputs of a succeeded attempt."""
    error: str | None = None
    """Error of a failed attempt."""
    retryable: bool = True
    """Whether a failed attempt may be retried under the task's retry policy."""
    reason: str | None = None
    """Why a failed attempt ended as the worker saw it: Error, NonRetryable or Lost (its
    workers were lost deliveryLimit times); absent from older workers (then `retryable`
    says Error or NonRetryable)."""
    error_type: str | None = None
    """The class of the exception that failed the attempt, e.g. `ConnectionError`."""
    started_at: datetime | None = None
    """When the worker began the attempt (failed events)."""


class RunEvent(MessageBody):
    """Body of the operator's event on conveyor.events, routing key `run.<phase>`."""

    v: Literal[1] = 1
    """Version of this body."""
    phase: RunPhase
    """Phase the run entered."""
    namespace: str
    """Namespace of the run."""
    run: str
    """Name of the WorkflowRun."""
    run_uid: str
    """UID of the WorkflowRun."""
    workflow: str
    """Name of the Workflow."""
    message: str | None = None
    """Why the run ended as it did."""
    outputs: JsonObject | None = None
    """Outputs of a succeeded run."""

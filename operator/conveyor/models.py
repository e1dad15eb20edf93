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
MAX_EXPRESSION = 4096
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


class Retry(Model):
    """When and how often a failed attempt is retried."""

    limit: int = Field(default=0, ge=0, le=100)
    """Retries after the first attempt; 0 means a failure is final."""
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


class TaskStatus(Model):
    """Progress of one task (or finally task) of the run."""

    name: str
    """Name of the task."""
    phase: TaskPhase
    """Pending, Queued, Running, Retrying, Succeeded, Failed, Skipped or Cancelled."""
    reason: str | None = None
    """Why the task ended as it did, e.g. UpstreamFailed, WhenFalse, OutputTooLarge."""
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

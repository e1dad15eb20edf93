"""Names that appear on the wire or in the cluster: one place, so nothing drifts.

Everything here is part of the contract (DESIGN.md §2-§3); renaming one is an API change.
"""

from typing import Final

GROUP: Final = "conveyor.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "conveyor"

WORKFLOW_KIND: Final = "Workflow"
WORKFLOW_PLURAL: Final = "workflows"
WORKFLOW_SINGULAR: Final = "workflow"
WORKFLOW_SHORT: Final = "cwf"

RUN_KIND: Final = "WorkflowRun"
RUN_PLURAL: Final = "workflowruns"
RUN_SINGULAR: Final = "workflowrun"
RUN_SHORT: Final = "cwr"

# kopf's finalizer and progress annotations live under our group, not kopf.zalando.org.
FINALIZER: Final = f"{GROUP}/finalizer"
ANNOTATIONS_PREFIX: Final = GROUP
FIELD_MANAGER: Final = "conveyor-operator"

LABEL_WORKFLOW: Final = f"{GROUP}/workflow"
LABEL_TASK_TYPE: Final = f"{GROUP}/task-type"
LABEL_RUN: Final = f"{GROUP}/run"
LABEL_SCHEDULE: Final = f"{GROUP}/schedule"  # a scheduled run's schedule
ANNOTATION_SCHEDULE_TIME: Final = f"{GROUP}/schedule-time"  # its due time, RFC 3339 UTC
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"

TASKS_EXCHANGE: Final = "conveyor.tasks"
EVENTS_EXCHANGE: Final = "conveyor.events"
DEAD_LETTER_SUFFIX: Final = ".dead"
LEGACY_TASK_EVENTS_PATTERN: Final = "task.*"
"""What an events queue bound before events were routed per install: every worker event of
every install. The operator removes this binding from its queue when it starts."""


def operator_queue(instance: str, purpose: str) -> str:
    """A queue of one operator install on conveyor.events, `conveyor.operator.<instance>.<purpose>`
    with purpose `events` (its own workers' events, `task.*.<instance>`) or `triggers` (bound
    with its Workflows' trigger patterns: the topic exchange copies a trigger event to every
    install whose Workflows ask for it)."""
    return f"conveyor.operator.{instance}.{purpose}"


def task_events_pattern(instance: str) -> str:
    """What an install's events queue binds: the events of the attempts it dispatched, and
    nobody else's (an install that is gone must not keep collecting copies of them)."""
    return f"task.*.{instance}"

# Version of the JSON message bodies (DESIGN.md §3); bumped only on incompatible change.
MESSAGE_VERSION: Final = 1


def queue_name(namespace: str, workflow: str, task_type: str) -> str:
    """The quorum queue of one task type: `conveyor.<namespace>.<workflow>.<taskType>`."""
    return f"conveyor.{namespace}.{workflow}.{task_type}"


def dead_letter_queue(queue: str) -> str:
    """Where a task type's queue dead-letters messages past their delivery limit."""
    return queue + DEAD_LETTER_SUFFIX


def task_routing_key(status: str, reply_to: str | None = None) -> str:
    """Routing key of a worker event on `conveyor.events`: `task.<status>.<reply_to>`, the
    `reply_to` of the attempt's message naming the install that dispatched it; `task.<status>`
    for a message of an operator older than that."""
    return f"task.{status}" if reply_to is None else f"task.{status}.{reply_to}"


def run_routing_key(phase: str) -> str:
    """Routing key of the operator's own run event: `run.<phase>` (lower case)."""
    return f"run.{phase.lower()}"


def attempt_id(run_uid: str, task: str, index: int | None, attempt: int) -> str:
    """The deterministic id of one task attempt, the workers' idempotency key.

    `<run-uid>/<task>/<attempt>` for a plain task, `<run-uid>/<task>[<index>]/<attempt>` for
    one item of a forEach task. Recomputing it after a crash yields the same id, which is
    what lets a re-dispatched attempt be recognised as a duplicate.
    """
    where = task if index is None else f"{task}[{index}]"
    return f"{run_uid}/{where}/{attempt}"


def parse_attempt_id(value: str) -> tuple[str, str, int | None, int] | None:
    """(run uid, task, index, attempt) of an attempt id, or None if it is not one."""
    parts = value.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    uid, where, attempt = parts
    index: int | None = None
    if where[-1:] == "]":
        where, _, number = where[:-1].partition("[")
        if not number.isdigit():
            return None
        index = int(number)
    return uid, where, index, int(attempt)

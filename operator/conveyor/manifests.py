"""Pure builders of what Conveyor hands to others: WorkflowRun manifests and task messages.

One place for both, so every way a run starts (the CLI's `submit` and `retry`, triggers, and
soon schedules and sub-workflows) makes the same object, and every dispatch the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from conveyor import names
from conveyor.children import child_name
from conveyor.engine import Publish
from conveyor.models import TaskMessage
from conveyor.schedules import time_text


def run_manifest(workflow: str, inputs: Mapping[str, Any], *, name: str | None = None,
                 generate_name: str | None = None, reuse: Mapping[str, Any] | None = None,
                 labels: Mapping[str, str] | None = None,
                 annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A WorkflowRun of `workflow`; without a name, the API server makes one from
    `generate_name` (default the Workflow's name and a dash)."""
    metadata: dict[str, Any] = (
        {"name": name} if name else {"generateName": generate_name or f"{workflow}-"}
    )
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec: dict[str, Any] = {"workflowRef": {"name": workflow}, "inputs": dict(inputs)}
    if reuse:
        spec["reuse"] = dict(reuse)
    return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND, "metadata": metadata,
            "spec": spec}


def scheduled_run_name(workflow: str, schedule: str, due: datetime) -> str:
    """The one run a schedule's due time starts: `<workflow>-<schedule>-<UTC yyyymmddhhmm>`
    (DESIGN.md §7), shortened with a hash past the name budget. Its being deterministic is
    what keeps a restarted or second operator from starting a due time twice."""
    return child_name(workflow, schedule, due.astimezone(UTC).strftime("%Y%m%d%H%M"))


def scheduled_run(workflow: str, schedule: str, due: datetime,
                  inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The run of `schedule`'s due time `due`, labelled with its schedule and annotated with
    the due time (which the schedule's history and Forbid read back)."""
    return run_manifest(
        workflow, inputs, name=scheduled_run_name(workflow, schedule, due),
        labels={names.LABEL_WORKFLOW: workflow, names.LABEL_SCHEDULE: schedule},
        annotations={names.ANNOTATION_SCHEDULE_TIME: time_text(due)})


def task_message(publish: Publish, *, namespace: str, workflow: str, run: str,
                 run_uid: str, reply_to: str | None = None) -> TaskMessage:
    """The message that carries one attempt the engine decided to publish to its worker;
    `reply_to` names the dispatching install (its events are routed to it alone)."""
    return TaskMessage(
        attempt_id=publish.attempt_id, namespace=namespace, workflow=workflow, run=run,
        run_uid=run_uid, task=publish.task, index=publish.index, attempt=publish.attempt,
        task_type=publish.task_type, inputs=publish.inputs or {},
        timeout_seconds=publish.timeout_seconds, reply_to=reply_to,
    )

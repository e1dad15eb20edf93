"""Pure builders of what Conveyor hands to others: WorkflowRun manifests and task messages.

One place for both, so every way a run starts (the CLI's `submit` and `retry`, triggers, and
soon schedules and sub-workflows) makes the same object, and every dispatch the same message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor import names
from conveyor.engine import Publish
from conveyor.models import TaskMessage


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

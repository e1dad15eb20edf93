"""Workflow and WorkflowRun manifests for e2e tests, on the e2e worker module (`work` tasks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conveyor import names

WORKERS = Path(__file__).resolve().parents[1] / "e2e" / "workers"


def work_type(name: str = "work", *, log: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A task type whose workers run tests/e2e/workers/e2e_tasks.py (types `work`, `other`)."""
    env = [{"name": "PYTHONPATH", "value": str(WORKERS)}]
    if log is not None:
        env.append({"name": "E2E_EXECUTION_LOG", "value": str(log)})
    scaling = {"minReplicas": 0, "maxReplicas": 2, "idleSecondsBeforeScaleDown": 5}
    scaling.update(extra.pop("scaling", {}))
    return {"name": name, "image": "conveyor-e2e:dev",
            "command": ["conveyor-worker", "--module", "e2e_tasks"], "env": env,
            "concurrency": 4, "scaling": scaling, **extra}


def workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    spec.setdefault("taskTypes", [work_type()])
    return {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
            "metadata": {"name": name}, "spec": {"tasks": tasks, **spec}}


def run(name: str, workflow_name: str, **inputs: Any) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND, "metadata": {"name": name},
            "spec": {"workflowRef": {"name": workflow_name}, "inputs": inputs}}


def as_json(*manifests: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})

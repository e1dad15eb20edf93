"""The Argo CD health checks (docs/argocd/*.lua), run by Debian's Lua on sample objects."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "argocd"


def _lua(value: Any) -> str:
    """A Python JSON value as a Lua table constructor."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    lua = shutil.which("lua5.4")
    if lua is None:
        pytest.fail("lua5.4 is missing: run hack/install-deps.sh (apt-get install lua5.4)")
    program = (f"obj = {_lua(obj)}\n"
               f"local hs = assert(loadfile({json.dumps(str(DOCS / script))}))()\n"
               "io.write(hs.status, '\\t', hs.message or '')\n")
    out = subprocess.run([lua, "-"], input=program, capture_output=True, text=True, check=True)
    status, _, message = out.stdout.partition("\t")
    return status, message


def _workflow(generation: int = 1, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "conveyor.dev/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "w", "generation": generation}, "spec": {},
            **({"status": status} if status else {})}


def _ready(status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": "Ready", "status": status, "reason": reason, "message": message}


@pytest.mark.parametrize(("obj", "expected"), [
    (_workflow(), "Progressing"),
    (_workflow(observedGeneration=1, conditions=[_ready("True", "Provisioned")]), "Healthy"),
    (_workflow(observedGeneration=1,
               conditions=[_ready("False", "InvalidSpec", "spec.tasks[1].dependsOn: cycle")]),
     "Degraded"),
    (_workflow(observedGeneration=1, conditions=[_ready("False", "ActiveRuns")]), "Progressing"),
    (_workflow(generation=2, observedGeneration=1, conditions=[_ready("True", "Provisioned")]),
     "Progressing"),
])
def test_workflow_health(obj: dict[str, Any], expected: str) -> None:
    assert health("workflow.lua", obj)[0] == expected


def test_workflow_health_carries_the_message() -> None:
    obj = _workflow(observedGeneration=1,
                    conditions=[_ready("False", "InvalidSpec", "spec.tasks[1].dependsOn: cycle")])
    assert health("workflow.lua", obj) == ("Degraded", "spec.tasks[1].dependsOn: cycle")


def _run(phase: str | None, cancel: bool = False, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "conveyor.dev/v1alpha1", "kind": "WorkflowRun",
                           "metadata": {"name": "r"},
                           "spec": {"workflowRef": {"name": "w"}, "cancel": cancel}}
    if phase is not None:
        obj["status"] = {"phase": phase, **status}
    return obj


@pytest.mark.parametrize(("obj", "expected"), [
    (_run(None), "Progressing"),
    (_run("Pending"), "Progressing"),
    (_run("Running", progress="3/7"), "Progressing"),
    (_run("Succeeded", progress="7/7"), "Healthy"),
    (_run("Failed", message="task charge failed after 4 attempts"), "Degraded"),
    (_run("Cancelled", cancel=True), "Suspended"),
    (_run("Cancelled", message="deadline exceeded"), "Degraded"),
    (_run("Sideways"), "Unknown"),
])
def test_workflowrun_health(obj: dict[str, Any], expected: str) -> None:
    assert health("workflowrun.lua", obj)[0] == expected


def test_workflowrun_health_message_has_progress_and_reason() -> None:
    obj = _run("Failed", progress="4/7", message="task charge failed after 4 attempts")
    assert health("workflowrun.lua", obj) == (
        "Degraded", "Failed 4/7: task charge failed after 4 attempts")

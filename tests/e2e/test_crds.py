"""The generated CRDs on the real API server: admission rejects what it can with a message that
names the field, `kubectl explain` prints the descriptions, `kubectl get` the columns."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from support.workflows import as_json, work_type, workflow

pytestmark = pytest.mark.e2e


def _apply(cluster, namespace: str, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(["kubectl", "-n", namespace, "apply", "-f", "-"],
                          input=as_json(manifest), env=cluster.env(), capture_output=True,
                          text=True, check=False)


def _task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "work", **extra}


@pytest.mark.parametrize(("case", "tasks", "extra", "expected"), [
    ("duplicate task", [_task("a"), _task("a")], {},
     "spec.tasks: task names must be unique"),
    ("dangling dependsOn", [_task("a", dependsOn=["ghost"])], {},
     "spec.tasks: every dependsOn must name a task of spec.tasks"),
    ("self-dependency", [_task("a", dependsOn=["a"])], {},
     "dependsOn: a task must not depend on itself"),
    ("unknown task type", [{"name": "a", "type": "nope"}], {},
     "spec.tasks: every type must name an entry of spec.taskTypes"),
    ("duplicate task type", [_task("a")], {"taskTypes": [work_type(), work_type()]},
     "spec.taskTypes: task type names must be unique"),
    ("finally depends on a main task", [_task("a")],
     {"finally": [_task("f", dependsOn=["a"])]},
     "spec.finally: every dependsOn must name another finally task"),
    ("bad name", [_task("Not_A_Label")], {}, "spec.tasks[0].name"),
    ("a trigger of two sources", [_task("a")],
     {"triggers": [{"event": "order.created", "kafka": {"topic": "orders"}}]},
     "each trigger names exactly one source, event (RabbitMQ) or kafka"),
    ("a trigger of no source", [_task("a")], {"triggers": [{"inputs": {}}]},
     "each trigger names exactly one source, event (RabbitMQ) or kafka"),
    ("a bad Kafka topic", [_task("a")], {"triggers": [{"kafka": {"topic": "a topic"}}]},
     "spec.triggers[0].kafka.topic"),
])
def test_admission_rejects_what_it_can_naming_the_field(
    cluster, crds, namespace, case, tasks, extra, expected
):
    result = _apply(cluster, namespace, workflow(f"bad-{len(case)}", tasks, **extra))
    assert result.returncode != 0, f"{case} was admitted"
    assert expected in result.stderr, result.stderr


def test_a_valid_workflow_is_admitted_and_shows_its_columns(cluster, crds, namespace):
    wf = workflow("fine", [_task("a"), _task("b", dependsOn=["a"])])
    result = _apply(cluster, namespace, wf)
    assert result.returncode == 0, result.stderr
    run = {"apiVersion": "conveyor.dev/v1alpha1", "kind": "WorkflowRun",
           "metadata": {"name": "r"}, "spec": {"workflowRef": {"name": "fine"}}}
    assert _apply(cluster, namespace, run).returncode == 0
    out = subprocess.run(["kubectl", "-n", namespace, "get", "cwf,cwr"], env=cluster.env(),
                         capture_output=True, text=True, check=True).stdout
    headers = [line.split() for line in out.splitlines() if line.startswith("NAME")]
    assert headers[0][:5] == ["NAME", "READY", "TASK", "TYPES", "ACTIVE"]
    assert headers[1][:4] == ["NAME", "WORKFLOW", "PHASE", "PROGRESS"]
    assert "AGE" in headers[0] and "AGE" in headers[1]


def test_kubectl_explain_prints_the_field_descriptions(cluster, crds):
    out = subprocess.run(["kubectl", "explain", "cwf.spec.tasks"], env=cluster.env(),
                         capture_output=True, text=True, check=True).stdout
    assert "dependsOn" in out and "Tasks that must end Succeeded or Skipped" in out
    out = subprocess.run(["kubectl", "explain", "cwr.status.tasks.phase"], env=cluster.env(),
                         capture_output=True, text=True, check=True).stdout
    assert "DESCRIPTION" in out


def test_the_crds_are_structural_and_served(cluster, crds):
    out = subprocess.run(["kubectl", "get", "crd", "workflows.conveyor.dev", "-o", "json"],
                         env=cluster.env(), capture_output=True, text=True, check=True).stdout
    conditions = {c["type"]: c["status"] for c in json.loads(out)["status"]["conditions"]}
    assert conditions.get("Established") == "True"
    assert conditions.get("NonStructuralSchema") is None

"""WorkflowRuns through the operator: failure, cancel, the deadline, edits and deletion of the
Workflow, runs that come before their Workflow, invalid Workflows, and triggers."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pika
import pytest

from conveyor import names
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow

pytestmark = pytest.mark.e2e


def _get(kubectl, kind: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", kind, name, "-o", "json"))


def _phase(kubectl, name: str) -> str:  # type: ignore[no-untyped-def]
    return str(_get(kubectl, "cwr", name).get("status", {}).get("phase", ""))


def _wait_phase(kubectl, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    eventually(lambda: _phase(kubectl, name) in phases, timeout, interval=0.2,
               what=f"run {name} to reach {'/'.join(phases)}")
    return _get(kubectl, "cwr", name)["status"]  # type: ignore[no-any-return]


def _tasks(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in status.get("tasks", [])}


def test_a_task_that_always_fails_fails_the_run_skips_dependents_and_runs_finally(
    operator, kubectl
):
    wf = workflow("failing", [
        {"name": "flop", "type": "work", "inputs": {"fail": "always"},
         "retry": {"limit": 2, "backoffSeconds": 0.1}},
        {"name": "after", "type": "work", "dependsOn": ["flop"]},
        {"name": "later", "type": "work", "dependsOn": ["after"]},
        {"name": "independent", "type": "work", "inputs": {"echo": "fine"}},
    ], **{"finally": [{"name": "cleanup", "type": "work", "inputs": {"echo": "cleaned"}}]})
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "failing")))
    status = _wait_phase(kubectl, "r1", "Failed", "Succeeded")
    assert status["phase"] == "Failed"
    tasks = _tasks(status)
    assert tasks["flop"]["phase"] == "Failed" and tasks["flop"]["attempts"] == 3
    for dependent in ("after", "later"):
        assert tasks[dependent]["phase"] == "Skipped"
        assert tasks[dependent]["reason"] == "UpstreamFailed"
    assert tasks["independent"]["phase"] == "Succeeded"
    assert tasks["cleanup"]["phase"] == "Succeeded", "finally runs after a failure"
    assert "flop" in status["message"] and "failed on purpose" in status["message"]
    kubectl("wait", "--for=condition=Succeeded=False", "cwr/r1", "--timeout=10s")


def test_cancel_stops_a_running_run(operator, kubectl):
    wf = workflow("slow", [{"name": "long", "type": "work", "inputs": {"seconds": 60}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "slow")))
    eventually(lambda: _tasks(_get(kubectl, "cwr", "r1").get("status") or {})
               .get("long", {}).get("phase") == "Running", 60, what="the task to run")
    kubectl("patch", "cwr", "r1", "--type=merge", "-p", '{"spec":{"cancel":true}}')
    status = _wait_phase(kubectl, "r1", "Cancelled", timeout=30)
    assert _tasks(status)["long"]["phase"] == "Cancelled"


def test_the_deadline_fails_a_run_that_takes_too_long(operator, kubectl):
    wf = workflow("late", [{"name": "long", "type": "work", "inputs": {"seconds": 60}}],
                  deadlineSeconds=3)
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "late")))
    status = _wait_phase(kubectl, "r1", "Failed", "Succeeded", timeout=60)
    assert status["phase"] == "Failed"
    assert "deadline" in status["message"].lower()


def test_a_run_keeps_the_generation_it_started_with_when_the_workflow_is_edited(
    operator, kubectl
):
    def spec(echo: str) -> dict[str, Any]:
        return workflow("edited", [
            {"name": "first", "type": "work", "inputs": {"seconds": 4, "echo": echo}},
            {"name": "second", "type": "work", "dependsOn": ["first"],
             "inputs": {"echo": echo}},
        ], outputs={"echo": "${{ tasks.second.outputs.echo }}"})

    kubectl("apply", "-f", "-", stdin=as_json(spec("v1"), run("old", "edited")))
    eventually(lambda: _phase(kubectl, "old") == "Running", 60, what="the run to start")
    kubectl("apply", "-f", "-", stdin=as_json(spec("v2")))
    eventually(lambda: _get(kubectl, "cwf", "edited")["status"].get("observedGeneration") == 2,
               30, what="the edit to be reconciled")
    kubectl("apply", "-f", "-", stdin=as_json(run("new", "edited")))
    old = _wait_phase(kubectl, "old", "Succeeded", "Failed")
    new = _wait_phase(kubectl, "new", "Succeeded", "Failed")
    assert (old["outputs"]["echo"], old["workflowGeneration"]) == ("v1", 1)
    assert (new["outputs"]["echo"], new["workflowGeneration"]) == ("v2", 2)


def test_a_run_created_before_its_workflow_waits_then_runs(operator, kubectl):
    kubectl("apply", "-f", "-", stdin=as_json(run("early", "later-wf", value=7)))
    eventually(lambda: (_get(kubectl, "cwr", "early").get("status") or {}).get("conditions",
               [{}])[0].get("reason") == "WorkflowNotFound", 30,
               what="a condition saying the Workflow is missing")
    wf = workflow("later-wf", [{"name": "t", "type": "work",
                                "inputs": {"echo": "${{ inputs.value }}"}}],
                  outputs={"got": "${{ tasks.t.outputs.echo }}"})
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    status = _wait_phase(kubectl, "early", "Succeeded", "Failed")
    assert status["outputs"] == {"got": 7}


def test_an_invalid_workflow_reports_why_and_its_runs_wait(operator, kubectl):
    wf = workflow("cyclic", [
        {"name": "a", "type": "work", "dependsOn": ["c"]},
        {"name": "b", "type": "work", "dependsOn": ["a"]},
        {"name": "c", "type": "work", "dependsOn": ["b"]},
    ])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "cyclic")))

    def ready() -> dict[str, Any] | None:
        for c in (_get(kubectl, "cwf", "cyclic").get("status") or {}).get("conditions", []):
            if c["type"] == "Ready":
                return c  # type: ignore[no-any-return]
        return None

    condition = eventually(ready, 30, what="a Ready condition")
    assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
    assert "a -> c -> b -> a" in condition["message"] or "cycle" in condition["message"]
    eventually(lambda: "cyclic" in (_get(kubectl, "cwr", "r1").get("status") or {}).get(
        "message", ""), 30, what="the run to say what it waits for")
    assert not kubectl("get", "deploy", "-o", "name").strip(), "an invalid spec provisions nothing"


def test_a_workflow_deleted_with_active_runs_waits_for_them_then_removes_its_pools(
    operator, kubectl, amqp_url
):
    wf = workflow("doomed", [{"name": "t", "type": "work", "inputs": {"seconds": 5}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "doomed")))
    eventually(lambda: _phase(kubectl, "r1") == "Running", 60, what="the run to start")
    kubectl("delete", "cwf", "doomed", "--wait=false")

    def reason() -> str:
        conditions = (_get(kubectl, "cwf", "doomed").get("status") or {}).get("conditions", [])
        return next((c["reason"] for c in conditions if c["type"] == "Ready"), "")

    eventually(lambda: reason() == "ActiveRuns", 30, what="the Workflow to report active runs")
    assert _wait_phase(kubectl, "r1", "Succeeded", "Failed")["phase"] == "Succeeded"
    eventually(lambda: not kubectl("get", "cwf", "-o", "name").strip(), 60,
               what="the Workflow to be deleted")
    assert not kubectl("get", "deploy", "-o", "name").strip()
    namespace = _get(kubectl, "cwr", "r1")["metadata"]["namespace"]
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker):
            connection.channel().queue_declare(names.queue_name(namespace, "doomed", "work"),
                                               passive=True)
    finally:
        connection.close()


def test_an_event_delivered_twice_starts_one_run(operator, kubectl, amqp_url):
    # A routing key of this test's own: bindings outlive the test in the session's vhost.
    event = f"e2e-{uuid.uuid4().hex[:6]}.order.created"
    wf = workflow("triggered", [{"name": "t", "type": "work",
                                 "inputs": {"echo": "${{ inputs.order }}"}}],
                  triggers=[{"event": "*.order.created",
                             "inputs": {"order": "${{ event.id }}"}}])
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    eventually(lambda: "Trigger bindings synced patterns=['*.order.created']"
               in operator.tail(400), 30, what="the trigger to be bound")
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        message_id = f"evt-{uuid.uuid4().hex[:8]}"
        for _ in range(2):  # the same event, as a redelivering publisher would send it
            channel.basic_publish(names.EVENTS_EXCHANGE, event,
                                  json.dumps({"id": 42}).encode(),
                                  pika.BasicProperties(message_id=message_id, delivery_mode=2),
                                  mandatory=True)
    finally:
        connection.close()
    eventually(lambda: "Run exists for event" in operator.tail(400), 30,
               what="the second delivery to find the run of the first")
    runs = json.loads(kubectl("get", "cwr", "-o", "json"))["items"]
    assert len(runs) == 1
    name = runs[0]["metadata"]["name"]
    assert message_id in name
    status = _wait_phase(kubectl, name, "Succeeded", "Failed")
    assert _tasks(status)["t"]["outputs"]["echo"] == 42


def test_the_workflow_status_shows_its_pools(operator, kubectl):
    wf = workflow("pools", [{"name": "t", "type": "work"}],
                  taskTypes=[work_type(), work_type("other")])
    kubectl("apply", "-f", "-", stdin=as_json(wf))

    def figures() -> list[dict[str, Any]]:
        return (_get(kubectl, "cwf", "pools").get("status") or {}).get("taskTypes", [])

    entries = eventually(lambda: len(figures()) == 2 and figures(), 30,
                         what="per-pool figures")
    assert {e["name"] for e in entries} == {"work", "other"}
    for entry in entries:
        assert entry["queue"].endswith(f".pools.{entry['name']}")
        assert entry["deployment"] == f"pools-{entry['name']}"
        assert entry["backlog"] == 0 and entry["deadLetters"] == 0
    columns = kubectl("get", "cwf", "pools", "--no-headers").split()
    assert (columns[1] == "True" and columns[2] == "other,work") or columns[2] == "work,other"


def test_a_run_reuses_the_outputs_given_in_spec_reuse_and_runs_the_rest(operator, kubectl,
                                                                      tmp_path):
    log = tmp_path / "executions.jsonl"
    wf = workflow("reusing", [
        {"name": "expensive", "type": "work", "inputs": {"echo": "fresh"}},
        {"name": "after", "type": "work", "dependsOn": ["expensive"],
         "inputs": {"echo": "${{ tasks.expensive.outputs.echo }}"}},
    ], taskTypes=[work_type(log=log)], outputs={"got": "${{ tasks.after.outputs.echo }}"})
    second = run("second", "reusing")
    second["spec"]["reuse"] = {"expensive": {"echo": "from an earlier run"}}
    kubectl("apply", "-f", "-", stdin=as_json(wf, second))
    status = _wait_phase(kubectl, "second", "Succeeded", "Failed")
    tasks = _tasks(status)
    assert tasks["expensive"]["phase"] == "Succeeded"
    assert tasks["expensive"].get("reason") == "Reused"
    assert status["outputs"] == {"got": "from an earlier run"}
    executed = [json.loads(line)["attempt"] for line in log.read_text().splitlines()]
    assert executed and all("/after/" in attempt for attempt in executed), executed

"""The example order-fulfilment Workflow, applied with kubectl, runs to success through the
operator and autoscaled worker pods; `kubectl get cwr` shows it progressing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support.waiting import eventually

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_example_workflow_succeeds_with_the_right_outputs(operator, kubectl):
    kubectl("apply", "-f", str(EXAMPLES / "order-fulfilment.yaml"))
    eventually(lambda: "True" in kubectl("get", "cwf", "order-fulfilment", "-o",
                                         "jsonpath={.status.conditions[?(@.type=='Ready')].status}"),
               60, what="the Workflow to be Ready")
    kubectl("apply", "-f", str(EXAMPLES / "order-fulfilment-run.yaml"))

    seen: set[str] = set()

    def finished() -> bool:
        row = kubectl("get", "cwr", "order-42", "--no-headers").split()
        seen.add(" ".join(row[2:4]))  # phase and progress, as the printer columns show them
        return row[2] in ("Succeeded", "Failed")

    eventually(finished, 180, interval=0.2, what="the run to finish")
    kubectl("wait", "--for=condition=Succeeded", "cwr/order-42", "--timeout=10s")
    assert any(s.startswith("Running ") for s in seen), seen

    run = json.loads(kubectl("get", "cwr", "order-42", "-o", "json"))
    status = run["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["progress"] == "7/7"
    assert status["outputs"]["reserved"] == 20
    assert status["outputs"]["chargeAttempts"] == 3
    assert status["outputs"]["receipt"].startswith("r-")
    tasks = {t["name"]: t for t in status["tasks"]}
    assert tasks["reserve"]["items"]["succeeded"] == 20
    assert [o["reserved"] for o in tasks["reserve"]["outputs"]] == [f"sku-{i:02d}"
                                                                   for i in range(20)]
    assert tasks["charge"]["attempts"] == 3, "the flaky payment succeeds on its third attempt"
    assert tasks["gift-wrap"]["phase"] == "Skipped"
    assert tasks["audit"]["phase"] == "Succeeded", "finally tasks run"
    assert tasks["release"]["phase"] == "Skipped", "release runs only when the run failed"
    def events() -> list[str]:
        return kubectl("get", "events", "--field-selector",
                       "involvedObject.kind=WorkflowRun,involvedObject.name=order-42", "-o",
                       "jsonpath={.items[*].reason}").split()

    # Events are held a second (a newer one about the same subject replaces them) and
    # posted off the run path: the run's end comes soon after the status says it.
    posted = eventually(lambda: (e := events()) and "RunSucceeded" in e and e, 30,
                        what="the run's Succeeded Event")
    assert "TaskRetrying" in posted, "the flaky payment's retries are Events (Warnings)"
    assert not [e for e in posted if e in ("TaskSucceeded", "TaskQueued", "TaskRunning")
                or "Heartbeat" in e], f"a task's ordinary phases are not Events: {posted}"


def test_kubectl_explain_shows_the_api_docs(cluster, crds):
    out = subprocess.run(["kubectl", "explain", "cwf.spec.tasks.forEach"], env=cluster.env(),
                         capture_output=True, text=True, check=True).stdout
    assert "one instance per item" in out

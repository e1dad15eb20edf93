"""Retries users expect, through the operator and real workers: any exception is retried under
the task's `retry`, unless the worker marks it final (`NonRetryable`, `@task(retry_on=...)`) or
`retry.policy` excludes it; each failed attempt is recorded in the status with its reason."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow

pytestmark = pytest.mark.e2e

RETRY = {"limit": 2, "backoffSeconds": 0.2}


def _status(kubectl, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", "cwr", name, "-o", "json")).get("status") or {}  # type: ignore[no-any-return]


def _executions(log: Path) -> Counter[str]:
    """How many times each task's function ran, from the workers' execution log."""
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["attempt"].split("/")[1] for line in lines)


def test_any_failure_is_retried_unless_marked_final_or_excluded_by_the_policy(
        operator, kubectl, cluster, namespace, tmp_path):  # type: ignore[no-untyped-def]
    log = tmp_path / "executions.jsonl"
    wf = workflow("retries", [
        {"name": "refused", "type": "work", "inputs": {"raise": "ConnectionError"},
         "retry": RETRY},
        {"name": "final", "type": "work", "inputs": {"raise": "NonRetryable"}, "retry": RETRY},
        {"name": "excluded", "type": "picky", "inputs": {"raise": "ConnectionError"},
         "retry": RETRY},
        {"name": "never", "type": "work", "inputs": {"raise": "ConnectionError"},
         "retry": {**RETRY, "policy": "Never"}},
        {"name": "slow", "type": "work", "inputs": {"seconds": 5}, "timeoutSeconds": 1,
         "retry": {**RETRY, "policy": "OnFailure"}},
        {"name": "flaky", "type": "work", "inputs": {"fail": 1, "echo": "done"},
         "retry": RETRY},
    ], taskTypes=[work_type(log=log), work_type("picky", log=log)])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "retries")))
    status = eventually(lambda: (s := _status(kubectl, "r1")).get("phase") in (
        "Succeeded", "Failed") and s, 180, interval=0.5, what="run r1 to end")
    assert status["phase"] == "Failed"
    tasks = {t["name"]: t for t in status["tasks"]}
    # Every attempt the status counts ran once (the workers' log), no more.
    executions = _executions(log)
    assert {n: executions[n] for n in ("refused", "final", "excluded", "never", "flaky")} == {
        "refused": 3, "final": 1, "excluded": 1, "never": 1, "flaky": 2}

    refused = tasks["refused"]
    assert (refused["phase"], refused["reason"], refused["attempts"]) == ("Failed", "Error", 3)
    records = refused["failedAttempts"]
    assert [(r["attempt"], r["reason"], r["errorType"], r["retried"]) for r in records] == [
        (1, "Error", "ConnectionError", True), (2, "Error", "ConnectionError", True),
        (3, "Error", "ConnectionError", False)]
    assert all(r["message"] == f"ConnectionError: raised on purpose (attempt {r['attempt']})"
               and r["startedAt"] <= r["finishedAt"] for r in records)
    assert refused["message"] == ("failed after 3 attempts: ConnectionError: raised on purpose "
                                  "(attempt 3)")

    final = tasks["final"]
    assert (final["reason"], final["attempts"]) == ("NonRetryable", 1)
    [record] = final["failedAttempts"]
    assert (record["reason"], record["errorType"], record["retried"]) == (
        "NonRetryable", "conveyor.worker.errors.NonRetryable", False)
    assert final["message"] == ("failed after 1 attempt (not retried: NonRetryable): raised on "
                                "purpose (attempt 1)")

    excluded = tasks["excluded"]  # retry_on=(TimeoutError,): a ConnectionError is final
    assert (excluded["reason"], excluded["attempts"]) == ("NonRetryable", 1)
    assert excluded["failedAttempts"][0]["errorType"] == "ConnectionError"

    never = tasks["never"]
    assert (never["reason"], never["attempts"]) == ("Error", 1)
    assert "(not retried: retry.policy is Never)" in never["message"]

    slow = tasks["slow"]  # OnFailure retries what raised, not what timed out
    assert (slow["phase"], slow["reason"], slow["attempts"]) == ("Failed", "Timeout", 1)
    assert slow["failedAttempts"][0]["reason"] == "Timeout"

    flaky = tasks["flaky"]  # Retryable, as before: retried, then Succeeded
    assert (flaky["phase"], flaky["attempts"], flaky["outputs"]) == (
        "Succeeded", 2, {"echo": "done", "attempt": 2})
    assert [(r["attempt"], r["reason"], r["retried"]) for r in flaky["failedAttempts"]] == [
        (1, "Error", True)]

    shown = subprocess.run([sys.executable, "-m", "conveyor.cli", "get", "r1", "-n", namespace],
                           env=cluster.env(), capture_output=True, text=True, timeout=60,
                           check=False)
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert ["refused", "3", "Error", "ConnectionError"] in [r[:4] for r in rows], shown.stdout
    assert ["final", "1", "NonRetryable"] in [r[:3] for r in rows], shown.stdout

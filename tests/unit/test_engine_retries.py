"""Retries by `retry.policy` and why each attempt failed, as the status records it."""

import json
from typing import Any

import pytest

from conveyor import engine
from conveyor.engine.retrying import RETRIED, retried, worker_reason
from conveyor.errors import InvalidStatusError
from conveyor.models import (
    MAX_ATTEMPT_MESSAGE,
    MAX_FAILED_ATTEMPTS,
    Retry,
    TaskEvent,
    WorkflowRunStatus,
)
from unit.builders import compiled, task
from unit.driving import Driver

POLICIES = ("Always", "OnFailure", "OnTimeout", "Never")
# Why an attempt fails, and how to make it fail so in the engine.
OUTCOMES = ("Error", "NonRetryable", "Lost", "Timeout", "OutputTooLarge")
EXPECTED = {  # the table of engine/retrying.py, written out: (policy, outcome) -> retried
    ("Always", "Error"): True, ("Always", "Lost"): True, ("Always", "Timeout"): True,
    ("OnFailure", "Error"): True, ("OnFailure", "Lost"): True,
    ("OnTimeout", "Timeout"): True,
}


def _fail_first_attempt(d: Driver, outcome: str) -> None:
    d.started("run-1/a/1")
    if outcome == "Timeout":
        d.advance(10)
    elif outcome == "OutputTooLarge":
        d.succeed("run-1/a/1", {"blob": "x" * (engine.OUTPUT_LIMIT + 1)})
    else:
        d.apply(engine.TaskFailed("run-1/a/1", "boom", outcome != "NonRetryable", "w",
                                  None if outcome == "NonRetryable" else outcome,
                                  "ConnectionError"))


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_retries_the_failures_it_names(policy: str, outcome: str) -> None:
    d = Driver(compiled(task("a", timeoutSeconds=10,
                             retry={"limit": 2, "backoffSeconds": 1, "policy": policy})))
    d.start()
    _fail_first_attempt(d, outcome)
    a = d.task("a")
    [failure] = a["failedAttempts"]
    assert (failure["attempt"], failure["reason"]) == (1, outcome)
    if EXPECTED.get((policy, outcome), False):
        assert a["phase"] == "Retrying" and failure["retried"] is True
        d.advance(1)
        assert d.ids() == ["run-1/a/1", "run-1/a/2"]
    else:
        assert (a["phase"], a["reason"], a["attempts"]) == ("Failed", outcome, 1)
        assert failure["retried"] is False
        assert "not retried" in a["message"]
        assert d.ids() == ["run-1/a/1"]


def test_the_table_is_the_engines() -> None:
    for policy in POLICIES:
        for outcome in OUTCOMES:
            retry = Retry.model_validate({"limit": 1, "policy": policy})
            assert retried(retry, outcome, 1) == EXPECTED.get((policy, outcome), False)
            assert not retried(retry, outcome, 2), "past the limit nothing is retried"
    assert set(RETRIED) == set(POLICIES)


def test_the_policy_defaults_to_always() -> None:
    assert Retry().policy == "Always"


def test_a_connection_error_with_limit_two_runs_three_attempts_each_recorded() -> None:
    d = Driver(compiled(task("a", retry={"limit": 2, "backoffSeconds": 1})))
    d.start()
    for attempt in (1, 2, 3):
        d.started(f"run-1/a/{attempt}")
        d.apply(engine.TaskFailed(f"run-1/a/{attempt}", f"ConnectionError: refused {attempt}",
                                  True, "w", "Error", "ConnectionError",
                                  round((d.now - 0.5) * 1000)))
        d.advance(10)
    status = d.status()
    WorkflowRunStatus.model_validate(status)
    a = d.task("a")
    assert (a["phase"], a["reason"], a["attempts"]) == ("Failed", "Error", 3)
    assert a["message"] == "failed after 3 attempts: ConnectionError: refused 3"
    assert [(f["attempt"], f["reason"], f["errorType"], f["retried"])
            for f in a["failedAttempts"]] == [
        (1, "Error", "ConnectionError", True), (2, "Error", "ConnectionError", True),
        (3, "Error", "ConnectionError", False)]
    first = a["failedAttempts"][0]
    assert first["message"] == "ConnectionError: refused 1"
    assert (first["startedAt"], first["finishedAt"]) == (
        "2023-11-14T22:13:19.500Z", "2023-11-14T22:13:20Z")
    assert "index" not in first


def test_a_worker_that_sends_no_reason_is_read_by_retryable() -> None:
    d = Driver(compiled(task("a", retry={"limit": 1}), task("b", retry={"limit": 1})))
    d.start()
    d.fail("run-1/a/1", "old worker, transient")
    d.fail("run-1/b/1", "old worker, final", retryable=False)
    assert d.task("a")["failedAttempts"][0]["reason"] == "Error"
    assert d.task("a")["phase"] == "Retrying"
    b = d.task("b")
    assert (b["phase"], b["failedAttempts"][0]["reason"]) == ("Failed", "NonRetryable")
    assert b["message"] == "failed after 1 attempt (not retried: NonRetryable): old worker, final"
    # An unknown reason from a newer worker is read as retryable says.
    d2 = Driver(compiled(task("a", retry={"limit": 1})))
    d2.start()
    d2.apply(engine.TaskFailed("run-1/a/1", "?", True, "w", "SomethingNew"))
    assert d2.task("a")["failedAttempts"][0]["reason"] == "Error"


def test_a_policy_that_refuses_says_so_in_the_message() -> None:
    d = Driver(compiled(task("a", retry={"limit": 3, "policy": "OnTimeout"})))
    d.start()
    d.fail("run-1/a/1", "ConnectionError: refused")
    assert d.status()["message"] == ("task a failed after 1 attempt (not retried: "
                                     "retry.policy is OnTimeout): ConnectionError: refused")


def test_the_timeout_record_starts_when_the_attempt_did() -> None:
    d = Driver(compiled(task("a", timeoutSeconds=30, retry={"limit": 1})))
    d.start()
    d.advance(5)
    d.started("run-1/a/1")
    d.advance(30)
    [failure] = d.task("a")["failedAttempts"]
    assert failure == {"attempt": 1, "reason": "Timeout",
                       "message": "attempt 1 timed out after 30s",
                       "startedAt": "2023-11-14T22:13:25Z", "finishedAt": "2023-11-14T22:13:55Z",
                       "retried": True}


def test_records_are_bounded_and_cut_and_for_each_items_name_their_index() -> None:
    items = 40
    d = Driver(compiled(task("fan", forEach="${{ " + json.dumps(list(range(items))) + " }}",
                             retry={"limit": 1, "backoffSeconds": 1})))
    d.start()
    long_error = "e" * (MAX_ATTEMPT_MESSAGE * 3)
    for i in range(items):
        d.apply(engine.TaskFailed(f"run-1/fan[{i}]/1", long_error, True, "w", "Error",
                                  "x." * 500))
    fan = d.task("fan")
    records = fan["failedAttempts"]
    assert len(records) == MAX_FAILED_ATTEMPTS
    assert [r["index"] for r in records] == list(range(items - MAX_FAILED_ATTEMPTS, items))
    assert all(len(r["message"]) == MAX_ATTEMPT_MESSAGE for r in records)
    assert all(len(r["errorType"]) <= 256 for r in records)
    assert len(str(d.status())) < 10_000, "the status stays small for any number of items"


def test_records_survive_a_rebuild_and_go_on_from_there() -> None:
    d = Driver(compiled(task("a", retry={"limit": 6, "backoffSeconds": 1,
                                         "maxBackoffSeconds": 1})))
    d.start()
    for attempt in (1, 2, 3):
        d.fail(f"run-1/a/{attempt}", f"boom {attempt}")
        d.advance(1)
    before = d.status()
    d.rebuild()
    assert d.status() == before
    for attempt in (4, 5, 6):
        d.fail(f"run-1/a/{attempt}", f"boom {attempt}")
        d.advance(1)
    records = d.task("a")["failedAttempts"]
    assert [r["attempt"] for r in records] == [2, 3, 4, 5, 6]
    assert d.task("a")["phase"] == "Queued"


@pytest.mark.parametrize("bad", [{"failedAttempts": [{"attempt": 1}]},
                                 {"failedAttempts": [{"attempt": "x", "reason": "Error",
                                                      "finishedAt": "2023-11-14T22:13:20Z",
                                                      "retried": True}]}])
def test_a_record_that_cannot_be_one_is_an_invalid_status(bad: dict[str, Any]) -> None:
    d = Driver(compiled(task("a")))
    d.start()
    status = d.status()
    status["tasks"][0].update(bad)
    with pytest.raises(InvalidStatusError):
        engine.from_status(d.workflow, "run-1", {}, status)


def test_succeeded_attempts_leave_no_record() -> None:
    d = Driver(compiled(task("a", retry={"limit": 1})))
    d.start()
    d.succeed("run-1/a/1")
    assert "failedAttempts" not in d.task("a")


def test_a_failed_event_carries_its_reason_class_and_start_to_the_engine() -> None:
    body = (b'{"v":1,"status":"failed","attemptId":"run-1/a/1","error":"lost","retryable":true,'
            b'"reason":"Lost","errorType":"builtins.X","startedAt":"2023-11-14T22:13:19.5Z",'
            b'"someFutureField":1}')
    signal = engine.from_message(TaskEvent.model_validate_json(body))
    assert signal == engine.TaskFailed("run-1/a/1", "lost", True, None, "Lost", "builtins.X",
                                       1_700_000_000_000 - 500)
    old = engine.from_message(TaskEvent.model_validate_json(
        b'{"v":1,"status":"failed","attemptId":"run-1/a/1","error":"e","retryable":false}'))
    assert old == engine.TaskFailed("run-1/a/1", "e", False)


@pytest.mark.parametrize(("retryable", "said", "reason"), [
    (True, None, "Error"), (False, None, "NonRetryable"),  # an older worker: no reason
    (True, "Lost", "Lost"), (True, "Error", "Error"),
    (False, "OutputTooLarge", "OutputTooLarge"), (False, "NonRetryable", "NonRetryable"),
    (False, "Lost", "NonRetryable"),  # `retryable` rules over a reason that contradicts it
    (True, "OutputTooLarge", "Error"), (True, "SomethingNew", "Error"),
    (False, "SomethingNew", "NonRetryable"),
])
def test_the_reason_a_worker_reports_is_read_within_what_retryable_allows(
        retryable: bool, said: str | None, reason: str) -> None:
    assert worker_reason(retryable, said) == reason

"""Task bodies: what is accepted, and the reason a malformed one is dead-lettered with."""

from __future__ import annotations

import json

import pytest

from conveyor.broker.codec import (
    MalformedMessageError,
    decode_event,
    decode_task,
    encode_event,
    encode_task,
)
from conveyor.models import TaskEvent, TaskMessage

MESSAGE = TaskMessage(attempt_id="uid/reserve[2]/1", namespace="shop", workflow="orders",
                      run="r1", run_uid="uid", task="reserve", index=2, attempt=1,
                      task_type="inventory", inputs={"sku": "A-1"})


def test_a_task_round_trips_with_camel_case_on_the_wire():
    body = encode_task(MESSAGE)
    assert json.loads(body)["attemptId"] == "uid/reserve[2]/1"
    assert decode_task(body, "inventory") == MESSAGE


def test_an_event_round_trips():
    event = TaskEvent(status="failed", attempt_id="uid/t/1", error="boom", retryable=False)
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(("body", "reason"), [
    (b"\xff\xfe", "not-json"),
    (b"{oops", "not-json"),
    (b'"a string"', "not-an-object"),
    (b'{"attemptId": "x"}', "unsupported-version"),
    (encode_task(MESSAGE).replace(b'"v":1', b'"v":2'), "unsupported-version"),
    (b'{"v": 1, "attemptId": "x/y/1"}', "invalid-fields"),
    (encode_task(MESSAGE).replace(b'"attempt":1', b'"attempt":0'), "invalid-fields"),
])
def test_malformed_bodies_say_why(body: bytes, reason: str):
    with pytest.raises(MalformedMessageError) as info:
        decode_task(body)
    assert info.value.reason == reason
    assert info.value.detail


def test_missing_fields_are_named():
    with pytest.raises(MalformedMessageError) as info:
        decode_task(b'{"v": 1, "attemptId": "x/y/1"}')
    assert "runUid" in info.value.detail or "run_uid" in info.value.detail


def test_a_task_of_another_type_is_malformed_for_this_queue():
    with pytest.raises(MalformedMessageError) as info:
        decode_task(encode_task(MESSAGE), "payments")
    assert info.value.reason == "wrong-task-type"


def test_a_body_with_a_field_this_reader_does_not_know_is_read_all_the_same():
    """Tolerant readers (DESIGN.md §3): a worker older than its operator still takes the task
    (as one predating `replyTo` must), an operator older than its workers their events."""
    task = json.loads(encode_task(MESSAGE))
    task["addedLater"] = {"any": "thing"}
    assert decode_task(json.dumps(task).encode(), "inventory") == MESSAGE
    event = {"v": 1, "status": "started", "attemptId": "u/a/1", "addedLater": 1}
    assert decode_event(json.dumps(event).encode()).attempt_id == "u/a/1"

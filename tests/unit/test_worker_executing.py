"""Running a task function: outcomes, error classes, async functions, the output cap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.models import TaskMessage
from conveyor.worker import Retryable, TaskContext, task
from conveyor.worker.executing import OutputCap, execute
from conveyor.worker.registry import ATTRIBUTE, TaskDefinition

MESSAGE = TaskMessage(attempt_id="uid/t/3", namespace="ns", workflow="wf", run="r",
                      run_uid="uid", task="t", attempt=3, task_type="kind", timeout_seconds=30)


def context() -> TaskContext:
    return TaskContext(MESSAGE, "worker-0", datetime.now(UTC), lambda progress: None)


def definition(function: Any) -> TaskDefinition:
    marked = task("kind")(function)
    found = getattr(marked, ATTRIBUTE)
    assert isinstance(found, TaskDefinition)
    return found


def test_outputs_of_a_plain_function_and_its_ctx():
    def handler(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"sum": inputs["a"] + inputs["b"], "key": ctx.idempotency_key,
                "attempt": ctx.attempt}

    outcome = execute(definition(handler), {"a": 1, "b": 2}, context())
    assert outcome.status == "succeeded"
    assert outcome.outputs == {"sum": 3, "key": "uid/t/3", "attempt": 3}


def test_an_async_function_and_a_one_argument_function():
    async def handler(inputs: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"async": True}

    def simple(inputs: dict[str, Any]) -> None:
        return None

    assert execute(definition(handler), {}, context()).outputs == {"async": True}
    assert execute(definition(simple), {}, context()).outputs == {}


def test_retryable_fails_retryably_and_anything_else_for_good():
    def transient(inputs: dict[str, Any], ctx: TaskContext) -> None:
        raise Retryable("gateway busy")

    def bug(inputs: dict[str, Any], ctx: TaskContext) -> None:
        raise KeyError("sku")

    retry = execute(definition(transient), {}, context())
    assert (retry.status, retry.retryable, retry.error, retry.label) == (
        "failed", True, "gateway busy", "retryable")
    final = execute(definition(bug), {}, context())
    assert (final.status, final.retryable, final.label) == ("failed", False, "failed")
    assert final.error == "KeyError: 'sku'"


@pytest.mark.parametrize(("returned", "message"), [
    (42, "returned int"),
    ({"when": datetime.now(UTC)}, "not JSON"),
    ({"blob": "x" * 2000}, "OutputTooLarge"),
])
def test_outputs_must_be_a_small_json_object(returned: Any, message: str):
    def handler(inputs: dict[str, Any], ctx: TaskContext) -> Any:
        return returned

    outcome = execute(definition(handler), {}, context(), OutputCap(1024, "(SOME_SETTING)"))
    assert outcome.status == "failed" and not outcome.retryable
    assert message in (outcome.error or "")


def test_the_size_of_the_outputs_is_measured_as_the_operator_does():
    def handler(inputs: dict[str, Any], ctx: TaskContext) -> Any:
        return {"name": "é"}  # ASCII-escaped: {"name":"\u00e9"}, 17 bytes

    outcome = execute(definition(handler), {}, context())
    assert (outcome.status, outcome.size) == ("succeeded", 17)
    over = execute(definition(handler), {}, context(), OutputCap(16, "(SOME_SETTING)"))
    assert over.error == ("OutputTooLarge: the outputs are 17 bytes, over the cap of 16 bytes"
                          " (SOME_SETTING)")


def test_the_deadline_is_the_start_plus_the_timeout():
    ctx = context()
    assert ctx.deadline is not None
    assert (ctx.deadline - ctx.started).total_seconds() == 30
    remaining = ctx.remaining()
    assert remaining is not None and 0 < remaining <= 30


def test_heartbeats_are_rate_limited_but_progress_is_kept():
    sent: list[str | None] = []
    ctx = TaskContext(MESSAGE, "w", datetime.now(UTC), sent.append)
    ctx._last_heartbeat -= 10  # as if the last one went out long ago
    ctx.heartbeat(progress=0.25)
    ctx.heartbeat(progress="half")  # within a second of the previous: not sent
    assert sent == ["25%"]
    assert ctx.progress == "half"

"""Running a task function: outcomes, error classes, async functions, the output cap."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.models import TaskMessage
from conveyor.worker import NonRetryable, Retryable, TaskContext, task
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


class DeclinedError(Exception):
    pass


class ThrottledError(ConnectionError):
    pass


def _raising(error: BaseException, **options: Any) -> TaskDefinition:
    def handler(inputs: dict[str, Any], ctx: TaskContext) -> None:
        raise error

    found = getattr(task("kind", **options)(handler), ATTRIBUTE)
    assert isinstance(found, TaskDefinition)
    return found


@pytest.mark.parametrize(("error", "options", "retryable"), [
    (ConnectionError("refused"), {}, True),  # any failure: the retry policy decides
    (KeyError("sku"), {}, True),
    (SystemExit(3), {}, True),
    (Retryable("busy"), {}, True),
    (NonRetryable("declined"), {}, False),
    (ConnectionError("refused"), {"retry_on": (ConnectionError, TimeoutError)}, True),
    (ThrottledError("slow down"), {"retry_on": ConnectionError}, True),  # subclasses count
    (KeyError("sku"), {"retry_on": (ConnectionError,)}, False),
    (Retryable("busy"), {"retry_on": (ConnectionError,)}, True),  # said outright
    (DeclinedError("no"), {"non_retryable": DeclinedError}, False),
    (ConnectionError("refused"), {"non_retryable": (DeclinedError,)}, True),
    (Retryable("busy"), {"non_retryable": (Exception,)}, True),
    (NonRetryable("no"), {"retry_on": (NonRetryable,)}, False),
    # non_retryable names the exceptions to retry_on's rule
    (ThrottledError("slow down"),
     {"retry_on": ConnectionError, "non_retryable": ThrottledError}, False),
])
def test_which_failures_may_be_retried(error: BaseException, options: dict[str, Any],
                                       retryable: bool):
    outcome = execute(_raising(error, **options), {}, context())
    assert (outcome.status, outcome.retryable) == ("failed", retryable)
    assert outcome.reason == ("Error" if retryable else "NonRetryable")
    assert outcome.label == ("retryable" if retryable else "failed")


def test_a_failure_names_its_exception_class_and_explicit_markers_keep_their_words():
    bug = execute(_raising(KeyError("sku")), {}, context())
    assert (bug.error, bug.error_type) == ("KeyError: 'sku'", "KeyError")
    mine = execute(_raising(DeclinedError("card declined")), {}, context())
    assert mine.error_type == f"{__name__}.DeclinedError"
    assert mine.error == "DeclinedError: card declined"
    transient = execute(_raising(Retryable("gateway busy")), {}, context())
    assert (transient.error, transient.error_type) == (
        "gateway busy", "conveyor.worker.errors.Retryable")
    final = execute(_raising(NonRetryable()), {}, context())
    assert final.error == "NonRetryable"


@pytest.mark.parametrize("given", [ValueError("x"), (KeyError, "nope"), int])
def test_retry_options_take_exception_classes_only(given: Any):
    with pytest.raises(TypeError, match="retry_on"):
        task("kind", retry_on=given)
    with pytest.raises(TypeError, match="non_retryable"):
        task("kind", non_retryable=given)


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
    # Outputs over the cap are the one final failure with a reason of its own (the status's
    # table names it); the others are NonRetryable, their kind in errorType.
    assert (outcome.reason, outcome.error_type) == (
        ("OutputTooLarge", "OutputTooLarge") if message == "OutputTooLarge"
        else ("NonRetryable", "InvalidOutputs"))
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

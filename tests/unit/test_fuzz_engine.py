"""Fuzzed runs through the engine: valid and hostile Workflows (costly `when` and `forEach`,
huge fan-outs), odd and hostile inputs (1 MiB strings, 200,000 items, deep nesting, wrong
types, unicode) and odd worker outputs.

The properties, for every run: the engine raises nothing; the run ends; its status can be
written (JSON, every due time a real time); a task that failed on an expression says so with
the expression's field first (`spec.tasks[2].forEach: ...`); a run costs at most BOUND seconds
of CPU.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor import engine
from conveyor.engine import RUN_TERMINAL
from conveyor.models import MAX_SECONDS, WorkflowSpec
from conveyor.workflow import compile_workflow
from unit import fuzzing
from unit.driving import Driver

BOUND = 8.0  # seconds of CPU for one run: a few renderings at their limits, 150 tasks at most
EXPRESSION_REASONS = ("ExpressionError", "InvalidForEach")

OUTPUTS = st.one_of(
    st.none(), st.just({}), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.just({"big": "x" * 5000}), st.just({"deep": fuzzing.nested(200)}),
    st.just({"ключ": "🚀", "": None}), st.just({"n": 2**80}),
)


def drive(workflow: Any, inputs: dict[str, Any], outputs: st.DataObject) -> Driver:
    driver = Driver(workflow, inputs)
    began = time.thread_time()
    driver.start()
    for _ in range(60):
        if driver.run.phase in RUN_TERMINAL:
            break
        for attempt_id in dict.fromkeys(p.attempt_id for p in driver.published):
            driver.succeed(attempt_id, outputs.draw(OUTPUTS, label="outputs"))
        driver.advance(1000)
    spent = time.thread_time() - began
    assert spent < BOUND, f"{spent:.1f} s of CPU"
    return driver


def check(driver: Driver) -> dict[str, Any]:
    assert driver.run.phase in RUN_TERMINAL
    status = engine.to_status(driver.run)
    json.dumps(status)  # writable as it is
    for task in status["tasks"]:
        if task.get("reason") in EXPRESSION_REASONS:
            spec = driver.workflow.by_name[task["name"]]
            assert task["message"].startswith(spec.path + "."), task["message"][:300]
            assert len(task["message"]) < 2000
    return status


@settings(max_examples=200)
@given(spec=fuzzing.valid_spec(), inputs=st.one_of(
    fuzzing.run_inputs(), fuzzing.run_inputs(),
    st.sampled_from([i for _, i in fuzzing.hostile_run_inputs()])),
    data=st.data())
def test_any_run_of_a_valid_workflow_ends_with_failures_named_by_field(
        spec: dict[str, Any], inputs: dict[str, Any], data: st.DataObject) -> None:
    workflow = compile_workflow(WorkflowSpec.model_validate(spec), "wf", 1)
    check(drive(workflow, inputs, data))


COSTLY = [(label, mutate) for label, mutate in fuzzing.HOSTILE if label.startswith("costly-")]


@settings(max_examples=len(COSTLY))
@given(case=st.sampled_from(COSTLY), spec=fuzzing.valid_spec(max_tasks=3), data=st.data())
def test_a_costly_expression_fails_its_task_and_not_the_engine(
        case: tuple[str, Any], spec: dict[str, Any], data: st.DataObject) -> None:
    label, mutate = case
    spec = copy.deepcopy(spec)
    spec["tasks"][0].pop("dependsOn", None)
    mutate(spec)
    try:
        workflow = compile_workflow(WorkflowSpec.model_validate(spec), "wf", 1)
    except Exception as error:  # past the parser's nesting: refused before any run
        assert type(error).__name__ == "InvalidSpecError", error
        return
    status = check(drive(workflow, {"s": "x" * fuzzing.MiB, "items": [1]}, data))
    first = status["tasks"][0]
    assert first["phase"] in ("Failed", "Skipped", "Succeeded"), first
    if not label.endswith(("-7", "-8")):  # the deep list literal is cheap; `(`x120 refused
        assert (first["phase"], first["reason"]) == ("Failed", "ExpressionError"), first


def test_a_fan_out_past_the_limit_fails_at_once_naming_the_field() -> None:
    spec = {"taskTypes": [{"name": "pool", "image": fuzzing.IMAGE}],
            "tasks": [{"name": "fan", "type": "pool", "forEach": "${{ inputs.items }}"}]}
    workflow = compile_workflow(WorkflowSpec.model_validate(spec), "wf", 1)
    driver = Driver(workflow, {"items": list(range(200_000))})
    began = time.thread_time()
    driver.start()
    assert time.thread_time() - began < 2
    assert driver.published == []
    task = driver.task("fan")
    assert (task["phase"], task["reason"]) == ("Failed", "ExpressionError")
    assert task["message"].startswith("spec.tasks[0].forEach: expression 'inputs.items': "
                                      "yields 200000 items; a forEach may have at most 100000")


def test_durations_are_bounded_so_due_times_can_be_written() -> None:
    """A retry backoff of 1e300 s (or a timeout of 2^63 s) once made a due time past year
    9999 that crashed the status write; durations are now at most ten years, and ten years
    can be written."""
    def spec(**fields: Any) -> dict[str, Any]:
        return {"taskTypes": [{"name": "pool", "image": fuzzing.IMAGE}],
                "tasks": [{"name": "a", "type": "pool", **fields}]}

    for fields in ({"retry": {"limit": 1, "backoffSeconds": 1e300}},
                   {"timeoutSeconds": 2**63 - 1}):
        with pytest.raises(ValidationError, match="less than or equal to 315360000"):
            WorkflowSpec.model_validate(spec(**fields))
    longest = spec(timeoutSeconds=MAX_SECONDS, retry={
        "limit": 1, "backoffSeconds": MAX_SECONDS, "maxBackoffSeconds": MAX_SECONDS})
    driver = Driver(compile_workflow(WorkflowSpec.model_validate(longest), "wf", 1))
    driver.start()
    [attempt] = driver.ids()
    driver.started(attempt)
    assert driver.task("a")["timeoutAt"]
    driver.fail(attempt)
    assert driver.task("a")["nextAttemptAt"]

"""Compiling a Workflow generation: expressions checked once, triggers, the cache."""

import pytest

from conveyor.errors import InvalidSpecError
from conveyor.workflow import WorkflowCache, compile_workflow, match_topic, trigger_inputs
from unit.builders import spec, task


def test_every_bad_expression_is_reported_with_its_place() -> None:
    bad = spec(
        task("a", inputs={"x": "${{ inputs.( }}"}),
        task("b", "a", when="${{ tasks.nope.outputs.ok }}"),
        task("c", forEach="not an expression"),
        outputs={"r": "${{ 1 + }}"},
    )
    with pytest.raises(InvalidSpecError) as caught:
        compile_workflow(bad)
    paths = [p.path for p in caught.value.problems]
    assert paths == ["spec.tasks[0].inputs.x", "spec.tasks[1].when", "spec.tasks[2].forEach",
                     "spec.outputs.r"]
    assert "tasks.nope names no task" in str(caught.value)
    assert "must be a ${{ CEL }} expression" in str(caught.value)


def test_backoff_is_exponential_and_capped() -> None:
    wf = compile_workflow(spec(task("a", retry={"limit": 9, "backoffSeconds": 1,
                                               "backoffFactor": 2, "maxBackoffSeconds": 5})))
    assert [wf.tasks[0].backoff_ms(n) for n in (1, 2, 3, 4, 5)] == [1000, 2000, 4000, 5000, 5000]


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("order.created", "order.created", True),
    ("order.*", "order.created", True),
    ("order.*", "order.created.eu", False),
    ("order.#", "order", True),
    ("#.eu", "order.created.eu", True),
    ("#", "anything.at.all", True),
    ("order.created", "order.deleted", False),
])
def test_topic_patterns_follow_amqp(pattern: str, key: str, matches: bool) -> None:
    assert match_topic(pattern, key) is matches


def test_trigger_inputs_see_the_event() -> None:
    wf = compile_workflow(spec(task("a"), triggers=[
        {"event": "order.*", "inputs": {"order": "${{ event }}", "id": "${{ event.id }}"}},
        {"event": "invoice.#", "inputs": {}},
    ]))
    assert trigger_inputs(wf, "order.created", {"id": 7}) == [{"order": {"id": 7}, "id": 7}]
    assert trigger_inputs(wf, "user.created", {}) == []


def test_cache_compiles_once_per_generation() -> None:
    cache = WorkflowCache(size=2)
    one = spec(task("a"))
    assert cache.get("u", 1, one) is cache.get("u", 1, one)
    assert cache.get("u", 2, one) is not cache.get("u", 1, one)
    cache.get("v", 1, one)  # evicts the least recently used entry
    assert len(cache._entries) == 2

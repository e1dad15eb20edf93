"""Graph validation: what admission cannot reject, reported with its place."""

import pytest

from conveyor import dag
from conveyor.errors import InvalidSpecError
from conveyor.workflow import compile_workflow
from unit.builders import spec, task


def messages(*tasks: dict[str, object], final: list[dict[str, object]] | None = None) -> list[str]:
    return [str(p) for p in dag.validate(spec(*tasks, final=final))]


def test_a_valid_graph_has_no_problem() -> None:
    assert messages(task("a"), task("b", "a"), task("c", "a", "b"),
                    final=[task("f"), task("g", "f")]) == []


def test_cycle_is_printed_with_its_place() -> None:
    found = messages(task("x"), task("a", "c"), task("b", "a"), task("c", "b"))
    assert found == ["spec.tasks[1].dependsOn: dependency cycle: a -> c -> b -> a "
                     "(each depends on the next)"]


def test_two_task_cycle_in_finally() -> None:
    found = messages(task("m"), final=[task("f", "g"), task("g", "f")])
    assert found == ["spec.finally[0].dependsOn: dependency cycle: f -> g -> f "
                     "(each depends on the next)"]


def test_finally_task_depending_on_a_main_task() -> None:
    (found,) = messages(task("a"), final=[task("f", "a")])
    assert found.startswith("spec.finally[0].dependsOn[0]: finally task 'f' depends on 'a'")


def test_what_admission_also_rejects_is_reported_too() -> None:
    bad = spec(task("a", "a"), task("a"), task("b", "nope", type="ghost"))
    bad.task_types = [t for t in bad.task_types if t.name != "ghost"]
    found = [str(p) for p in dag.validate(bad)]
    assert found == [
        "spec.tasks[0].dependsOn[0]: task 'a' depends on itself",
        "spec.tasks[1].name: duplicate task name 'a'",
        "spec.tasks[2].type: task type 'ghost' is not in spec.taskTypes",
        "spec.tasks[2].dependsOn[0]: 'nope' names no task",
    ]


def test_long_chain_does_not_overflow_the_stack() -> None:
    names = [f"t{i}" for i in range(5000)]
    deps = {n: [names[i - 1]] if i else [] for i, n in enumerate(names)}
    assert dag.find_cycle(names, deps) is None
    deps["t0"] = ["t4999"]
    cycle = dag.find_cycle(names, deps)
    assert cycle is not None and cycle[0] == cycle[-1] == "t0" and len(cycle) == 5001


def test_compile_raises_invalid_spec_listing_every_problem() -> None:
    bad = spec(task("a", "b"), task("b", "a"), task("c", when="${{ 1 + }}"))
    with pytest.raises(InvalidSpecError) as caught:
        compile_workflow(bad)
    # The graph is checked first; expressions of a graph that cannot run are not compiled.
    assert [p.path for p in caught.value.problems] == ["spec.tasks[0].dependsOn"]

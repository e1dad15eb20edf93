"""Hypothesis strategies for Workflows, WorkflowRuns and expressions: valid, almost valid (one
field wrong, with the place a message must name) and hostile (huge, deep, unicode, costly).

Every strategy draws plain JSON (what the API server stores), so one example can go through
the models, `conveyor lint`'s admission, the compiler and the engine alike.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from conveyor import names

MiB = 1024 * 1024
IMAGE = "example.com/workers:1"
SUFFIX = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=4)
LIST10 = "[" + ",".join(str(i) for i in range(10)) + "]"

# Expressions that compile; at run time some fail (an output a worker did not send), which
# must end in a task failure that names the field.
WHEN = ["${{ true }}", "${{ inputs.flag }}", "${{ size(inputs.items) > 1 }}",
        "${{ run.failed }}", "${{ inputs.items.exists(i, i > 2) }}"]
FOR_EACH = ["${{ inputs.items }}", "${{ [1, 2, 3] }}", "${{ inputs.items.filter(i, i > 0) }}",
            "${{ inputs.items.map(i, {'n': i, 'name': inputs.name}) }}"]
INPUTS = [{}, {"n": "${{ inputs.n + 1 }}"}, {"text": "order ${{ inputs.name }}!"},
          {"static": {"deep": [1, {"x": None}]}}, {"all": "${{ inputs }}"}]


@st.composite
def valid_spec(draw: st.DrawFn, max_tasks: int = 8) -> dict[str, Any]:
    """A Workflow spec the API server and the operator both accept."""
    types = [f"pool{i}" for i in range(draw(st.integers(1, 3)))]
    spec: dict[str, Any] = {"taskTypes": [
        {"name": n, "image": IMAGE, "concurrency": draw(st.integers(1, 4))} for n in types]}

    def tasks(prefix: str, count: int) -> list[dict[str, Any]]:
        made: list[dict[str, Any]] = []
        for i in range(count):
            earlier = [t["name"] for t in made]
            task: dict[str, Any] = {"name": f"{prefix}{i}{draw(SUFFIX)}",
                                    "type": draw(st.sampled_from(types))}
            if earlier:
                deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))
                if deps:
                    task["dependsOn"] = deps
            if draw(st.booleans()):
                task["when"] = draw(st.sampled_from(WHEN))
            inputs = dict(draw(st.sampled_from(INPUTS)))
            if draw(st.integers(0, 3)) == 0:
                task["forEach"] = draw(st.sampled_from(FOR_EACH))
                inputs["item"] = "${{ item }}"
                if draw(st.booleans()):
                    task["maxParallel"] = draw(st.integers(1, 3))
            if earlier and draw(st.booleans()):
                inputs["upstream"] = f"${{{{ tasks['{earlier[-1]}'].phase }}}}"
            if inputs:
                task["inputs"] = inputs
            if draw(st.booleans()):
                task["timeoutSeconds"] = draw(st.integers(1, 60))
            made.append(task)
        return made

    spec["tasks"] = tasks("t", draw(st.integers(1, max_tasks)))
    final = tasks("f", draw(st.integers(0, 2)))
    if final:
        spec["finally"] = final
    if draw(st.booleans()):
        spec["outputs"] = {"first": f"${{{{ tasks['{spec['tasks'][0]['name']}'].outputs }}}}"}
    if draw(st.booleans()):
        spec["triggers"] = [{"event": "order.*", "inputs": {"order": "${{ event }}"}}]
    return spec


def workflow(spec: dict[str, Any], name: str = "wf") -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
            "metadata": {"name": name}, "spec": spec}


def run(spec: dict[str, Any], name: str = "r") -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.RUN_KIND,
            "metadata": {"name": name}, "spec": spec}


@st.composite
def run_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """Inputs the valid specs' expressions read, sometimes of the wrong type."""
    return {
        "flag": draw(st.one_of(st.booleans(), st.just("yes"))),
        "items": draw(st.lists(st.integers(-3, 9), max_size=6)),
        "n": draw(st.one_of(st.integers(-5, 5), st.just("five"))),
        "name": draw(st.text(max_size=8)),
    }


# --- one field wrong ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mistake:
    """A valid object made wrong in one place: the stage that must say so, and the place
    (`spec.tasks[1].forEach`) its message must name."""

    obj: dict[str, Any]
    stage: str  # admission | operator
    place: str


Breaker = Callable[[dict[str, Any], int, st.DrawFn], tuple[str, str]]


def on_task(field: str, value: Any, stage: str = "admission", place: str | None = None
            ) -> Breaker:
    """Set one field of task k; the message must name `place` (default the field itself;
    `{k}` in it is the task's index)."""
    def breaker(spec: dict[str, Any], k: int, draw: st.DrawFn) -> tuple[str, str]:
        task = spec["tasks"][k]
        if field == "maxParallel":
            task.pop("forEach", None)
        task[field] = draw(value) if isinstance(value, st.SearchStrategy) else value
        if field == "dependsOn" and value == "self":
            task[field] = [task["name"]]
        return stage, (place or f"spec.tasks[{{k}}].{field}").format(k=k)
    return breaker


def on_spec(update: dict[str, Any], place: str, stage: str = "admission") -> Breaker:
    def breaker(spec: dict[str, Any], k: int, draw: st.DrawFn) -> tuple[str, str]:
        spec.update(copy.deepcopy(update))
        return stage, place
    return breaker


def on_type(update: dict[str, Any], place: str) -> Breaker:
    def breaker(spec: dict[str, Any], k: int, draw: st.DrawFn) -> tuple[str, str]:
        spec["taskTypes"][0].update(update)
        return "admission", place
    return breaker


def cycle(spec: dict[str, Any], k: int, draw: st.DrawFn) -> tuple[str, str]:
    if len(spec["tasks"]) < 2:
        spec["tasks"].append({"name": "zz", "type": spec["taskTypes"][0]["name"]})
    first, second = spec["tasks"][0], spec["tasks"][1]
    first["dependsOn"] = [second["name"]]
    second["dependsOn"] = [first["name"]]
    return "operator", "spec.tasks[0].dependsOn"


BAD_NAMES = st.sampled_from(["Upper", "under_score", "-lead", "trail-", "tâche", "задача",
                             "🚀", "a" * 64, ""])
BREAKERS: dict[str, Breaker] = {
    "timeout-zero": on_task("timeoutSeconds", 0),
    "timeout-text": on_task("timeoutSeconds", "30"),
    "name-pattern": on_task("name", BAD_NAMES),
    "unknown-field": on_task("colour", "red"),
    "self-dependency": on_task("dependsOn", "self"),
    "dangling-dependency": on_task("dependsOn", ["nowhere"], place="spec.tasks"),
    "unknown-type": on_task("type", "no-such-pool", place="spec.tasks"),
    "parallel-without-forEach": on_task("maxParallel", 2),
    "when-syntax": on_task("when", "${{ inputs.flag && }}", "operator"),
    "when-not-expression": on_task("when", "true", "operator"),
    "forEach-unterminated": on_task("forEach", "${{ inputs.items", "operator"),
    "inputs-syntax": on_task("inputs", {"odd key.x": "${{ 1 + }}"}, "operator",
                             'spec.tasks[{k}].inputs["odd key.x"]'),
    "unknown-task-ref": on_task("when", "${{ tasks.ghost.phase == 'x' }}", "operator"),
    "reserved-name": on_task("when", "${{ __cv_tick(0) }}", "operator"),
    "too-long-when": on_task("when", "${{ " + "1 + " * 1100 + "1 }}"),
    "cycle": cycle,
    "scaling": on_type({"scaling": {"minReplicas": 5, "maxReplicas": 1}},
                       "spec.taskTypes[0].scaling.minReplicas"),
    "concurrency-text": on_type({"concurrency": "4"}, "spec.taskTypes[0].concurrency"),
    "no-tasks": on_spec({"tasks": []}, "spec.tasks"),
    "deadline-negative": on_spec({"deadlineSeconds": -1}, "spec.deadlineSeconds"),
    "trigger-inputs": on_spec({"triggers": [{"event": "x", "inputs": {"a": "${{ event. }}"}}]},
                              "spec.triggers[0].inputs.a", "operator"),
}


@st.composite
def almost_valid_workflow(draw: st.DrawFn) -> Mistake:
    spec = copy.deepcopy(draw(valid_spec()))
    breaker = draw(st.sampled_from(sorted(BREAKERS)))
    k = draw(st.integers(0, len(spec["tasks"]) - 1))
    stage, place = BREAKERS[breaker](spec, k, draw)
    return Mistake(workflow(spec), stage, place)


RUN_BREAKERS: list[tuple[dict[str, Any], str]] = [
    ({"workflowRef": {"name": ""}}, "spec.workflowRef.name"),
    ({"workflowRef": {}}, "spec.workflowRef.name"),
    ({"workflowRef": {"name": "wf"}, "cancel": "yes"}, "spec.cancel"),
    ({"workflowRef": {"name": "wf"}, "inputs": [1, 2]}, "spec.inputs"),
    ({"workflowRef": {"name": "wf"}, "retry": True}, "spec.retry"),
    ({"workflowRef": {"name": "x" * 300}}, "spec.workflowRef.name"),
    ({}, "spec.workflowRef"),
]


@st.composite
def almost_valid_run(draw: st.DrawFn) -> Mistake:
    spec, place = draw(st.sampled_from(RUN_BREAKERS))
    return Mistake(run(copy.deepcopy(spec)), "admission", place)


# --- hostile --------------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def costly_expressions() -> list[str]:
    """CEL that would burn seconds or GiB without a limit (each well within 4096 chars)."""
    nest = "1"
    for name in "abcdef":
        nest = f"{LIST10}.map({name}, {nest})"
    big = "[" + ",".join("0" for _ in range(900)) + "]"
    return [
        nest,  # 10^6 items built by nested maps
        f"{big}.map(a, {big}.exists(b, b == 1))",  # 810,000 steps
        f"{big}.filter(a, true).map(b, {big}.filter(c, true))",  # quadratic filters, nested
        f"{LIST10}.all(a, {LIST10}.all(b, {LIST10}.all(c, {LIST10}.all(d, "
        f"{LIST10}.all(e, {LIST10}.all(f, true))))))",
        "inputs.s + inputs.s + inputs.s + inputs.s + inputs.s + inputs.s",  # 1 MiB each
        "[" + ", ".join(["inputs"] * 200) + "]",  # 200 copies of the inputs
        f"{LIST10}.map(a, {LIST10}.map(b, {LIST10}.map(c, inputs.s)))",  # 1000 x 1 MiB
        "[" * 90 + "1" + "]" * 90,
        "(" * 120 + "1" + ")" * 120,  # past the parser's nesting limit
    ]


def hostile_mutations() -> list[tuple[str, Callable[[dict[str, Any]], None]]]:
    """Ways to make a valid spec hostile, each applied to spec in place."""
    def task0(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda s: s["tasks"][0].__setitem__(field, value)

    mib = "x" * MiB
    many = [{"name": f"t{i}", "type": "pool0"} for i in range(10_000)]
    chain = [{"name": f"c{i}", "type": "pool0", "dependsOn": [f"c{(i + 1) % 150}"]}
             for i in range(150)]
    cel = costly_expressions()
    return [
        ("MiB-name", task0("name", mib)),
        ("MiB-image", lambda s: s["taskTypes"][0].__setitem__("image", mib)),
        ("MiB-inputs", task0("inputs", {"blob": mib, "unicode": "ß∂ƒ©" * 1000})),
        ("MiB-when", task0("when", "${{ " + "true && " * (MiB // 8) + "true }}")),
        ("MiB-braces-inputs", task0("inputs", {"x": "${{ (" + "}}" * (MiB // 2)})),
        ("MiB-expressions", task0("inputs", {"x": "${{ 1 }}" * (MiB // 16)})),
        ("unicode-names", task0("name", "задача-🚀")),
        ("unicode-keys", task0("inputs", {"ключ.🚀 [x]": "${{ inputs.n }}"})),
        ("deep-inputs-150", task0("inputs", {"d": nested(150)})),
        ("deep-inputs-900", task0("inputs", {"d": nested(900)})),
        ("10k-tasks", lambda s: s.update(tasks=many)),
        ("150-cycle", lambda s: s.update(tasks=chain)),
        ("1k-dependsOn", task0("dependsOn", [f"d{i}" for i in range(1000)])),
        ("huge-int", task0("timeoutSeconds", 10**400)),
        ("float-timeout", task0("timeoutSeconds", 1.5)),
        ("null-spec-field", lambda s: s.update(tasks=None)),
        ("wrong-shape", lambda s: s.update(taskTypes={"name": "pool0"})),
        *[(f"costly-when-{i}", task0("when", "${{ " + e + " }}")) for i, e in enumerate(cel)],
        *[(f"costly-forEach-{i}", task0("forEach", "${{ " + e + " }}"))
          for i, e in enumerate(cel)],
    ]


HOSTILE = hostile_mutations()


@st.composite
def hostile_workflow(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    spec = copy.deepcopy(draw(valid_spec(max_tasks=3)))
    label, mutate = draw(st.sampled_from(HOSTILE))
    mutate(spec)
    return label, workflow(spec)


def hostile_run_inputs() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("MiB-string", {"s": "x" * MiB, "items": [1, 2], "name": "é" * 1000}),
        ("huge-items", {"items": list(range(200_000))}),
        ("deep", {"items": [nested(400)], "n": nested(400)}),
        ("wrong-types", {"items": "not a list", "flag": [], "n": {"a": 1}, "name": None}),
        ("unicode", {"name": "\u0000\ud7ff\uffff🚀", "items": ["ü", "字"]}),
        ("big-numbers", {"n": 2**70, "items": [1e308, -1e308, 2**64]}),
        ("empty", {}),
    ]


def as_json_text(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)

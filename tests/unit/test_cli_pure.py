"""The CLI's pure parts: inputs, the watch frame, graphs, and what `retry` reuses."""

import pytest

from conveyor.cli import graph
from conveyor.cli.common import USAGE, CliError, parse_input, read_inputs
from conveyor.cli.render import duration, table
from conveyor.cli.submit import reusable
from conveyor.cli.watch import Graph, frame, paint
from conveyor.manifests import run_manifest

SPEC = {
    "taskTypes": [{"name": "work", "image": "x"}],
    "tasks": [{"name": "validate", "type": "work"},
              {"name": "reserve", "type": "work", "dependsOn": ["validate"],
               "forEach": "${{ inputs.items }}"},
              {"name": "charge", "type": "work", "dependsOn": ["reserve"],
               "when": "${{ true }}"}],
    "finally": [{"name": "release", "type": "work"}],
}


@pytest.mark.parametrize(("text", "expected"), [
    ("n=3", ("n", 3)), ("ok=true", ("ok", True)), ("name=ada", ("name", "ada")),
    ('order={"id": 42}', ("order", {"id": 42})), ("s=", ("s", "")), ("eq=a=b", ("eq", "a=b")),
    ('quoted="3"', ("quoted", "3")),
])
def test_an_input_is_json_when_it_parses_else_text(text, expected):  # type: ignore[no-untyped-def]
    assert parse_input(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=3", ""])
def test_an_input_without_a_key_is_a_usage_error(text):  # type: ignore[no-untyped-def]
    with pytest.raises(CliError) as caught:
        parse_input(text)
    assert caught.value.code == USAGE and "KEY=VALUE" in str(caught.value)


def test_inputs_files_come_first_and_input_pairs_override(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.yaml").write_text("order: {id: 1}\nn: 1\n")
    (tmp_path / "b.json").write_text('{"n": 2}')
    assert read_inputs(["n=3"], [str(tmp_path / "a.yaml"), str(tmp_path / "b.json")]) == \
        {"order": {"id": 1}, "n": 3}
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(CliError, match="expected a map"):
        read_inputs([], [str(tmp_path / "list.yaml")])


def test_durations_are_precise_when_short_and_brief_when_long() -> None:
    assert [duration(s) for s in (0.84, 42, 192, 7500, 300000)] == \
        ["0.8s", "42s", "3m12s", "2h05m", "3d11h"]
    assert table(["A", "LONGER"], [["xx", 1]]) == "A    LONGER\nxx   1"


RUN = {
    "metadata": {"name": "r1"},
    "spec": {"workflowRef": {"name": "shop"}},
    "status": {
        "phase": "Running", "progress": "1/4", "startedAt": "2026-01-01T00:00:00Z",
        "tasks": [
            {"name": "validate", "phase": "Succeeded", "attempts": 1,
             "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:00.800Z"},
            {"name": "reserve", "phase": "Running", "attempts": 12,
             "startedAt": "2026-01-01T00:00:01Z",
             "items": {"total": 20, "succeeded": 10, "failed": 0, "running": 5}},
            {"name": "charge", "phase": "Pending"},
            {"name": "release", "phase": "Pending"},
        ],
    },
}


def test_the_frame_shows_each_task_with_phase_attempts_duration_and_dependencies() -> None:
    now = 1767225612.4  # 12.4 s after the start
    text = paint(frame(RUN, Graph.of({"spec": SPEC}), now), colour=False)
    assert text.splitlines() == [
        "r1  workflow shop  Running  1/4  12s",
        "    TASK       PHASE       ATTEMPTS   DURATION   AFTER      MESSAGE",
        "[+] validate   Succeeded   1          0.8s",
        "[>] reserve    Running     12         11s        validate   items 10/20, 5 running",
        "[ ] charge     Pending     0                     reserve",
        "finally:",
        "[ ] release    Pending     0",
    ]


def test_without_a_clock_the_frame_of_an_unchanged_run_does_not_change() -> None:
    g = Graph.of({"spec": SPEC})
    assert frame(RUN, g, None) == frame(RUN, g, None)
    assert "12s" not in paint(frame(RUN, g, None), colour=False)


def test_the_frame_colours_lines_by_phase_and_shows_reused_and_failures() -> None:
    run = {"metadata": {"name": "r2"}, "spec": {"workflowRef": {"name": "shop"}},
           "status": {"phase": "Failed", "message": "task charge failed after 1 attempt: no",
                      "tasks": [{"name": "validate", "phase": "Succeeded", "reason": "Reused"},
                                {"name": "charge", "phase": "Failed", "attempts": 1,
                                 "reason": "Error", "message": "failed after 1 attempt: no"}]}}
    lines = frame(run, Graph(), None)
    text = paint(lines, colour=True)
    assert "\x1b[31m[x] charge" in text and "reused" in text
    assert "Error: failed after 1 attempt: no" in text
    assert lines[-1] == ("message: task charge failed after 1 attempt: no", "")


def test_a_run_the_operator_has_not_seen_lists_the_workflow_tasks_as_pending() -> None:
    run = {"metadata": {"name": "r3"}, "spec": {"workflowRef": {"name": "shop"}}}
    text = paint(frame(run, Graph.of({"spec": SPEC}), None), colour=False)
    assert "r3  workflow shop  Pending  0/4" in text and "[ ] charge" in text


def test_mermaid_and_dot_draw_every_task_and_edge() -> None:
    mermaid = graph.mermaid("shop", SPEC)
    assert mermaid.splitlines()[0] == "flowchart TD"
    assert 't1[["reserve<br/>type: work<br/>forEach"]]' in mermaid
    assert "t0 --> t1" in mermaid and "t1 --> t2" in mermaid
    assert "subgraph finally" in mermaid and "t2 -.-> t3" in mermaid
    dot = graph.dot("shop", SPEC)
    assert dot.startswith('digraph "shop" {') and dot.endswith("}")
    assert '"validate" -> "reserve";' in dot and '"charge" -> "release" [style=dashed];' in dot
    assert '"reserve" [label="reserve\\ntype: work\\nforEach", peripheries=2];' in dot


def test_retry_reuses_succeeded_plain_and_whole_foreach_tasks_only() -> None:
    status = {"tasks": [
        {"name": "validate", "phase": "Succeeded", "outputs": {"total": 3}},
        {"name": "reserve", "phase": "Succeeded", "outputs": [{"a": 1}, {"a": 2}],
         "items": {"total": 2, "succeeded": 2, "failed": 0, "running": 0}},
        {"name": "charge", "phase": "Failed"},
        {"name": "release", "phase": "Succeeded"},
    ]}
    assert reusable(status, SPEC) == {"validate": {"total": 3}, "reserve": [{"a": 1}, {"a": 2}]}
    status["tasks"][1] = {"name": "reserve", "phase": "Failed", "outputs": [{"a": 1}]}
    status["tasks"][0] = {"name": "validate", "phase": "Succeeded"}  # {} outputs are omitted
    assert reusable(status, SPEC) == {"validate": {}}


def test_a_run_manifest_is_named_or_generated() -> None:
    named = run_manifest("shop", {"n": 1}, name="r1", generate_name=None)
    assert named["metadata"] == {"name": "r1"} and "reuse" not in named["spec"]
    generated = run_manifest("shop", {}, name=None, generate_name=None, reuse={"a": {}})
    assert generated["metadata"] == {"generateName": "shop-"}
    assert generated["spec"]["reuse"] == {"a": {}}

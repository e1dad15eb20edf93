"""Fuzzed Workflows and WorkflowRuns through the models, admission (`conveyor lint`'s first two
stages) and the compiler: every input is accepted, or rejected with messages that each name
their field; nothing raises anything else, and nothing takes long.

The properties, for every object drawn (valid, one field wrong, hostile):
- `object_problems` returns (place, message, stage) and raises nothing; each message names
  its place (`spec.tasks[3].forEach`) and each place is in the object or just under it;
- a valid object has no problem, a wrong one a problem of the expected stage at the field
  made wrong;
- the pydantic models agree: what admission accepts validates, what fails validation fails
  with a ValidationError; `compile_workflow` raises nothing but InvalidSpecError;
- a check costs at most BOUND seconds of CPU.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.cli import admission, lint, main
from conveyor.cli.admission import format_path
from conveyor.errors import InvalidSpecError
from conveyor.models import WorkflowRunSpec, WorkflowSpec
from conveyor.workflow import compile_workflow
from unit import fuzzing
from unit.fuzzing import HOSTILE, Mistake

BOUND = 3.0  # seconds of CPU for one object, the 10,000-task one included


def problems(obj: dict[str, Any]) -> list[tuple[admission.Path_, str, str]]:
    began = time.thread_time()
    found = admission.object_problems(obj)
    spent = time.thread_time() - began
    assert spent < BOUND, f"{spent:.1f} s of CPU"
    for path, message, stage in found:
        assert stage in ("admission", "operator"), stage
        assert path and path[0] in ("spec", "metadata", "apiVersion"), path
        assert format_path(path) in message, (path, message)
        assert len(message) < 2000, message[:300]
    return found


def models_agree(obj: dict[str, Any], accepted: bool) -> None:
    """The models (as the operator uses them) say what admission said, and only as agreed."""
    model = WorkflowSpec if obj["kind"] == "Workflow" else WorkflowRunSpec
    try:
        spec = model.model_validate(obj["spec"])
    except ValidationError:
        assert not accepted
        return
    if isinstance(spec, WorkflowSpec):
        try:
            compile_workflow(spec)
        except InvalidSpecError as error:
            assert not accepted
            assert all(p.path.startswith("spec") for p in error.problems), error.problems


@settings(max_examples=300)
@given(spec=fuzzing.valid_spec())
def test_valid_workflows_are_accepted_by_every_stage(spec: dict[str, Any]) -> None:
    obj = fuzzing.workflow(spec)
    assert problems(obj) == []
    models_agree(obj, accepted=True)


@settings(max_examples=500)
@given(mistake=st.one_of(fuzzing.almost_valid_workflow(), fuzzing.almost_valid_run()))
def test_one_field_wrong_is_rejected_by_the_right_stage_naming_that_field(
        mistake: Mistake) -> None:
    found = problems(mistake.obj)
    places = [(stage, format_path(path)) for path, _, stage in found]
    assert (mistake.stage, mistake.place) in places, found
    models_agree(mistake.obj, accepted=False)


@settings(max_examples=len(HOSTILE) * 3)
@given(case=fuzzing.hostile_workflow())
def test_hostile_workflows_are_judged_quickly_and_in_words_that_name_the_field(
        case: tuple[str, dict[str, Any]]) -> None:
    label, obj = case
    found = problems(obj)
    must_fail = not label.startswith(("MiB-inputs", "unicode-keys", "costly-"))
    if must_fail:
        assert found, label
    models_agree(obj, accepted=not found)


@pytest.mark.parametrize(("label", "mutate"), HOSTILE, ids=[label for label, _ in HOSTILE])
def test_each_hostile_shape_through_lint_gives_findings_at_lines(label: str, mutate: Any
                                                                 ) -> None:
    """The same shapes as text through `conveyor lint`: findings, never a crash."""
    spec = {"taskTypes": [{"name": "pool0", "image": fuzzing.IMAGE}],
            "tasks": [{"name": "t0", "type": "pool0"}]}
    mutate(spec)
    began = time.thread_time()
    findings, checked = lint.lint_text(fuzzing.as_json_text(fuzzing.workflow(spec)), "h.json")
    assert time.thread_time() - began < BOUND * 2
    assert checked == 1 or findings
    assert all(f.line >= 1 and f.stage in ("yaml", "admission", "operator") for f in findings)


@settings(max_examples=600)
@given(text=st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from(["apiVersion: conveyor.dev/v1alpha1\nkind: Workflow\n",
                               "kind: List\nitems:\n- ", "&a [*a]\n", "{a: &b [*b, 1]}",
                               "a: !!binary aGk=\n", "? [1]\n: x\n", "- " * 50]),
              st.text(max_size=200)),
))
def test_any_text_gets_findings_or_nothing_never_a_crash(text: str) -> None:
    findings, _ = lint.lint_text(text, "any.yaml")
    assert all(f.line >= 1 for f in findings)


def test_aliases_that_expand_past_a_million_values_are_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    began = time.thread_time()
    findings, _ = lint.lint_text("\n".join(lines) + "\n", "laughs.yaml")
    assert time.thread_time() - began < BOUND
    assert [f.stage for f in findings] == ["yaml"]
    assert "excessive aliasing" in findings[0].message


def test_a_file_that_is_not_utf8_is_one_finding(tmp_path: Any, capsys: Any) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"kind: Workflow\nname: \xff\xfe\n")
    assert main(["lint", str(bad)]) == 1
    assert "not UTF-8" in capsys.readouterr().out

"""`conveyor lint`: each broken manifest gets the API server's or the operator's words, at the
line of the problem."""

import json

import pytest
import yaml

from conveyor.cli import admission, lint, main
from unit.cli_manifests import CASES, HEAD, manifest


@pytest.mark.parametrize(("name", "tasks", "line", "stage", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_each_broken_manifest_gets_one_precise_finding(name, tasks, line, stage, message):  # type: ignore[no-untyped-def]
    findings, checked = lint.lint_text(manifest(tasks), f"{name}.yaml")
    assert checked == 1
    assert [(f.line, f.stage) for f in findings] == [(line, stage)], findings
    if message is None:
        assert findings[0].message.startswith("spec.tasks[0].when: expression "
                                              "'inputs.go &&': ")
    else:
        assert findings[0].message == message
    assert str(findings[0]).startswith(f"{name}.yaml:{line}: [{stage}] ")


def test_a_valid_manifest_and_the_example_have_no_findings() -> None:
    assert lint.lint_text(manifest("- {name: a, type: work}\n"), "ok.yaml") == ([], 1)
    with open("examples/order-fulfilment.yaml") as example:
        assert lint.lint_text(example.read(), "example.yaml")[0] == []


def test_schema_errors_stop_the_cel_rules_as_the_api_server_does() -> None:
    text = manifest("- {name: a, type: nope, timeoutSeconds: 0}\n")
    findings, _ = lint.lint_text(text, "f.yaml")
    assert [f.message for f in findings] == [
        "spec.tasks[0].timeoutSeconds: Invalid value: 0: spec.tasks[0].timeoutSeconds in body "
        "should be greater than or equal to 1"]


def test_runs_lists_and_several_documents_are_checked_and_other_kinds_skipped() -> None:
    text = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
            "apiVersion: v1\nkind: List\nitems:\n"
            "- apiVersion: conveyor.dev/v1alpha1\n  kind: WorkflowRun\n  metadata: {name: r}\n"
            "  spec:\n    workflowRef: {}\n    cancel: \"yes\"\n")
    findings, checked = lint.lint_text(text, "r.yaml")
    assert checked == 1
    assert [(f.line, f.message) for f in findings] == [
        (12, "spec.workflowRef.name: Required value"),
        (13, 'spec.cancel: Invalid value: "string": spec.cancel in body must be of type '
             'boolean: "string"'),
    ]


def test_invalid_yaml_is_reported_at_its_line() -> None:
    findings, _ = lint.lint_text(HEAD + "  - {name: a, type: work\n", "y.yaml")
    assert len(findings) == 1 and findings[0].stage == "yaml" and findings[0].line >= 10


def test_locate_maps_a_place_to_the_line_of_its_node() -> None:
    node = yaml.compose(manifest("- name: a\n  type: work\n  dependsOn:\n  - x\n  - y\n"))
    assert lint.locate(node, admission.parse_path("spec.tasks[0].dependsOn[1]")) == 14
    assert lint.locate(node, admission.parse_path("spec.tasks[0].missing")) == 10
    assert admission.format_path(admission.parse_path("spec.tasks[2].dependsOn")) == \
        "spec.tasks[2].dependsOn"


def test_the_command_exits_1_on_problems_and_0_when_clean(tmp_path, capsys):  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest("- {name: a, type: nope}\n"))
    good = tmp_path / "good.yaml"
    good.write_text(manifest("- {name: a, type: work}\n"))
    assert main(["lint", str(good)]) == 0
    assert main(["lint", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{bad}:9: [admission] spec.tasks: Invalid value:")
    assert main(["lint", "-o", "json", str(bad)]) == 1
    assert json.loads(capsys.readouterr().out)[0]["line"] == 9
    assert main(["lint", str(tmp_path / "absent.yaml")]) == 1

"""`conveyor schedules` (the table from spec and status) and `conveyor lint` on schedules:
a bad cron or zone is named at its field, at admission where CEL can tell, else by the
operator's check."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.cli import lint
from conveyor.cli.schedules import rows, view

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)

MANIFEST = """\
apiVersion: conveyor.dev/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  taskTypes: [{name: a, image: example.com/w:1}]
  tasks: [{name: t, type: a}]
  schedules:
"""


def workflow(schedules: list[dict[str, object]], status: list[dict[str, object]]
             ) -> dict[str, object]:
    return {"metadata": {"name": "wf"}, "spec": {"schedules": schedules},
            "status": {"schedules": status}}


def test_rows_show_the_next_time_in_the_zone_and_the_last_run() -> None:
    found = rows([workflow(
        [{"name": "kolkata", "cron": "*/5 * * * *", "timeZone": "Asia/Kolkata"},
         {"name": "off", "cron": "* * * * *", "suspend": True}],
        [{"name": "kolkata", "lastScheduleTime": "2026-12-02T11:55:00Z",
          "lastRun": "wf-kolkata-202612021155",
          "lastSkipped": {"scheduleTime": "2026-12-02T11:50:00Z", "reason": "Forbidden"}}])],
        NOW)
    assert [r["schedule"] for r in found] == ["kolkata", "off"]
    assert found[0]["next"] == "2026-12-02T12:05:00+00:00"
    assert found[1]["next"] is None
    shown = view(found, NOW)
    assert "2026-12-02 17:35 +0530 (in 4m30s)" in shown  # 12:05 UTC, in Kolkata's time
    assert "2026-12-02 17:25 +0530 (5m30s ago)" in shown
    assert "wf-kolkata-202612021155" in shown
    assert "Forbidden" in shown
    off = shown.splitlines()[2]
    assert off.split()[-3:] == ["yes", "Allow", "-"]


def test_a_schedule_the_operator_would_refuse_says_why() -> None:
    found = rows([workflow([{"name": "s", "cron": "* * * * *", "timeZone": "Nowhere/Atlantis"}],
                           [])], NOW)
    assert "invalid: 'Nowhere/Atlantis' is not a known IANA time zone" in view(found, NOW)


def test_lint_names_the_field_of_a_bad_cron_or_zone() -> None:
    text = MANIFEST + """\
  - {name: short, cron: "* * *"}
  - {name: shape, cron: "* * * * *", timeZone: "not a zone"}
"""
    findings, _ = lint.lint_text(text, "f.yaml")
    assert [(f.line, f.stage) for f in findings] == [(8, "admission"), (9, "admission")]
    assert findings[0].message.startswith("spec.schedules[0].cron: Invalid value: ")
    assert "five cron fields" in findings[0].message
    assert findings[1].message.startswith("spec.schedules[1].timeZone: Invalid value: ")
    text = MANIFEST + """\
  - {name: minute, cron: "61 * * * *", timeZone: Mars/Olympus}
"""
    findings, _ = lint.lint_text(text, "f.yaml")
    assert [str(f) for f in findings] == [
        "f.yaml:8: [operator] spec.schedules[0].cron: '61 * * * *': Bad minute",
        "f.yaml:8: [operator] spec.schedules[0].timeZone: 'Mars/Olympus' is not a known IANA "
        "time zone"]


def test_lint_refuses_two_schedules_of_one_name() -> None:
    text = MANIFEST + """\
  - {name: s, cron: "* * * * *"}
  - {name: s, cron: "0 * * * *"}
"""
    findings, _ = lint.lint_text(text, "f.yaml")
    assert len(findings) == 1
    assert "spec.schedules[1]" in findings[0].message

"""Cron schedules on the test bed: a schedule read in Asia/Kolkata (UTC+05:30) starts exactly
one run per due time while two operator processes run (the standby never acts), across the
leader's death (the standby takes over) and across an outage with no operator at all: the
missed due time is caught up within its deadline and skipped past it; Forbid never lets two
runs of its schedule overlap; history limits delete the oldest finished runs; admission
refuses a cron of the wrong shape naming the field; `conveyor schedules` shows them.

One test for all of it: every-minute schedules cost a minute per case, so the cases share the
minutes (about six in all)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conveyor import names
from support.kube import local_testbed_only
from support.operator import OperatorProcess, operator_process
from support.waiting import eventually
from support.workflows import as_json, workflow

pytestmark = pytest.mark.e2e

KOLKATA = ZoneInfo("Asia/Kolkata")
WORKFLOW = "tick"


def _kolkata_hours(now: datetime) -> str:
    """The hours Kolkata's clock shows over the next twenty minutes: a cron of these hours
    is due every minute of the test if, and only if, it is read in Kolkata (UTC's hours then
    are five or six away)."""
    hours = {(now + timedelta(minutes=m)).astimezone(KOLKATA).hour for m in range(0, 21, 5)}
    return ",".join(str(h) for h in sorted(hours))


def _schedule(name: str, cron: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return {"name": name, "cron": cron, "timeZone": "Asia/Kolkata",
            "inputs": {"seconds": seconds, "at": "${{ schedule.time }}"}, **fields}


def _runs(kubectl, schedule: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    items = json.loads(kubectl("get", "cwr", "-l", f"{names.LABEL_SCHEDULE}={schedule}",
                               "-o", "json"))["items"]
    return [r for r in items if not r["metadata"].get("deletionTimestamp")]


def _status(kubectl) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    body = json.loads(kubectl("get", "cwf", WORKFLOW, "-o", "json"))
    return {e["name"]: e for e in (body.get("status") or {}).get("schedules") or []}


def _minute(due: datetime) -> str:
    return due.astimezone(UTC).strftime("%Y%m%d%H%M")


def _run_name(schedule: str, due: datetime) -> str:
    return f"{WORKFLOW}-{schedule}-{_minute(due)}"


def _next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _wait_for_the_clock(moment: datetime) -> None:
    """What the outage case waits for is the wall clock itself: a due time to pass with no
    operator, and then its deadline."""
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def _created(logs: list[OperatorProcess]) -> list[str]:
    """Every run an operator created (not found existing), over all their logs."""
    return [m.group(1) for p in logs for m in
            re.finditer(r"Scheduled run created run=\S+/(\S+)", p.tail(100_000))]


@local_testbed_only
@pytest.mark.timeout(720)
def test_each_due_time_starts_one_run_across_replicas_restart_and_outage(
    operator, kubectl, cluster, amqp_url, namespace, tmp_path: Path
):
    # Admission refuses a cron of four fields, naming the field.
    bad = workflow("bad", [{"name": "t", "type": "work"}],
                   schedules=[{"name": "s", "cron": "* * * *"}])
    refused = subprocess.run(["kubectl", "-n", namespace, "apply", "-f", "-"],
                             input=as_json(bad), env=cluster.env(), capture_output=True,
                             text=True, check=False)
    assert refused.returncode != 0
    assert "spec.schedules[0].cron" in refused.stderr and "five cron fields" in refused.stderr

    eventually(lambda: "Leader lease acquired" in operator.tail(), 30, what="a leader")
    standby = operator_process(cluster, amqp_url, namespace, tmp_path / "standby.log")
    standby.start()
    third: OperatorProcess | None = None
    try:
        eventually(lambda: "Waiting for the leader lease" in standby.tail(), 30,
                   what="the second replica to stand by")
        cron = f"* {_kolkata_hours(datetime.now(UTC))} * * *"
        wf = workflow(WORKFLOW, [{"name": "t", "type": "work",
                                  "inputs": {"seconds": "${{ inputs.seconds }}",
                                             "echo": "${{ inputs.at }}"}}],
                      schedules=[
                          _schedule("every", cron, 0, startingDeadlineSeconds=100,
                                    successfulRunsHistoryLimit=50),
                          _schedule("strict", cron, 0, startingDeadlineSeconds=15,
                                    successfulRunsHistoryLimit=1),
                          _schedule("forbid", cron, 70, concurrencyPolicy="Forbid",
                                    successfulRunsHistoryLimit=50),
                      ])
        kubectl("apply", "-f", "-", stdin=as_json(wf))
        recorded = eventually(lambda: len(_status(kubectl)) == 3 and _status(kubectl), 30,
                              what="the schedules' next due times in status")
        first = _time(recorded["every"]["nextScheduleTime"])
        assert first is not None and first.second == 0

        # Two due times with two operator processes up: the leader starts them.
        eventually(lambda: len(_runs(kubectl, "every")) >= 2, 150,
                   what="two due times' runs")
        assert "Scheduled run" not in standby.tail(100_000), "the standby must not act"

        # The leader dies: the standby takes over and goes on from the recorded status.
        operator.kill()
        eventually(lambda: "Leader lease expired; taking over" in standby.tail(), 60,
                   what="the standby to take over")
        after_takeover = _next_minute(datetime.now(UTC))
        eventually(lambda: any(r["metadata"]["name"] == _run_name("every", after_takeover)
                               for r in _runs(kubectl, "every")), 90,
                   what="the new leader's first due time")

        # No operator at all across a due time, and past strict's deadline (15 s) but within
        # every's (100 s): a new operator starts every's and skips strict's.
        standby.stop()
        missed = _next_minute(datetime.now(UTC))
        _wait_for_the_clock(missed + timedelta(seconds=30))
        third = operator_process(cluster, amqp_url, namespace, tmp_path / "third.log")
        third.start()
        eventually(lambda: any(r["metadata"]["name"] == _run_name("every", missed)
                               for r in _runs(kubectl, "every")), 60,
                   what="the missed due time to be caught up")

        def strict_skipped() -> bool:
            skipped = _status(kubectl)["strict"].get("lastSkipped") or {}
            return (skipped.get("reason") == "DeadlineExceeded"
                    and _time(skipped.get("scheduleTime")) == missed)
        eventually(strict_skipped, 30, what="strict's missed due time skipped")

        logs = [operator, standby, third]
        assert _run_name("strict", missed) not in _created(logs)
        _one_run_per_due_time(kubectl, logs, first, missed)
        _forbid_never_overlapped(kubectl, logs)
        _history_kept(kubectl, logs)
        _listed(cluster, namespace)
    finally:
        standby.stop()
        if third is not None:
            third.stop()


def _one_run_per_due_time(kubectl, logs: list[OperatorProcess],  # type: ignore[no-untyped-def]
                          first: datetime, missed: datetime) -> None:
    """Every minute from the first due time to the missed one has its run, created once over
    the three operators' logs (the others found it there)."""
    every = sorted(r["metadata"]["name"] for r in _runs(kubectl, "every"))
    minutes = int((missed - first).total_seconds() // 60) + 1
    expected = [_run_name("every", first + timedelta(minutes=m)) for m in range(minutes)]
    assert [n for n in every if n <= expected[-1]] == expected
    created = _created(logs)
    assert all(created.count(n) == 1 for n in expected), created


def _forbid_never_overlapped(kubectl, logs: list[OperatorProcess]) -> None:  # type: ignore[no-untyped-def]
    """Forbid's runs never ran at once, and a due time was skipped while one ran."""
    spans = sorted((_time(r["status"].get("startedAt")) or datetime.max.replace(tzinfo=UTC),
                    _time(r["status"].get("finishedAt")) or datetime.now(UTC))
                   for r in _runs(kubectl, "forbid") if (r.get("status") or {}).get("startedAt"))
    assert len(spans) >= 2
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    assert re.search(r"schedule=forbid due=\S+ reason=Forbidden",
                     "".join(p.tail(100_000) for p in logs))


def _history_kept(kubectl, logs: list[OperatorProcess]) -> None:  # type: ignore[no-untyped-def]
    """strict keeps one succeeded run: the older ones were deleted."""
    eventually(lambda: sum((r.get("status") or {}).get("phase") == "Succeeded"
                           for r in _runs(kubectl, "strict")) <= 1, 60,
               what="strict's history limit")
    assert re.search(r"reason=history limit workflow=\S+ schedule=strict",
                     "".join(p.tail(100_000) for p in logs))


def _listed(cluster, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """`conveyor schedules` shows the next due time in Kolkata's offset, and the last run."""
    shown = subprocess.run([sys.executable, "-m", "conveyor.cli", "schedules", WORKFLOW,
                            "-n", namespace], env=cluster.env(), capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert re.search(r"every .* Asia/Kolkata .* no .* Allow .*\+0530 \(in \d+s\)", shown), shown
    assert re.search(r"forbid .* Forbid ", shown), shown

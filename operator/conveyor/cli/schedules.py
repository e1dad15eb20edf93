"""`conveyor schedules [WORKFLOW]`: every schedule of the namespace's Workflows (or of one),
its next due time (computed here from the spec, in the schedule's zone), and what the
operator last did with it (from `status.schedules`): the last run, the last skip."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from conveyor import names
from conveyor.cli.common import OK, Cluster, kube_failed
from conveyor.cli.render import dump, duration, table
from conveyor.cli.runs import fetch
from conveyor.kube import KubeError
from conveyor.models import Schedule
from conveyor.schedules import next_time, parse_time, problems, zone

HEADERS = ["WORKFLOW", "SCHEDULE", "CRON", "TIME ZONE", "SUSPENDED", "POLICY", "NEXT",
           "LAST SCHEDULE", "LAST RUN", "LAST SKIPPED"]


def rows(workflows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """One record per schedule, in Workflow then spec order."""
    found = []
    for workflow in workflows:
        recorded = {e.get("name"): e for e in
                    (workflow.get("status") or {}).get("schedules") or []}
        for raw in (workflow.get("spec") or {}).get("schedules") or []:
            entry = recorded.get(raw.get("name"), {})
            found.append({"workflow": workflow["metadata"]["name"], **_schedule(raw, now),
                          "lastScheduleTime": entry.get("lastScheduleTime"),
                          "lastRun": entry.get("lastRun"),
                          "lastSkipped": entry.get("lastSkipped")})
    return found


def _schedule(raw: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The spec's fields, and its next due time (None: suspended, or the spec is bad)."""
    shown = {"schedule": raw.get("name"), "cron": raw.get("cron"),
             "timeZone": raw.get("timeZone", "UTC"), "suspend": bool(raw.get("suspend")),
             "concurrencyPolicy": raw.get("concurrencyPolicy", "Allow"), "next": None,
             "problem": None}
    try:
        schedule = Schedule.model_validate(raw)
    except ValidationError as error:
        shown["problem"] = str(error.errors()[0]["msg"])
        return shown
    found = problems(schedule, "schedule")
    if found:
        shown["problem"] = found[0].message
    elif not schedule.suspend:
        upcoming = next_time(schedule, now)
        shown["next"] = None if upcoming is None else upcoming.isoformat()
    return shown


def _when(text: str | None, zone_name: str, now: datetime) -> str:
    """`2026-12-02 18:01 +0530 (in 42s)`: a time in the schedule's zone, and how far."""
    moment = parse_time(text)
    if moment is None:
        return ""
    try:
        local = moment.astimezone(zone(zone_name))
    except ValueError:
        local = moment
    seconds = int((moment - now).total_seconds())
    relative = f"in {duration(seconds)}" if seconds >= 0 else f"{duration(-seconds)} ago"
    return f"{local:%Y-%m-%d %H:%M %z} ({relative})"


def view(records: list[dict[str, Any]], now: datetime) -> str:
    lines = []
    for r in records:
        skipped = r.get("lastSkipped") or {}
        nxt = (f"invalid: {r['problem']}" if r["problem"]
               else "-" if r["suspend"] else _when(r["next"], r["timeZone"], now))
        lines.append([r["workflow"], r["schedule"], r["cron"], r["timeZone"],
                      "yes" if r["suspend"] else "no", r["concurrencyPolicy"], nxt,
                      _when(r["lastScheduleTime"], r["timeZone"], now), r["lastRun"] or "",
                      skipped.get("reason", "")])
    return table(HEADERS, lines)


def schedules_list(args: argparse.Namespace, cluster: Cluster) -> int:
    if args.workflow:
        workflows = [fetch(cluster, names.WORKFLOW_PLURAL, args.workflow)]
    else:
        try:
            workflows = cluster.kube.list_objects(names.WORKFLOW_PLURAL, cluster.namespace)
        except KubeError as error:
            raise kube_failed(error) from error
        workflows.sort(key=lambda w: str(w["metadata"]["name"]))
    now = datetime.now(UTC)
    records = rows(workflows, now)
    if args.output != "table":
        print(dump(records, args.output))
        return OK
    if not records:
        print(f"No schedules in namespace {cluster.namespace}.", file=sys.stderr)
        return OK
    print(view(records, now))
    return OK


def add_parser(verbs: argparse._SubParsersAction[Any], common: argparse.ArgumentParser,
               output: argparse.ArgumentParser) -> None:
    listing = verbs.add_parser(
        "schedules", parents=[common, output],
        help="list the Workflows' cron schedules: next due time, last run, suspended")
    listing.add_argument("workflow", nargs="?", help="only this Workflow's schedules")
    listing.set_defaults(handler=schedules_list)

"""Cron schedules, pure: which due times start a run, which are skipped, which runs go.

`decide(schedule, after, now, runs)` is the whole policy; the operator's controller gives it
the cursor it recorded in the Workflow status (`after`: due times strictly later are owed),
the clock, and the runs of the schedule that exist, and carries out the `Decision`.

Rules:
- The calendar is `cronsim`'s (it follows Debian's cron, DST included: a due time the clock
  skips falls due when the clock jumps past it; an hour that happens twice runs a fixed-hour
  expression once, a wildcard or stepped hour once per occurrence). Due times are read in the
  schedule's IANA zone and handled as UTC instants.
- Owed due times are those in (after, now]. With `startingDeadlineSeconds`, those at most
  that old start (the latest MAX_CATCH_UP of them); without it, only the latest starts, as a
  CronJob. The older ones are skipped, `DeadlineExceeded`.
- `suspend`: every owed due time is skipped, `Suspended`; resuming starts none of them.
- `Forbid`: while a run of the schedule is unfinished, owed due times are skipped,
  `Forbidden`; otherwise only the latest starts (`Superseded` the others, which would run at
  once beside it). `Replace`: the latest starts, the unfinished runs are deleted, the
  others are `Superseded`.
- History: finished runs beyond `successfulRunsHistoryLimit` (Succeeded) and
  `failedRunsHistoryLimit` (Failed, Cancelled) are deleted, the oldest due times first.
- A due time's run is named from the Workflow, the schedule and the due time
  (`manifests.scheduled_run_name`), so starting it twice is harmless: the second create is
  refused (409).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor.errors import Problem
from conveyor.models import Schedule

MAX_CATCH_UP = 100  # most missed due times one evaluation starts; older ones are skipped
FIELDS = 5
FINISHED = {"Succeeded": "successful", "Failed": "failed", "Cancelled": "failed"}

SkipReason = Literal["Forbidden", "Suspended", "DeadlineExceeded", "Superseded",
                     "InputsFailed", "Refused", "NameTaken"]


@dataclass(frozen=True)
class ScheduledRun:
    """A run of the schedule as the API server has it."""

    name: str
    schedule_time: datetime
    phase: str | None  # None: not yet written by the operator (it is not finished)
    uid: str | None = None


@dataclass(frozen=True)
class Skip:
    """Due times that start no run: the latest of them, and how many."""

    schedule_time: datetime
    reason: SkipReason
    message: str


@dataclass(frozen=True)
class Decision:
    """What one evaluation of a schedule wants done; times are UTC."""

    start: tuple[datetime, ...] = ()  # oldest first
    skipped: tuple[Skip, ...] = ()  # at most one per reason
    delete: tuple[ScheduledRun, ...] = ()  # Replace's unfinished runs, then history
    next_time: datetime | None = None
    cursor: datetime | None = None  # due times strictly later remain owed
    replaced: tuple[str, ...] = ()  # names among `delete` that Replace ends


def problems(schedule: Schedule, path: str) -> list[Problem]:
    """What admission could not reject: an expression cron cannot read, a zone that does not
    exist."""
    found: list[Problem] = []
    if len(schedule.cron.split()) != FIELDS:
        found.append(Problem(f"{path}.cron", f"{schedule.cron!r} must have five fields "
                             "(minute hour day-of-month month day-of-week)"))
    else:
        try:
            CronSim(schedule.cron, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as error:
            found.append(Problem(f"{path}.cron", f"{schedule.cron!r}: {error}"))
    try:
        zone(schedule.time_zone)
    except ValueError as error:
        found.append(Problem(f"{path}.timeZone", str(error)))
    return found


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"{name!r} is not a known IANA time zone") from error


def due_after(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Due times strictly after `after`, in UTC, ascending."""
    for due in CronSim(schedule.cron, after.astimezone(zone(schedule.time_zone))):
        yield due.astimezone(UTC)


def due_before(schedule: Schedule, until: datetime) -> Iterator[datetime]:
    """Due times at or before `until`, in UTC, descending."""
    # cronsim's reverse iteration is strictly before its start; a microsecond on makes
    # `until` itself count.
    start = (until + timedelta(microseconds=1)).astimezone(zone(schedule.time_zone))
    for due in CronSim(schedule.cron, start, reverse=True):
        yield due.astimezone(UTC)


def next_time(schedule: Schedule, now: datetime) -> datetime | None:
    return next(due_after(schedule, now), None)


def decide(schedule: Schedule, after: datetime | None, now: datetime,
           runs: Sequence[ScheduledRun] = ()) -> Decision:
    """The decision for `schedule` at `now`, given the cursor `after` (None: the schedule is
    new, nothing is owed yet) and the runs of the schedule that exist."""
    after = now if after is None else min(after, now)
    owed, missed = _owed(schedule, after, now)
    skipped: list[Skip] = []
    if missed is not None:
        skipped.append(missed)
    # A run of an owed due time is that due time's own (made before a crash kept the cursor
    # from moving): it is started, not in the way of starting it.
    unfinished = [r for r in runs if r.phase not in FINISHED and r.schedule_time not in owed]
    start = owed
    replaced: list[ScheduledRun] = []
    if owed and schedule.suspend:
        skipped.append(_skip(owed, "Suspended", "the schedule is suspended"))
        start = []
    elif owed and schedule.concurrency_policy == "Forbid" and unfinished:
        names = ", ".join(sorted(r.name for r in unfinished))
        skipped.append(_skip(owed, "Forbidden", f"runs not finished: {names}"))
        start = []
    elif len(owed) > 1 and schedule.concurrency_policy in ("Forbid", "Replace"):
        skipped.append(_skip(owed[:-1], "Superseded",
                             f"concurrencyPolicy {schedule.concurrency_policy} starts only "
                             "the latest of the due times owed"))
        start = owed[-1:]
    if start and schedule.concurrency_policy == "Replace":
        replaced = unfinished
    handled = [*start, *(s.schedule_time for s in skipped)]
    return Decision(
        start=tuple(start),
        skipped=tuple(skipped),
        delete=(*replaced, *_history(schedule, runs)),
        next_time=next_time(schedule, now),
        cursor=max(handled, default=after),
        replaced=tuple(r.name for r in replaced),
    )


def _owed(schedule: Schedule, after: datetime, now: datetime) -> tuple[list[datetime],
                                                                       Skip | None]:
    """The due times in (after, now] that may still start, oldest first, and a Skip for
    those too late. Walks back from `now` so a long outage costs no more than the window."""
    deadline = schedule.starting_deadline_seconds
    most = MAX_CATCH_UP if deadline is not None else 1
    floor = after
    if deadline is not None:  # at most `deadline` old: later than a microsecond before
        floor = max(after, now - timedelta(seconds=deadline, microseconds=1))
    window = list(islice(_until(due_before(schedule, now), floor), most))
    window.reverse()
    # What else is in (after, now] was too old (or past the cap): report the latest of it.
    edge = window[0] - timedelta(microseconds=1) if window else now
    latest = next(_until(due_before(schedule, edge), after), None)
    if latest is None:
        return window, None
    first = next(due_after(schedule, after))
    return window, Skip(latest, "DeadlineExceeded",
                        f"missed due times from {time_text(first)} to {time_text(latest)} were too "
                        "late to start" + _deadline(deadline))


def _until(times: Iterator[datetime], after: datetime) -> Iterator[datetime]:
    """Descending `times` while they are later than `after`."""
    for t in times:
        if t <= after:
            return
        yield t


def _skip(times: Sequence[datetime], reason: SkipReason, message: str) -> Skip:
    count = f"{len(times)} due times" if len(times) > 1 else "due time"
    return Skip(times[-1], reason, f"{count} up to {time_text(times[-1])} skipped: {message}")


def _deadline(deadline: int | None) -> str:
    if deadline is None:
        return " (no startingDeadlineSeconds: only the latest starts)"
    return f" (startingDeadlineSeconds {deadline})"


def _history(schedule: Schedule, runs: Sequence[ScheduledRun]) -> list[ScheduledRun]:
    """Finished runs beyond the history limits, oldest first."""
    limits = {"successful": schedule.successful_runs_history_limit,
              "failed": schedule.failed_runs_history_limit}
    extra: list[ScheduledRun] = []
    for kind, limit in limits.items():
        finished = sorted((r for r in runs if FINISHED.get(r.phase or "") == kind),
                          key=lambda r: (r.schedule_time, r.name))
        extra += finished[:max(0, len(finished) - limit)]
    return sorted(extra, key=lambda r: (r.schedule_time, r.name))


def cursor(entry: Mapping[str, Any] | None) -> datetime | None:
    """Where a schedule's recorded status says to resume: after its latest handled due time,
    or just before the next due time it recorded (so that one is owed); None: nothing
    recorded, the schedule is new."""
    if not entry:
        return None
    handled = [parse_time(entry.get("lastScheduleTime")),
               parse_time((entry.get("lastSkipped") or {}).get("scheduleTime"))]
    latest = max((t for t in handled if t is not None), default=None)
    if latest is not None:
        return latest
    upcoming = parse_time(entry.get("nextScheduleTime"))
    return None if upcoming is None else upcoming - timedelta(microseconds=1)


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time of the API (`2026-12-02T13:05:00Z`) as an aware datetime."""
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def time_text(moment: datetime) -> str:
    """The API's form of a time: UTC, seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


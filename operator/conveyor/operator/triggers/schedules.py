"""`Scheduler`: the Workflows' cron schedules start runs at their due times.

One loop for every schedule the operator knows: it sleeps until the earliest next due time
(or `longest_sleep`, or a Workflow changed), asks the pure `conveyor.schedules.decide` what
is owed, and carries it out. The order is what keeps a due time to one run whatever fails:
1. runs are created under the due time's deterministic name (a 409 means an earlier attempt,
   or another replica before a failover, made it: success);
2. only then the cursor is written to the Workflow's `status.schedules` (merge-patched, that
   field alone). A crash between the two re-creates the same names: 409s.
The status is read once per Workflow, when first seen, so after a restart the due times
missed meanwhile are owed again (within each schedule's deadline). Only the leader runs this:
the whole process waits for the leader Lease before it starts (`leader.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor import names
from conveyor.errors import ExpressionError
from conveyor.kube import KubeError
from conveyor.manifests import scheduled_run, scheduled_run_name
from conveyor.operator.seams import KubeApi
from conveyor.operator.triggers.starting import create_run
from conveyor.operator.workflows import WorkflowEntry, Workflows
from conveyor.schedules import (
    Decision,
    ScheduledRun,
    Skip,
    cursor,
    decide,
    parse_time,
    time_text,
)
from conveyor.workflow import CompiledSchedule

log = logging.getLogger("conveyor.operator.schedules")

Clock = Callable[[], datetime]
RETRY_SECONDS = 2.0  # after a refused or unanswered call, the Workflow's next evaluation


@dataclass
class _Known:
    """One Workflow's schedules as recorded: the status entries by schedule name."""

    uid: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    written: list[dict[str, Any]] | None = None  # what status.schedules holds, as last written


class Scheduler:
    """Starts the runs of every schedule of the Workflows it knows; see the module."""

    def __init__(self, kube: KubeApi, workflows: Workflows, *, longest_sleep: float = 30.0,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self._kube = kube
        self._workflows = workflows
        self._longest = longest_sleep
        self._clock = clock
        self._known: dict[tuple[str, str], _Known] = {}
        # The namespaces' Workflows listed in this tick: many new Workflows (at a start) cost
        # one list per namespace, not one each.
        self._listed: dict[str, list[dict[str, Any]]] = {}
        self._wake = asyncio.Event()
        workflows.on_change(lambda _namespace, _name: self._wake.set())

    async def run(self) -> None:
        while True:
            self._wake.clear()
            upcoming = await self.tick()
            pause = self._longest
            if upcoming is not None:
                # A hair past the due time, so the next tick finds it owed.
                pause = min(pause, max(0.0, (upcoming - self._clock()).total_seconds()) + 0.05)
            with contextlib.suppress(TimeoutError):  # a due time, or the longest sleep
                await asyncio.wait_for(self._wake.wait(), pause)

    async def tick(self) -> datetime | None:
        """Evaluate every schedule once; the earliest next due time among them."""
        upcoming: list[datetime] = []
        live = set()
        self._listed = {}
        for entry in self._workflows.entries():
            compiled = entry.compiled
            if compiled is None or not compiled.schedules:
                continue
            key = (entry.owner.namespace, entry.owner.name)
            live.add(key)
            try:
                upcoming += await self._evaluate(entry, compiled.schedules)
            except KubeError as error:
                # Tried again soon; the other Workflows' schedules do not wait for this one.
                log.warning("Schedules not evaluated workflow=%s/%s error=%s", *key, error)
                upcoming.append(self._clock() + timedelta(seconds=RETRY_SECONDS))
        for gone in set(self._known) - live:
            del self._known[gone]
        return min(upcoming, default=None)

    async def _evaluate(self, entry: WorkflowEntry,
                        schedules: Sequence[CompiledSchedule]) -> list[datetime]:
        owner = entry.owner
        known = await self._recorded(entry)
        if known is None:
            return []
        runs: dict[str, list[ScheduledRun]] | None = None
        upcoming = []
        for schedule in schedules:
            spec = schedule.spec
            now = self._clock()
            recorded = known.entries.get(spec.name)
            decision = decide(spec, cursor(recorded), now)
            if decision.start or decision.skipped:  # something is owed: the runs matter
                if runs is None:
                    runs = await self._runs(owner.namespace, owner.name)
                decision = decide(spec, cursor(recorded), now, runs.get(spec.name, []))
                decision = await self._carry_out(entry, schedule, decision)
            known.entries[spec.name] = _entry(owner.name, spec.name, recorded, decision)
            if decision.next_time is not None:
                upcoming.append(decision.next_time)
        order = [s.spec.name for s in schedules]
        for gone in set(known.entries) - set(order):
            # Removed from the spec: added again later, it starts anew, as after a restart.
            del known.entries[gone]
        await self._write(entry, known, order)
        return upcoming

    async def _recorded(self, entry: WorkflowEntry) -> _Known | None:
        """The schedules' status entries: read once per Workflow (uid), kept after."""
        owner = entry.owner
        key = (owner.namespace, owner.name)
        known = self._known.get(key)
        if known is not None and known.uid == owner.uid:
            return known
        found = self._listed.get(owner.namespace)
        if found is None:
            found = await self._kube.list_custom("workflows", owner.namespace)
            self._listed[owner.namespace] = found
        body = next((w for w in found if w["metadata"].get("uid") == owner.uid), None)
        if body is None:
            return None  # deleted meanwhile, or not yet listed: the next tick tries again
        status = (body.get("status") or {}).get("schedules") or []
        known = _Known(owner.uid, {e["name"]: e for e in status if e.get("name")}, status)
        self._known[key] = known
        return known

    async def _runs(self, namespace: str, workflow: str) -> dict[str, list[ScheduledRun]]:
        """The Workflow's scheduled runs, by schedule (from their label)."""
        found = await self._kube.list_custom(names.RUN_PLURAL, namespace)
        runs: dict[str, list[ScheduledRun]] = {}
        for body in found:
            meta = body.get("metadata") or {}
            labels = meta.get("labels") or {}
            if labels.get(names.LABEL_WORKFLOW) != workflow or names.LABEL_SCHEDULE not in labels:
                continue
            if meta.get("deletionTimestamp"):
                continue  # deleted already (its finalizer still runs): history no more
            due = parse_time((meta.get("annotations") or {}).get(
                names.ANNOTATION_SCHEDULE_TIME))
            if due is None:
                continue
            runs.setdefault(labels[names.LABEL_SCHEDULE], []).append(ScheduledRun(
                meta["name"], due, (body.get("status") or {}).get("phase"), meta.get("uid")))
        return runs

    async def _made_here(self, namespace: str, name: str, workflow: str, schedule: str,
                         due: datetime) -> bool:
        """Whether the run `name` that exists already is this due time's: made by an earlier
        attempt (or replica), not a run that another Workflow's schedule named the same
        (`a-b` + `c` and `a` + `b-c` join to one name). Gone meanwhile counts as made."""
        for body in await self._kube.list_custom(names.RUN_PLURAL, namespace):
            meta = body.get("metadata") or {}
            if meta.get("name") != name:
                continue
            labels = meta.get("labels") or {}
            stamped = parse_time((meta.get("annotations") or {}).get(
                names.ANNOTATION_SCHEDULE_TIME))
            return (labels.get(names.LABEL_WORKFLOW) == workflow
                    and labels.get(names.LABEL_SCHEDULE) == schedule and stamped == due)
        return True

    async def _carry_out(self, entry: WorkflowEntry, schedule: CompiledSchedule,
                         decision: Decision) -> Decision:
        """Deletions (Replace's first), then the runs, oldest due time first; a due time
        whose inputs fail to render is skipped with the expression's error."""
        owner, spec = entry.owner, schedule.spec
        where = f"workflow={owner.namespace}/{owner.name} schedule={spec.name}"
        for run in decision.delete:
            why = "replaced" if run.name in decision.replaced else "history limit"
            try:
                await self._kube.delete_run(owner.namespace, run.name, run.uid)
            except KubeError as error:
                if error.retryable:
                    raise
                # A refusal for good (forbidden, say) must not hold the schedule's due times.
                log.warning("Scheduled run not deleted run=%s/%s reason=%s %s error=%s",
                            owner.namespace, run.name, why, where, error)
                continue
            log.info("Scheduled run deleted run=%s/%s reason=%s %s", owner.namespace,
                     run.name, why, where)
        started = []
        skipped = list(decision.skipped)
        for due in decision.start:
            try:
                inputs = schedule.inputs.render(
                    {"schedule": {"name": spec.name, "time": time_text(due)}})
            except ExpressionError as error:
                skipped.append(Skip(due, "InputsFailed", str(error)[:1000]))
                log.warning("Scheduled run not started: its inputs failed %s due=%s "
                            "error=%s", where, time_text(due), error)
                continue
            body = scheduled_run(owner.name, spec.name, due,
                                 inputs if isinstance(inputs, dict) else {"value": inputs})
            name = body["metadata"]["name"]
            try:
                created = await create_run(self._kube, owner.namespace, body)
            except KubeError as error:
                if error.retryable:
                    raise  # the Workflow is evaluated again in RETRY_SECONDS
                skipped.append(Skip(due, "Refused", str(error)[:1000]))
                log.warning("Scheduled run refused run=%s/%s %s due=%s error=%s",
                            owner.namespace, name, where, time_text(due), error)
                continue
            if created:
                log.info("Scheduled run created run=%s/%s %s due=%s", owner.namespace, name,
                         where, time_text(due))
            elif await self._made_here(owner.namespace, name, owner.name, spec.name, due):
                log.info("Scheduled run exists run=%s/%s %s due=%s", owner.namespace, name,
                         where, time_text(due))
            else:
                skipped.append(Skip(due, "NameTaken", f"a WorkflowRun named {name} exists "
                                    "that this schedule did not start"))
                log.warning("Scheduled run name taken run=%s/%s %s due=%s", owner.namespace,
                            name, where, time_text(due))
                continue
            started.append(due)
        for skip in decision.skipped:
            log.info("Scheduled due time skipped %s due=%s reason=%s message=%s", where,
                     time_text(skip.schedule_time), skip.reason, skip.message)
        return Decision(start=tuple(started), skipped=tuple(skipped), delete=decision.delete,
                        next_time=decision.next_time, cursor=decision.cursor,
                        replaced=decision.replaced)

    async def _write(self, entry: WorkflowEntry, known: _Known, order: list[str]) -> None:
        """status.schedules in the spec's order, written when it changed; a failed write is
        tried again at the next tick (the runs it records exist: their names say so)."""
        wanted = [known.entries[name] for name in order if name in known.entries]
        if wanted == known.written:
            return
        owner = entry.owner
        await self._kube.patch_status("workflows", owner.namespace, owner.name,
                                      {"schedules": wanted})
        known.written = wanted


def _entry(workflow: str, name: str, recorded: Mapping[str, Any] | None,
           decision: Decision) -> dict[str, Any]:
    """The schedule's status entry after `decision`."""
    entry: dict[str, Any] = dict(recorded or {})
    entry["name"] = name
    if decision.start:
        latest = decision.start[-1]
        entry["lastScheduleTime"] = time_text(latest)
        entry["lastRun"] = scheduled_run_name(workflow, name, latest)
    if decision.skipped:
        latest_skip = max(decision.skipped, key=lambda s: s.schedule_time)
        entry["lastSkipped"] = {"scheduleTime": time_text(latest_skip.schedule_time),
                                "reason": latest_skip.reason,
                                "message": latest_skip.message[:1024]}
    if decision.next_time is not None:
        entry["nextScheduleTime"] = time_text(decision.next_time)
    else:
        entry.pop("nextScheduleTime", None)
    return entry

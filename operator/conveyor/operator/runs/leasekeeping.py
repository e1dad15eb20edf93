"""Keeping the leases of leases.py against the live runs: every `interval` seconds, unless
the operator cannot hear its workers right now, each lost attempt is dispatched again."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping

from conveyor import engine
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs.acting import Actor
from conveyor.operator.runs.leases import Leases
from conveyor.operator.runs.records import ActiveRun
from conveyor.operator.seams import BrokerLink

log = logging.getLogger("conveyor.operator.runs")

PoolKey = tuple[str, str, str]  # namespace, workflow, task type


class LeaseKeeper:
    """Checks the leases of every run the operator holds; see leases.py for the rule."""

    def __init__(self, runs: Mapping[str, ActiveRun], actor: Actor, leases: Leases,
                 link: BrokerLink, metrics: Metrics, *,
                 emptied_at: Callable[[PoolKey], float | None],
                 unread_events: Callable[[], Awaitable[int | None]],
                 unread_limit: int, interval: float) -> None:
        self._runs = runs
        self._actor = actor
        self._leases = leases
        self._link = link
        self._metrics = metrics
        self._emptied_at = emptied_at  # when a pool's queue was last seen with none ready
        self._unread_events = unread_events  # ready in the operator's events queue; None: ?
        self._unread_limit = unread_limit
        self.interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the period of the check, not a wait on state
            await self.check()

    async def check(self) -> int:
        """One look at every run; returns how many attempts were dispatched again."""
        leases = self._leases
        if not self._link.connected:
            leases.deaf(leases.now())
            return 0
        unread = await self._unread_events()
        if unread is None or unread > self._unread_limit:
            leases.deaf(leases.now())
            return 0
        now = leases.now()
        in_flight: set[str] = set()
        total = 0
        for uid, run in list(self._runs.items()):
            state = run.state
            if state is None:
                continue
            leases.hold(uid, now)
            attempts = list(engine.in_flight(state))
            in_flight.update(attempt[0] for attempt in attempts)
            ref = run.ref
            lost = leases.lost(uid, attempts, now,
                               functools.partial(self._type_emptied_at, ref.namespace,
                                                 ref.workflow))
            for attempt_id in lost:
                leases.renew(attempt_id, now)
                self._actor.apply(run, engine.TaskLost(attempt_id))
            if lost:
                total += len(lost)
                self._metrics.redispatched.inc(len(lost))
                log.warning("Dispatched again attempts whose messages were lost run=%s/%s "
                            "count=%d first=%s lease=%.0fs", ref.namespace, ref.name,
                            len(lost), lost[0], leases.lease_seconds)
        leases.keep_only(in_flight, set(self._runs))
        return total

    def _type_emptied_at(self, namespace: str, workflow: str, task_type: str) -> float | None:
        return self._emptied_at((namespace, workflow, task_type))

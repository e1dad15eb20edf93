"""Leases on in-flight attempts: why a run never waits on nothing.

A Queued or Running attempt stands for a message somewhere: in its task type's queue, held by
a worker, or an event of the worker's on its way back. Any of them can vanish with nobody
told: a queue purged, a broker that lost its data, an events queue deleted, a worker's event
given up. So the operator holds a lease on each attempt in flight, renewed by every sign of
it: its dispatch, its `started` event, every heartbeat (a worker sends one at least every
`CONVEYOR_HEARTBEAT_SECONDS`, 30 by default, while a task runs). An attempt is lost when its
lease ran out and:
- it is Running: no sign for a whole lease, longer than a few heartbeat intervals;
- it is Queued: its queue was also seen empty, no message ready, after its last sign. A message
  still waiting behind others in a deep queue is not lost, only waiting; once the queue
  drains, a message that was there has been taken by a worker, whose `started` follows at
  once.
A lost attempt is published again under the same attempt id (`engine.TaskLost`). Were the
original alive after all (a worker cut off whose events come late), the engine applies
whichever result comes first and ignores the other: at least once, as always.

Nothing runs out while the operator cannot hear: while its link is down, or while its own
events queue holds events it has not read yet (the sign may be among them). Every lease
counts from when it could hear again, and from when it took the run (a restarted operator
knows no sign from before). So a message lost is dispatched again within a lease and a check
interval of the queue draining, however it was lost.

This module is the policy and the bookkeeping, on a clock it is given; `LeaseKeeper` in
leasekeeping.py runs it against the live runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

InFlight = tuple[str, str, bool]
"""(attempt id, task type, running): an attempt the engine holds as Queued or Running."""


class Leases:
    """The last sign of each attempt in flight, and the rule that says which are lost."""

    def __init__(self, lease_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds = lease_seconds
        self.now = clock
        """The clock every caller reads the leases' time from (tests give one they move)."""
        self._signs: dict[str, float] = {}  # attempt id -> time of its last sign
        self._held: dict[str, float] = {}  # run uid -> when this operator took the run
        self._hearing_since = 0.0  # before this, signs may have gone unheard

    def renew(self, attempt_id: str, now: float) -> None:
        """A sign of the attempt: dispatched, started, a heartbeat."""
        self._signs[attempt_id] = now

    def hold(self, uid: str, now: float) -> None:
        """This operator took the run (new, or rebuilt from its status)."""
        self._held.setdefault(uid, now)

    def release(self, uid: str) -> None:
        self._held.pop(uid, None)

    def deaf(self, now: float) -> None:
        """Signs may be going unheard now (link down, unread events): no lease runs out
        before a whole lease after this."""
        self._hearing_since = now

    def lost(self, uid: str, attempts: Iterable[InFlight], now: float,
             emptied_at: Callable[[str], float | None]) -> list[str]:
        """The attempts of run `uid` whose messages are lost; `emptied_at(task type)` is when
        that type's queue was last seen with no message ready (None: not known)."""
        since = max(self._hearing_since, self._held.get(uid, now))
        found = []
        for attempt_id, task_type, running in attempts:
            sign = max(self._signs.get(attempt_id, since), since)
            if now - sign <= self.lease_seconds:
                continue
            if not running:
                emptied = emptied_at(task_type)
                if emptied is None or emptied <= sign:
                    continue  # maybe still waiting in its queue
            found.append(attempt_id)
        return found

    def keep_only(self, attempt_ids: set[str], uids: set[str]) -> None:
        """Forget the attempts no longer in flight and the runs no longer held."""
        self._signs = {a: t for a, t in self._signs.items() if a in attempt_ids}
        self._held = {u: t for u, t in self._held.items() if u in uids}

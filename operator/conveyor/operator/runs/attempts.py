"""Attempt bookkeeping from worker events: which pod holds which attempt (the autoscaler gives
busy pods a high pod-deletion-cost) and how long attempts take (a histogram)."""

from __future__ import annotations

import time

from conveyor.operator.metrics import Metrics


class Attempts:
    """Attempts between their start and their end, as workers report them."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.workers: dict[str, str] = {}  # attempt id -> pod holding it
        self._started: dict[str, float] = {}  # attempt id -> when its start was seen

    def track(self, attempt: str, status: str, worker: str | None) -> None:
        """A worker event of `attempt` with `status` (started, heartbeat, succeeded...)."""
        if status in ("started", "heartbeat"):
            if worker:
                self.workers[attempt] = worker
            self._started.setdefault(attempt, time.monotonic())
        elif status in ("succeeded", "failed"):
            self.workers.pop(attempt, None)
            began = self._started.pop(attempt, None)
            if began is not None:
                self._metrics.task_duration.observe(time.monotonic() - began)

    def forget_run(self, uid: str) -> None:
        """The run finished or went: none of its attempts is held any more."""
        prefix = f"{uid}/"
        for attempt in [a for a in self.workers if a.startswith(prefix)]:
            del self.workers[attempt]
        for attempt in [a for a in self._started if a.startswith(prefix)]:
            del self._started[attempt]

"""The Kubernetes Events of a run: which ones a new status calls for (pure), and a recorder that
posts them off the run path, coalesced and at a bounded rate.

Events are news for a person reading `kubectl describe`, not state (the status holds that),
and every one is a write the API server and etcd pay for. So, as client-go's EventRecorder
aggregates and spam-filters, they are few by design:

- which: a run's phase changes (not Pending), and a task's failure or retry (Warnings); a
  task's other phases are in the status and would cost an Event per task;
- coalesced: an Event waits `hold` seconds before it is posted, and a newer one about the
  same subject (the run, or one task) replaces it meanwhile, so a run that ends within that
  time posts one Event, its end, not its start too;
- bounded: one post at a time from their own token bucket (never the status writes'), at
  most `max_pending` waiting; past that the oldest waiting is dropped and counted
  (`conveyor_kube_events_total{result="dropped"}`), never the run slowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.ratelimit import TokenBucket
from conveyor.operator.runs.records import RunRef
from conveyor.operator.seams import KubeApi

log = logging.getLogger("conveyor.operator.runs")

RUN_KEY = ""  # the run's own phase, among the task names (which are never empty)
HOLD_SECONDS = 1.0
MAX_PENDING = 1000
TASK_PHASES = frozenset({"Failed", "Retrying"})  # the task phases that get an Event


@dataclass(frozen=True)
class Post:
    """One Event to post: about the run (`subject` RUN_KEY) or one of its tasks."""

    subject: str
    type: str  # Normal | Warning
    reason: str
    message: str


def transitions(written: MutableMapping[str, str], status: dict[str, Any]) -> list[Post]:
    """Events for what changed since `written` (task name -> phase), which is updated."""
    posts: list[Post] = []
    for task in status.get("tasks") or []:
        phase = task.get("phase", "")
        if written.get(task["name"]) == phase:
            continue
        written[task["name"]] = phase
        if phase not in TASK_PHASES:
            continue
        detail = f": {task['message']}" if task.get("message") else ""
        posts.append(Post(task["name"], "Warning", f"Task{phase}",
                          f"task {task['name']} {phase.lower()}{detail}"))
    phase = status.get("phase", "")
    if written.get(RUN_KEY) != phase:
        written[RUN_KEY] = phase
        if phase and phase != "Pending":
            detail = f": {status['message']}" if status.get("message") else ""
            progress = f" ({status['progress']} tasks)" if status.get("progress") else ""
            posts.append(Post(RUN_KEY, "Warning" if phase == "Failed" else "Normal",
                              f"Run{phase}", f"run {phase.lower()}{progress}{detail}"))
    return posts


@dataclass
class _Waiting:
    ref: RunRef
    post: Post
    due: float  # monotonic


class EventRecorder:
    """Posts runs' Events in the background: held, coalesced per subject, rate-bounded."""

    def __init__(self, kube: KubeApi, metrics: Metrics, *, per_second: float,
                 hold: float = HOLD_SECONDS, max_pending: int = MAX_PENDING) -> None:
        self._kube = kube
        self._metrics = metrics
        self._bucket = TokenBucket(per_second, burst=max(1.0, 2 * per_second))
        self._hold = hold
        self._max_pending = max_pending
        self._waiting: OrderedDict[tuple[str, str], _Waiting] = OrderedDict()
        self._wake = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def record(self, ref: RunRef, posts: list[Post]) -> None:
        """Queue `posts` about `ref`; never waits."""
        due = time.monotonic() + self._hold
        for post in posts:
            key = (ref.uid, post.subject)
            waiting = self._waiting.get(key)
            if waiting is not None:  # superseded before it went out: the newer says more
                waiting.post = post
                self._metrics.kube_events.labels("superseded").inc()
                continue
            self._waiting[key] = _Waiting(ref, post, due)
            while len(self._waiting) > self._max_pending:
                _, dropped = self._waiting.popitem(last=False)
                self._metrics.kube_events.labels("dropped").inc()
                log.debug("Event dropped run=%s reason=%s", dropped.ref.name,
                          dropped.post.reason)
        self._wake.set()

    async def run(self) -> None:
        """Post what falls due, one at a time, for ever (a supervised background loop)."""
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            key, first = next(iter(self._waiting.items()))
            delay = first.due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # its hold: the time it may still be superseded
                continue
            await self._bucket.take()
            waiting = self._waiting.pop(key, None)  # replaced meanwhile: post the newer
            if waiting is not None:
                await self._post(waiting.ref, waiting.post)

    async def _post(self, ref: RunRef, post: Post) -> None:
        """One that fails is logged and dropped: news, not state."""
        try:
            await self._kube.post_event(ref.involved(), post.type, post.reason, post.message)
        except KubeError as error:
            self._metrics.kube_events.labels("error").inc()
            log.debug("Event not posted run=%s error=%s", ref.name, error)
            return
        self._metrics.kube_events.labels("posted").inc()

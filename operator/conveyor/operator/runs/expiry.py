"""`ttlSecondsAfterFinished`: finished runs are deleted once their time is up.

A run seen finished before its Workflow is known (an operator start lists runs before kopf
reports Workflows) waits for the Workflow to learn its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor import engine
from conveyor.kube import KubeError
from conveyor.operator.runs.records import RunRef
from conveyor.operator.seams import KubeApi
from conveyor.operator.workflows import Workflows

log = logging.getLogger("conveyor.operator.runs")


def ttl_delay(ttl_seconds: float, finished_at: str | None, now: float) -> float:
    """Seconds from `now` until a run that finished at `finished_at` (the status's time; now
    when unknown or unreadable) has outlived its TTL; 0 when it already has."""
    ended = now
    if finished_at:
        with contextlib.suppress(ValueError):
            ended = engine.parse_time(finished_at) / 1000
    return max(0.0, ended + float(ttl_seconds) - now)


class Expiry:
    """One timer per finished run whose Workflow sets a TTL."""

    def __init__(self, kube: KubeApi, workflows: Workflows,
                 spawn: Callable[[Coroutine[Any, Any, None]], None]) -> None:
        self._kube = kube
        self._workflows = workflows
        self._spawn = spawn
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._unknown: dict[str, tuple[RunRef, str | None]] = {}  # Workflow not seen yet

    def schedule(self, ref: RunRef, finished_at: str | None) -> None:
        entry = self._workflows.get(ref.namespace, ref.workflow)
        if entry is None:
            self._unknown[ref.uid] = (ref, finished_at)
            return
        ttl = entry.spec.get("ttlSecondsAfterFinished")
        if ttl is None or ref.uid in self._timers:
            return
        delay = ttl_delay(float(ttl), finished_at, time.time())
        self._timers[ref.uid] = asyncio.get_running_loop().call_later(
            delay, lambda: self._spawn(self._expire(ref)))

    def workflow_seen(self, namespace: str, name: str) -> None:
        """The Workflow is known now: its finished runs get their timers."""
        for ref, finished_at in list(self._unknown.values()):
            if (ref.namespace, ref.workflow) == (namespace, name):
                del self._unknown[ref.uid]
                self.schedule(ref, finished_at)

    def forget(self, uid: str) -> None:
        handle = self._timers.pop(uid, None)
        if handle:
            handle.cancel()
        self._unknown.pop(uid, None)

    async def _expire(self, ref: RunRef) -> None:
        self._timers.pop(ref.uid, None)
        try:
            await self._kube.delete_run(ref.namespace, ref.name, ref.uid)
            log.info("Run deleted after ttlSecondsAfterFinished run=%s/%s", ref.namespace,
                     ref.name)
        except KubeError as error:
            log.warning("Run deletion failed run=%s error=%s", ref.name, error)

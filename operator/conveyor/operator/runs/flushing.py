"""Coalesced, bounded, ordered status writes of runs (DESIGN.md §1).

A run marked dirty is written at most once per `status_interval`, with every effect since its
last write, and all writes share one token bucket. Before a write, the flusher waits for the
broker's confirms of every message the new status records as sent (publish before persist);
after it, it acks the worker events whose effects it carries (ack after persist). With an
object store, the forEach item outputs a status counts are written to it before it, too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor import engine
from conveyor.broker.confirms import settled
from conveyor.conditions import set_condition
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.ratelimit import TokenBucket
from conveyor.operator.runs.records import ActiveRun, Send
from conveyor.operator.runs.storage import RunStorage
from conveyor.operator.seams import BrokerLink, Delivery, KubeApi
from conveyor.store import StoreError

log = logging.getLogger("conveyor.operator.runs")

RETRY_SECONDS = 2.0
STORE_GIVE_UP_SECONDS = 120.0  # item outputs that cannot be stored this long fail the run


class Flusher:
    """Writes runs' statuses: coalesced per run, bounded over all, confirms before, acks
    after; and the few statuses written outside the engine, through the same bucket."""

    def __init__(self, kube: KubeApi, link: BrokerLink, metrics: Metrics, *, interval: float,
                 writes_per_second: float, first_delay: float = 0.0,
                 spawn: Callable[[Coroutine[Any, Any, None]], None],
                 current: Callable[[ActiveRun], bool],
                 on_gone: Callable[[ActiveRun, list[Delivery]], None],
                 on_written: Callable[[ActiveRun, dict[str, Any], int], None],
                 retry_seconds: float = RETRY_SECONDS, storage: RunStorage | None = None,
                 on_stored: Callable[[ActiveRun, engine.Signal], None] | None = None,
                 store_give_up: float = STORE_GIVE_UP_SECONDS) -> None:
        self._kube = kube
        self._link = link
        self._metrics = metrics
        self._interval = interval
        self._first_delay = first_delay
        self.bucket = TokenBucket(writes_per_second)
        self._spawn = spawn
        self._current = current  # is the run still tracked?
        self._on_gone = on_gone  # the WorkflowRun was deleted (404)
        self._on_written = on_written
        self._retry_seconds = retry_seconds  # after a failed write or publish
        self._storage = storage  # where forEach item outputs go before the status counts them
        self._on_stored = on_stored  # tell the run's engine: Loaded (stored), StoreFailed
        self._store_give_up = store_give_up

    def mark(self, run: ActiveRun) -> None:
        """The run's state changed: write it soon (coalescing with what follows)."""
        run.dirty = True
        if run.flush_at is not None or run.flushing:
            return
        # A run's first write waits `first_delay` from when it was seen: a small run that
        # ends within it is written once, its end, not its start as well.
        earliest = (run.last_write + self._interval if run.last_write
                    else run.seen_at + self._first_delay)
        delay = max(0.0, earliest - time.monotonic())
        run.flush_at = asyncio.get_running_loop().call_later(delay, self._begin, run)

    def _begin(self, run: ActiveRun) -> None:
        run.flush_at = None
        if not self._current(run):
            return
        run.flushing = True
        self._spawn(self._flush(run))

    async def _flush(self, run: ActiveRun) -> None:
        try:
            await self._flush_once(run)
        finally:
            run.flushing = False
            if run.dirty and self._current(run):
                self.mark(run)

    async def _flush_once(self, run: ActiveRun) -> None:
        state = run.state
        if state is None or not run.dirty:
            return
        await self.bucket.take()
        # Built before anything is taken off the run (and with no await in between, so it
        # holds the effect of every ack taken): should it raise, the run keeps all its work.
        # The item outputs it counts as stored are taken with it, and written first.
        chunks = engine.take_chunks(state)
        try:
            status = engine.to_status(state)
        except BaseException:
            engine.return_chunks(state, chunks)
            raise
        recorded = state.unpersisted  # forEach dispatches this status records
        acks, sends = run.acks, run.sends
        run.acks, run.sends = [], []
        run.dirty = False
        started = time.monotonic()
        if chunks and not await self._stored(run, chunks, sends, acks):
            return
        if not await self._confirmed(run, sends, acks):
            return
        self._metrics.dispatch_latency.observe(time.monotonic() - started)
        ref = run.ref
        try:
            await self._kube.replace_status("workflowruns", ref.namespace, ref.name, status)
        except Exception as error:  # whatever failed, the run keeps what it must still do
            self._metrics.status_writes.labels("WorkflowRun", "error").inc()
            if isinstance(error, KubeError) and error.not_found:
                self._on_gone(run, acks)
                return
            delay = (error.delay(self._retry_seconds) if isinstance(error, KubeError)
                     else self._retry_seconds)
            log.warning("Status write failed run=%s/%s error=%s: %s; retrying in %.1fs",
                        ref.namespace, ref.name, type(error).__name__, error, delay)
            run.acks[:0] = acks
            run.dirty = True
            await asyncio.sleep(delay)  # a backoff before the next try, not a wait on state
            return
        self._metrics.status_writes.labels("WorkflowRun", "ok").inc()
        run.last_write = time.monotonic()
        for delivery in acks:
            delivery.ack()
        self._on_written(run, status, recorded)

    async def _stored(self, run: ActiveRun, chunks: list[engine.Chunk], sends: list[Send],
                      acks: list[Delivery]) -> bool:
        """Write the chunks the status counts; False: they go back, try the flush later (and
        after `store_give_up` seconds of failures, or one the store will always refuse, the
        run fails saying why: it must not wait for ever on what it cannot persist)."""
        state = run.state
        assert state is not None and self._storage is not None
        try:
            await self._storage.write_chunks(chunks)
        except StoreError as error:
            engine.return_chunks(state, chunks)
            run.sends[:0] = sends
            run.acks[:0] = acks
            run.dirty = True
            now = time.monotonic()
            run.store_failing = run.store_failing or now
            if not error.retryable or now - run.store_failing >= self._store_give_up:
                log.error("Item outputs cannot be stored run=%s/%s: %s", run.ref.namespace,
                          run.ref.name, error)
                self._tell(run, engine.StoreFailed(str(error)))
                return False
            log.warning("Storing item outputs failed run=%s/%s: %s; retrying in %.1fs",
                        run.ref.namespace, run.ref.name, error, self._retry_seconds)
            await asyncio.sleep(self._retry_seconds)  # a backoff, not a wait on state
            return False
        run.store_failing = None
        engine.chunks_stored(state, chunks)
        self._tell(run, engine.Loaded())  # what waited for these item outputs goes on
        return True

    def _tell(self, run: ActiveRun, signal: engine.Signal) -> None:
        if self._on_stored is not None and run.state is not None:
            self._on_stored(run, signal)

    async def _confirmed(self, run: ActiveRun, sends: list[Send],
                         acks: list[Delivery]) -> bool:
        """Wait for the broker's confirms; resend what failed. False: try the flush later."""
        await settled([send.confirmation for send in sends])
        failed: list[Send] = []
        for send in sends:
            error = send.confirmation.exception(0)
            if error is not None:
                log.warning("Publish failed run=%s/%s message=%s error=%s", run.ref.namespace,
                            run.ref.name, send.message_id, error)
                failed.append(send)
        if not failed:
            return True
        for send in failed:
            send.confirmation = self._link.publish(send.exchange, send.routing_key, send.body,
                                                   message_id=send.message_id,
                                                   mandatory=send.mandatory)
        run.sends[:0] = sends
        run.acks[:0] = acks
        run.dirty = True
        await asyncio.sleep(self._retry_seconds)
        return False

    async def write_outside_engine(self, run: ActiveRun, status: dict[str, Any],
                                   succeeded: str, reason: str, message: str) -> bool:
        """Write the status of a run the engine does not hold (waiting, or ended before it
        could start): its phase and message, and the Succeeded condition saying why."""
        status = {**status, "message": message,
                  "conditions": set_condition([], "Succeeded", succeeded, reason, message)}
        await self.bucket.take()
        try:
            await self._kube.replace_status("workflowruns", run.ref.namespace, run.ref.name,
                                            status)
        except KubeError as error:
            log.warning("Status write failed run=%s error=%s", run.ref.name, error)
            return False
        return True

"""The run loop: tracks the WorkflowRuns the API server reports and gives each its engine
state; the other jobs are done by the parts it wires together:

    rebuilding  a run's engine state, from its status or new       (rebuilding.py)
    admission   maxActiveRuns: who holds a slot, who waits        (admission.py)
    acting      a signal through the engine, its actions done      (acting.py)
    flushing    coalesced, bounded, ordered status writes          (flushing.py)
    expiry      ttlSecondsAfterFinished                            (expiry.py)
    routing     a worker event to its run, or parked, or dropped   (routing.py)
    attempts    which pod holds which attempt, and for how long    (attempts.py)
    Events      Kubernetes Events for phase changes                (kube_events.py)

Everything runs on the operator's asyncio loop, one signal at a time, so the in-memory runs
need no locks. The delivery rules of DESIGN.md §1:

- publish before persist: a flush waits for the broker's confirms of every task the new
  status records as dispatched, then writes the status;
- ack after persist: a worker event is acked only once a status containing its effect is
  written (an event that changes nothing is acked at once);
- coalesced, bounded writes: a run's status is written at most once per `status_interval`,
  and all writes share one token bucket, so writes grow with time, not with tasks;
- timers (retries, timeouts, the deadline) live in the status; a restarted operator rebuilds
  each run from its status and re-arms them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from conveyor import engine, names
from conveyor.errors import ConveyorError, InvalidStatusError
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs import kube_events, queries
from conveyor.operator.runs.acting import Actor
from conveyor.operator.runs.admission import Admission
from conveyor.operator.runs.attempts import Attempts
from conveyor.operator.runs.expiry import Expiry
from conveyor.operator.runs.flushing import RETRY_SECONDS, Flusher
from conveyor.operator.runs.leases import Leases
from conveyor.operator.runs.rebuilding import give_state
from conveyor.operator.runs.records import ActiveRun, RunRef
from conveyor.operator.runs.routing import EventRouter
from conveyor.operator.runs.storage import RunStorage
from conveyor.operator.seams import BrokerLink, Delivery, KubeApi
from conveyor.operator.settings import Settings
from conveyor.operator.supervision import supervised
from conveyor.operator.workflows import Workflows, WorkflowUnavailableError
from conveyor.store import StoreError
from conveyor.stored import refs_in

log = logging.getLogger("conveyor.operator.runs")

EVENTS_PREFETCH = 5000  # acks wait for status writes: room for several flush intervals
COUNT_SECONDS = 0.5  # the runs gauge lags the runs by at most this


class RunManager:
    """Drives every active WorkflowRun of the install, from its first sight to its end."""

    def __init__(self, settings: Settings, kube: KubeApi, link: BrokerLink,
                 workflows: Workflows, *, metrics: Metrics,
                 on_dispatch: Callable[[str, str, str], None],
                 retry_seconds: float = RETRY_SECONDS,
                 storage: RunStorage | None = None) -> None:
        self._kube = kube
        self.storage = storage  # the object store's side of runs; None without a store
        self._namespaces = settings.namespaces
        self._link = link
        self._workflows = workflows
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.runs: dict[str, ActiveRun] = {}
        self._retry_seconds = retry_seconds  # after a failed API call that may succeed later
        self.flusher = Flusher(kube, link, metrics, interval=settings.status_interval,
                               writes_per_second=settings.writes_per_second,
                               first_delay=settings.first_status_delay,
                               spawn=self._spawn, current=self._current,
                               on_gone=self._gone, on_written=self._written,
                               retry_seconds=retry_seconds, storage=storage,
                               on_stored=self._tell)
        self.leases = Leases(settings.lease_seconds)
        self.actor = Actor(self.runs, link, self.flusher, metrics, on_dispatch=on_dispatch,
                           on_phase_change=self._count_phases, reply_to=settings.instance,
                           leases=self.leases, retry_seconds=retry_seconds,
                           spawn=self._spawn, storage=storage)
        self.admission = Admission(self.runs, start=self._start, mark=self.flusher.mark)
        self.expiry = Expiry(kube, workflows, self._spawn)
        self.attempts = Attempts(metrics)
        self.router = EventRouter(self.runs, self.actor, self.attempts, self.leases, metrics,
                                  link=link)
        self.recorder = kube_events.EventRecorder(kube, metrics,
                                                  per_second=settings.events_per_second,
                                                  hold=settings.event_hold)
        self._counting: asyncio.TimerHandle | None = None
        workflows.on_change(self._workflow_changed)

    @property
    def workers(self) -> dict[str, str]:
        """Attempt id -> the pod holding it (for pod-deletion-cost)."""
        return self.attempts.workers

    # -- wiring -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, events_queue: str,
              existing: Iterable[dict[str, Any]]) -> None:
        """Track the runs that exist now, then consume events. From then on an event of a
        run the operator does not know is of a deleted run, and is dropped: events of new
        runs cannot come before their run is seen, as only the operator dispatches tasks."""
        self._loop = loop
        self.router.dead_letter_queue = names.dead_letter_queue(events_queue)
        existing = list(existing)
        for body in existing:
            self.observe(body)
        self._link.consume(events_queue, EVENTS_PREFETCH, self._from_io_thread)
        self._spawn(supervised("kube-events", self.recorder.run))
        if self.storage is not None:
            self._spawn(self._sweep())

    def _from_io_thread(self, delivery: Delivery) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.router.deliver, delivery)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro) if self._loop is None else \
            self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- what the API server says about runs --------------------------------------------------
    def observe(self, body: dict[str, Any]) -> None:
        """A WorkflowRun as a watch saw it: start tracking it, or notice its cancel."""
        meta, spec = body["metadata"], body.get("spec") or {}
        uid = meta["uid"]
        run = self.runs.get(uid)
        if run is not None:
            if spec.get("cancel") and not run.cancel_sent:
                if run.state is None:
                    run.cancel_sent = True
                    self._spawn(self._end_unstarted(run, "Cancelled", "Cancelled",
                                                    "cancelled before it started"))
                else:
                    self._cancel(run)
            return
        if meta.get("deletionTimestamp"):
            return
        status = body.get("status") or {}
        workflow = (spec.get("workflowRef") or {}).get("name", "")
        ref = RunRef(meta["namespace"], meta["name"], uid, workflow)
        if status.get("phase") in engine.RUN_TERMINAL:
            self.expiry.schedule(ref, status.get("finishedAt"))
            return
        run = ActiveRun(ref, dict(spec.get("inputs") or {}), meta.get("creationTimestamp", ""),
                        dict(spec.get("reuse") or {}), dict(status))
        self.runs[uid] = run
        self._spawn(self._activate(run, status, bool(spec.get("cancel"))))

    def deleted(self, body: dict[str, Any]) -> None:
        """A WorkflowRun was deleted: forget it, and delete its stored objects (those a live
        run reuses stay)."""
        self.forget(body["metadata"]["uid"])
        if self.storage is not None:
            self._spawn(self._delete_objects(body))

    async def _delete_objects(self, body: dict[str, Any]) -> None:
        assert self.storage is not None
        meta, spec = body["metadata"], body.get("spec") or {}
        ref = RunRef(meta["namespace"], meta["name"], meta["uid"],
                     (spec.get("workflowRef") or {}).get("name", ""))
        reused = [r for outputs in (spec.get("reuse") or {}).values() for r in refs_in(outputs)]
        try:
            runs = await self._kube.list_custom(names.RUN_PLURAL, ref.namespace)
            deleted, kept = await self.storage.delete_run(ref, reused, self.storage.live(runs))
        except (KubeError, StoreError) as error:  # the sweep at the next start finishes it
            log.warning("Deleting the stored objects of run=%s/%s failed: %s", ref.namespace,
                        ref.name, error)
            return
        log.info("Stored objects of a deleted run run=%s/%s deleted=%d kept=%d",
                 ref.namespace, ref.name, deleted, kept)

    async def _sweep(self) -> None:
        """Delete what runs deleted while no operator watched left in the store."""
        assert self.storage is not None

        async def runs() -> list[dict[str, Any]]:
            if not self._namespaces:
                return await self._kube.list_custom(names.RUN_PLURAL)
            return [r for n in self._namespaces
                    for r in await self._kube.list_custom(names.RUN_PLURAL, n)]

        try:
            count = await self.storage.sweep(self._namespaces, runs)
        except (KubeError, StoreError) as error:
            log.warning("The sweep of stored objects failed: %s", error)
            return
        if count:
            log.info("Stored objects of deleted runs removed objects=%d", count)

    def _tell(self, run: ActiveRun, signal: engine.Signal) -> None:
        self.actor.apply(run, signal)

    def forget(self, uid: str) -> None:
        """The WorkflowRun is gone: drop it; its unacked events need nothing more."""
        run = self.runs.get(uid)
        self.expiry.forget(uid)
        self.router.drop_parked(uid)
        if run is None:
            return
        for delivery in run.acks:
            delivery.ack()
        run.acks.clear()
        self._drop(run)

    def _drop(self, run: ActiveRun) -> None:
        """Stop driving a run (finished or deleted): its slot, timer and attempts go."""
        self.runs.pop(run.ref.uid, None)
        if run.timer:
            run.timer.cancel()
        self.admission.leave(run)
        self._count_phases()
        self.attempts.forget_run(run.ref.uid)

    async def _activate(self, run: ActiveRun, status: dict[str, Any], cancel: bool) -> None:
        """Give the run its engine state: rebuilt from its status, or new on the Workflow's
        current generation; a run that cannot start yet says what it waits for."""
        if run.activating or run.state is not None:
            return  # one activation at a time: a second would give the run a second state
        run.activating = True
        try:
            while True:
                run.reactivate = False
                await self._activate_once(run, status, cancel)
                if not run.reactivate or run.state is not None \
                        or self.runs.get(run.ref.uid) is not run:
                    return
                # Its Workflow became ready while this activation wrote that it was not: the
                # notice came while no second activation could start, so it is this one's.
                status = run.seen_status
        finally:
            run.activating = False

    async def _activate_once(self, run: ActiveRun, status: dict[str, Any],
                             cancel: bool) -> None:
        ref = run.ref
        generation = status.get("workflowGeneration")
        try:
            state = await give_state(self._workflows, run, status, self.storage)
        except WorkflowUnavailableError as error:
            if generation is not None and error.reason == "WorkflowGenerationLost":
                await self._end_unstarted(run, "Failed", error.reason, str(error))
                return
            if run.waiting != (error.reason, str(error)):
                run.waiting = (error.reason, str(error))
                await self._write_waiting(run)
            return
        except KubeError as error:
            if error.retryable:  # the API server did not answer, or not yet: try again
                log.warning("Run activation failed; retrying run=%s/%s error=%s",
                            ref.namespace, ref.name, error)
                self._retry_activation(run, status, cancel)
                return
            log.error("Run could not be rebuilt run=%s/%s error=%s", ref.namespace, ref.name,
                      error)
            await self._end_unstarted(run, "Failed", "InvalidStatus", str(error))
            return
        except (InvalidStatusError, ConveyorError) as error:
            log.error("Run could not be rebuilt run=%s/%s error=%s", ref.namespace, ref.name,
                      error)
            await self._end_unstarted(run, "Failed", "InvalidStatus", str(error))
            return
        except Exception:  # unforeseen: the run must not be left waiting on nothing
            log.exception("Run activation failed unexpectedly; retrying run=%s/%s",
                          ref.namespace, ref.name)
            self._retry_activation(run, status, cancel)
            return
        if self.runs.get(ref.uid) is not run:
            return  # deleted meanwhile
        run.waiting = None
        if state.phase == "Pending":
            self.admission.enqueue(run)
        else:
            self.admission.hold(run)
            self.actor.resume(run)
        if cancel or run.cancel_sent:
            self._cancel(run)
        self.router.release_parked(ref.uid)
        self._count_phases()

    def _retry_activation(self, run: ActiveRun, status: dict[str, Any], cancel: bool) -> None:
        def again() -> None:
            if self.runs.get(run.ref.uid) is run and run.state is None:
                self._spawn(self._activate(run, status, cancel))

        asyncio.get_running_loop().call_later(self._retry_seconds, again)

    def _workflow_changed(self, namespace: str, name: str) -> None:
        """A Workflow appeared or changed: runs waiting for it try again."""
        self.expiry.workflow_seen(namespace, name)
        for run in list(self.runs.values()):
            if run.state is not None or run.ref.namespace != namespace \
                    or run.ref.workflow != name:
                continue
            if run.activating:
                run.reactivate = True  # the activation under way may have seen it not ready
                continue
            # From the status it was seen with: a run that has started is rebuilt on its own
            # generation, never started again on the current one.
            self._spawn(self._activate(run, run.seen_status, False))

    def _start(self, run: ActiveRun) -> None:
        self.actor.apply(run, engine.Start())

    def _cancel(self, run: ActiveRun) -> None:
        if run.state is None:
            return
        run.cancel_sent = True
        self.actor.apply(run, engine.Cancel())

    # -- what the rest of the operator asks -------------------------------------------------
    def active_runs(self, namespace: str, workflow: str) -> int:
        return self.admission.active(namespace, workflow)

    def workflow_has_runs(self, namespace: str, workflow: str) -> int:
        return queries.started_runs(self.runs.values(), namespace, workflow)

    def in_flight(self) -> dict[queries.PoolKey, int]:
        return queries.in_flight(self.runs.values())

    def pinned_task_types(self, namespace: str, workflow: str) -> set[str]:
        return queries.task_types_in_use(self.runs.values(), namespace, workflow)

    # -- what the flusher reports -------------------------------------------------------------
    def _current(self, run: ActiveRun) -> bool:
        return self.runs.get(run.ref.uid) is run

    def _gone(self, run: ActiveRun, acks: list[Delivery]) -> None:
        self.forget(run.ref.uid)
        for delivery in acks:
            delivery.ack()

    def _written(self, run: ActiveRun, status: dict[str, Any], recorded: int) -> None:
        posts = kube_events.transitions(run.written_tasks, status)
        if posts:
            self.recorder.record(run.ref, posts)
        state = run.state
        if state is not None and recorded:  # what a fan-out held back for this write goes
            self.actor.apply(run, engine.Persisted(recorded))
        if state is not None and state.phase in engine.RUN_TERMINAL and not run.dirty:
            self._finished(run, status)

    # -- runs the engine does not hold --------------------------------------------------------
    async def _write_waiting(self, run: ActiveRun) -> None:
        """Status of a run that cannot start yet, saying what it waits for."""
        assert run.waiting is not None
        reason, message = run.waiting
        await self.flusher.write_outside_engine(run, {"phase": "Pending", "progress": "0/0"},
                                                "Unknown", reason, message)
        log.info("Run waiting run=%s/%s reason=%s", run.ref.namespace, run.ref.name, reason)

    async def _end_unstarted(self, run: ActiveRun, phase: str, reason: str,
                             message: str) -> None:
        """End a run the engine never held: cancelled while waiting, or not rebuildable."""
        finished = engine.format_time(engine.to_ms(time.time()))
        if await self.flusher.write_outside_engine(
                run, {"phase": phase, "finishedAt": finished}, "False", reason, message):
            self.forget(run.ref.uid)

    # -- the end of a run ---------------------------------------------------------------------
    def _finished(self, run: ActiveRun, status: dict[str, Any]) -> None:
        ref = run.ref
        log.info("Run finished run=%s/%s phase=%s", ref.namespace, ref.name, status["phase"])
        self._metrics.runs_finished.labels(status["phase"]).inc()
        self._drop(run)
        self.expiry.schedule(ref, status.get("finishedAt"))

    def _count_phases(self) -> None:
        """Update the runs gauge soon: once for a burst of changes, not once per change (each
        count looks at every run)."""
        if self._counting is None:
            self._counting = asyncio.get_running_loop().call_later(COUNT_SECONDS, self._count)

    def _count(self) -> None:
        self._counting = None
        counts: dict[str, int] = defaultdict(int)
        for run in self.runs.values():
            counts[run.phase] += 1
        for phase in ("Pending", "Running"):
            self._metrics.runs.labels(phase).set(counts.get(phase, 0))

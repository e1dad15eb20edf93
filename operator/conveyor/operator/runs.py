"""The run loop: feeds worker events and timers to the engine, acts on what it decides.

Everything here runs on the operator's asyncio loop, one event at a time, so the in-memory
runs need no locks. The delivery rules of DESIGN.md §1:

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
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from conveyor import engine, names, runstatus
from conveyor import events as ev
from conveyor.broker import Delivery, Link
from conveyor.conditions import set_condition
from conveyor.errors import ConveyorError, InvalidStatusError
from conveyor.kube import Kube, KubeError
from conveyor.messaging.codec import decode_event, encode_task
from conveyor.models import RunEvent, TaskMessage
from conveyor.operator.activerun import ActiveRun, RunRef, Send
from conveyor.operator.book import WorkflowBook, WorkflowUnavailableError
from conveyor.operator.flushing import Flusher
from conveyor.operator.metrics import Metrics
from conveyor.operator.settings import Settings
from conveyor.operator.transitions import Post, transitions
from conveyor.runstate import RUN_TERMINAL

log = logging.getLogger("conveyor.operator.runs")



class RunManager:
    def __init__(self, settings: Settings, kube: Kube, link: Link, book: WorkflowBook, *,
                 metrics: Metrics, on_dispatch: Callable[[str, str, str], None]) -> None:
        self._settings = settings
        self._kube = kube
        self._link = link
        self._book = book
        self._metrics = metrics
        self._on_dispatch = on_dispatch  # (namespace, workflow, task type)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher = Flusher(kube, link, metrics, interval=settings.status_interval,
                                writes_per_second=settings.writes_per_second,
                                spawn=self._spawn, current=self._current,
                                on_gone=self._gone, on_written=self._written)
        self.runs: dict[str, ActiveRun] = {}
        self._parked: dict[str, list[Delivery]] = defaultdict(list)
        self._pending: dict[tuple[str, str], deque[str]] = defaultdict(deque)
        self._running: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._ttl: dict[str, asyncio.TimerHandle] = {}
        # Finished runs whose Workflow is not known yet (operator start): TTL decided later.
        self._ttl_unknown: dict[str, tuple[RunRef, str | None]] = {}
        self.workers: dict[str, str] = {}  # attempt id -> pod holding it (pod-deletion-cost)
        self._started: dict[str, float] = {}  # attempt id -> when its start was seen
        self._tasks: set[asyncio.Task[Any]] = set()
        book.on_change(self._workflow_changed)

    # -- wiring -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, events_queue: str,
              existing: list[dict[str, Any]]) -> None:
        """Track the runs that exist now, then consume events. From then on an event of a
        run the operator does not know is of a deleted run, and is dropped: events of new
        runs cannot come before their run is seen, as only the operator dispatches tasks."""
        self._loop = loop
        for body in existing:
            self.observe(body)
        prefetch = 5000  # acks wait for status writes: room for several flush intervals
        self._link.consume(events_queue, prefetch, self._from_io_thread)

    def _from_io_thread(self, delivery: Delivery) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_delivery, delivery)

    def _spawn(self, coro: Any) -> None:
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
        if status.get("phase") in RUN_TERMINAL:
            self._schedule_ttl(ref, status.get("finishedAt"))
            return
        run = ActiveRun(ref, dict(spec.get("inputs") or {}), meta.get("creationTimestamp", ""),
                        dict(spec.get("reuse") or {}))
        self.runs[uid] = run
        self._spawn(self._activate(run, status, bool(spec.get("cancel"))))

    def forget(self, uid: str) -> None:
        """The WorkflowRun is gone: drop it; its unacked events need nothing more."""
        run = self.runs.get(uid)
        handle = self._ttl.pop(uid, None)
        if handle:
            handle.cancel()
        self._ttl_unknown.pop(uid, None)
        for delivery in self._parked.pop(uid, []):
            delivery.ack()
        if run is None:
            return
        for delivery in run.acks:
            delivery.ack()
        run.acks.clear()
        self._drop(run)

    def _drop(self, run: ActiveRun) -> None:
        """Stop driving a run (finished or deleted): its slot, timer and attempts go."""
        uid = run.ref.uid
        self.runs.pop(uid, None)
        if run.timer:
            run.timer.cancel()
        self._leave_slot(run)
        self._count_phases()
        prefix = f"{uid}/"
        for attempt in [a for a in self.workers if a.startswith(prefix)]:
            del self.workers[attempt]
        for attempt in [a for a in self._started if a.startswith(prefix)]:
            del self._started[attempt]

    async def _activate(self, run: ActiveRun, status: dict[str, Any], cancel: bool) -> None:
        ref = run.ref
        generation = status.get("workflowGeneration")
        try:
            if generation is not None and status.get("phase"):
                compiled = await self._book.generation(ref.namespace, ref.workflow,
                                                       int(generation))
                run.state = runstatus.from_status(compiled, ref.uid, run.inputs, status)
                run.written_tasks = {t["name"]: t.get("phase", "")
                                     for t in status.get("tasks") or []}
                log.info("Run resumed run=%s/%s phase=%s", ref.namespace, ref.name,
                         run.state.phase)
            else:
                compiled = self._book.current(ref.namespace, ref.workflow)
                await self._book.pin(ref.namespace, ref.workflow, compiled)
                run.state = engine.new_run(compiled, ref.uid, run.inputs, time.time(),
                                           reuse=run.reuse)
        except WorkflowUnavailableError as error:
            if generation is not None and error.reason == "WorkflowGenerationLost":
                await self._end_unstarted(run, "Failed", error.reason, str(error))
                return
            if run.waiting != (error.reason, str(error)):
                run.waiting = (error.reason, str(error))
                await self._write_waiting(run)
            return
        except (InvalidStatusError, ConveyorError, KubeError) as error:
            log.error("Run could not be rebuilt run=%s/%s error=%s", ref.namespace, ref.name,
                      error)
            await self._end_unstarted(run, "Failed", "InvalidStatus", str(error))
            return
        if self.runs.get(ref.uid) is not run:
            return  # deleted meanwhile
        run.waiting = None
        state = run.state
        if state.phase == "Pending":
            self._pending[(ref.namespace, ref.workflow)].append(ref.uid)
            self._flusher.mark(run)
            self._admit(ref.namespace, ref.workflow)
        else:
            run.admitted = True
            self._running[(ref.namespace, ref.workflow)].add(ref.uid)
            self._apply(run, ev.Tick())
        if cancel or run.cancel_sent:
            self._cancel(run)
        self._release_parked(ref.uid)
        self._count_phases()

    def _workflow_changed(self, namespace: str, name: str) -> None:
        """A Workflow appeared or changed: runs waiting for it try again."""
        for ref, finished_at in list(self._ttl_unknown.values()):
            if (ref.namespace, ref.workflow) == (namespace, name):
                del self._ttl_unknown[ref.uid]
                self._schedule_ttl(ref, finished_at)
        for run in list(self.runs.values()):
            if run.state is None and run.ref.namespace == namespace and \
                    run.ref.workflow == name:
                self._spawn(self._activate(run, {}, False))

    # -- admission (maxActiveRuns) ------------------------------------------------------------
    def _admit(self, namespace: str, workflow: str) -> None:
        key = (namespace, workflow)
        queue = self._pending[key]
        while queue:
            run = self.runs.get(queue[0])
            if run is None or run.state is None or run.admitted:
                queue.popleft()
                continue
            if not engine.admit(len(self._running[key]), run.state.workflow.max_active_runs):
                if run.state.message is None:
                    run.state.message = (f"waiting: {len(self._running[key])} runs of "
                                         f"Workflow {workflow} are active (maxActiveRuns)")
                    self._flusher.mark(run)
                return
            queue.popleft()
            run.admitted = True
            run.state.message = None
            self._running[key].add(run.ref.uid)
            self._apply(run, ev.Start())

    def _leave_slot(self, run: ActiveRun) -> None:
        key = (run.ref.namespace, run.ref.workflow)
        if run.ref.uid in self._running[key]:
            self._running[key].discard(run.ref.uid)
            self._admit(*key)

    def active_runs(self, namespace: str, workflow: str) -> int:
        return len(self._running[(namespace, workflow)])

    def workflow_has_runs(self, namespace: str, workflow: str) -> int:
        """Runs of the Workflow that started on it and have not finished. Runs still waiting
        for it do not count: they wait for a Workflow of that name, which may come back."""
        return sum(1 for r in self.runs.values() if r.state is not None
                   and r.ref.namespace == namespace and r.ref.workflow == workflow)

    def in_flight(self) -> dict[tuple[str, str, str], int]:
        """Attempts dispatched and not ended, per (namespace, workflow, task type)."""
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for run in self.runs.values():
            state = run.state
            if state is None or state.phase != "Running":
                continue
            for task in state.tasks:
                if task.active:
                    counts[(run.ref.namespace, run.ref.workflow, task.spec.type)] += task.active
        return counts

    def pinned_task_types(self, namespace: str, workflow: str) -> set[str]:
        """Task types that unfinished runs of older generations still need."""
        types: set[str] = set()
        for run in self.runs.values():
            if run.state is not None and run.ref.namespace == namespace and \
                    run.ref.workflow == workflow:
                types.update(t.spec.type for t in run.state.tasks)
        return types

    # -- events and timers --------------------------------------------------------------------
    def _on_delivery(self, delivery: Delivery) -> None:
        try:
            message = decode_event(delivery.body)
        except (ValidationError, ValueError) as error:
            log.error("Event dropped: malformed body routing_key=%s error=%s",
                      delivery.routing_key, str(error).splitlines()[0])
            self._metrics.events.labels("malformed", "dropped").inc()
            delivery.ack()
            return
        parsed = engine.parse_attempt_id(message.attempt_id)
        if parsed is None:
            log.error("Event dropped: not an attempt id attempt=%s", message.attempt_id)
            delivery.ack()
            return
        self._track_attempt(message.attempt_id, message.status, message.worker)
        run = self.runs.get(parsed[0])
        if run is None:
            log.debug("Event dropped: no such run attempt=%s", message.attempt_id)
            self._metrics.events.labels(message.status, "unknown-run").inc()
            delivery.ack()
            return
        if run.state is None:  # being rebuilt from its status: apply once it is
            self._parked[parsed[0]].append(delivery)
            return
        effect = self._apply(run, ev.from_message(message), delivery)
        self._metrics.events.labels(message.status, "applied" if effect else "ignored").inc()

    def _track_attempt(self, attempt: str, status: str, worker: str | None) -> None:
        """Who holds which attempt (for pod-deletion-cost) and how long attempts take."""
        if status in ("started", "heartbeat"):
            if worker:
                self.workers[attempt] = worker
            self._started.setdefault(attempt, time.monotonic())
        elif status in ("succeeded", "failed"):
            self.workers.pop(attempt, None)
            began = self._started.pop(attempt, None)
            if began is not None:
                self._metrics.task_duration.observe(time.monotonic() - began)

    def _release_parked(self, uid: str) -> None:
        for delivery in self._parked.pop(uid, []):
            self._on_delivery(delivery)

    def _cancel(self, run: ActiveRun) -> None:
        if run.state is None:
            return
        run.cancel_sent = True
        self._apply(run, ev.Cancel())

    def _apply(self, run: ActiveRun, event: ev.Event, delivery: Delivery | None = None) -> bool:
        state = run.state
        assert state is not None
        before = state.phase
        actions = engine.apply(state, event, time.time())
        for action in actions:
            if isinstance(action, ev.Publish):
                self._publish_task(run, action)
            elif isinstance(action, ev.SetTimer):
                self._arm(run, action.at)
            elif isinstance(action, ev.EmitRunEvent):
                self._publish_run_event(run, action)
            else:
                self._flusher.mark(run)
        if delivery is not None:
            if actions:
                run.acks.append(delivery)
            else:
                delivery.ack()
        if before != state.phase:
            self._count_phases()
        return bool(actions)

    def _arm(self, run: ActiveRun, at: float | None) -> None:
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if at is None or self._loop is None:
            return
        delay = max(0.0, at - time.time())
        run.timer = self._loop.call_later(delay, self._fire, run.ref.uid)

    def _fire(self, uid: str) -> None:
        run = self.runs.get(uid)
        if run is not None and run.state is not None:
            run.timer = None
            self._apply(run, ev.Tick())

    def _publish_task(self, run: ActiveRun, action: ev.Publish) -> None:
        ref = run.ref
        queue = names.queue_name(ref.namespace, ref.workflow, action.task_type)
        message = TaskMessage(
            attempt_id=action.attempt_id, namespace=ref.namespace, workflow=ref.workflow,
            run=ref.name, run_uid=ref.uid, task=action.task, index=action.index,
            attempt=action.attempt, task_type=action.task_type, inputs=action.inputs or {},
            timeout_seconds=action.timeout_seconds,
        )
        self._send(run, names.TASKS_EXCHANGE, queue, encode_task(message), action.attempt_id,
                   mandatory=True)
        self._metrics.dispatched.inc()
        self._on_dispatch(ref.namespace, ref.workflow, action.task_type)

    def _publish_run_event(self, run: ActiveRun, action: ev.EmitRunEvent) -> None:
        ref = run.ref
        body = RunEvent(phase=action.phase, namespace=ref.namespace, run=ref.name,  # type: ignore[arg-type]
                        run_uid=ref.uid, workflow=ref.workflow, message=action.message,
                        outputs=action.outputs)
        # Nobody may listen to run events: unroutable is fine, so not mandatory.
        self._send(run, names.EVENTS_EXCHANGE, names.run_routing_key(action.phase),
                   body.model_dump_json(by_alias=True, exclude_none=True).encode(),
                   f"{ref.uid}/run.{action.phase.lower()}", mandatory=False)

    def _send(self, run: ActiveRun, exchange: str, routing_key: str, body: bytes,
              message_id: str, *, mandatory: bool) -> None:
        confirmation = self._link.publish(exchange, routing_key, body, message_id=message_id,
                                    mandatory=mandatory)
        run.sends.append(Send(exchange, routing_key, body, message_id, mandatory,
                               confirmation))

    def _current(self, run: ActiveRun) -> bool:
        return self.runs.get(run.ref.uid) is run

    def _gone(self, run: ActiveRun, acks: list[Delivery]) -> None:
        self.forget(run.ref.uid)
        for delivery in acks:
            delivery.ack()

    def _written(self, run: ActiveRun, status: dict[str, Any]) -> None:
        posts = transitions(run.written_tasks, status)
        if posts:
            self._spawn(self._post(run.ref, posts))
        state = run.state
        if state is not None and state.phase in RUN_TERMINAL and not run.dirty:
            self._finished(run, status)

    async def _post(self, ref: RunRef, posts: list[Post]) -> None:
        for kind, reason, message in posts:
            try:
                await asyncio.to_thread(self._kube.post_event, ref.involved(), kind, reason,
                                        message)
            except KubeError as error:
                log.debug("Event not posted run=%s error=%s", ref.name, error)

    async def _write_outside_engine(self, run: ActiveRun, status: dict[str, Any],
                                    succeeded: str, reason: str, message: str) -> bool:
        """Write the status of a run the engine does not hold (waiting, or ended before it
        could start): its phase and message, and the Succeeded condition saying why."""
        status = {**status, "message": message,
                  "conditions": set_condition([], "Succeeded", succeeded, reason, message)}
        await self._flusher.bucket.take()
        try:
            await asyncio.to_thread(self._kube.replace_status, "workflowruns",
                                    run.ref.namespace, run.ref.name, status)
        except KubeError as error:
            log.warning("Status write failed run=%s error=%s", run.ref.name, error)
            return False
        return True

    async def _write_waiting(self, run: ActiveRun) -> None:
        """Status of a run that cannot start yet, saying what it waits for."""
        assert run.waiting is not None
        reason, message = run.waiting
        await self._write_outside_engine(run, {"phase": "Pending", "progress": "0/0"},
                                         "Unknown", reason, message)
        log.info("Run waiting run=%s/%s reason=%s", run.ref.namespace, run.ref.name, reason)

    async def _end_unstarted(self, run: ActiveRun, phase: str, reason: str,
                             message: str) -> None:
        """End a run the engine never held: cancelled while waiting, or not rebuildable."""
        finished = runstatus.format_time(engine.to_ms(time.time()))
        if await self._write_outside_engine(run, {"phase": phase, "finishedAt": finished},
                                            "False", reason, message):
            self.forget(run.ref.uid)

    # -- the end of a run ---------------------------------------------------------------------
    def _finished(self, run: ActiveRun, status: dict[str, Any]) -> None:
        ref = run.ref
        log.info("Run finished run=%s/%s phase=%s", ref.namespace, ref.name, status["phase"])
        self._metrics.runs_finished.labels(status["phase"]).inc()
        self._drop(run)
        self._schedule_ttl(ref, status.get("finishedAt"))

    def _schedule_ttl(self, ref: RunRef, finished_at: str | None) -> None:
        entry = self._book.get(ref.namespace, ref.workflow)
        if entry is None:
            self._ttl_unknown[ref.uid] = (ref, finished_at)
            return
        ttl = entry.spec.get("ttlSecondsAfterFinished")
        if ttl is None or self._loop is None or ref.uid in self._ttl:
            return
        ended = time.time()
        if finished_at:
            with contextlib.suppress(ValueError):
                ended = runstatus.parse_time(finished_at) / 1000
        delay = max(0.0, ended + float(ttl) - time.time())
        self._ttl[ref.uid] = self._loop.call_later(
            delay, lambda: self._spawn(self._expire(ref)))

    async def _expire(self, ref: RunRef) -> None:
        self._ttl.pop(ref.uid, None)
        try:
            await asyncio.to_thread(self._kube.delete_run, ref.namespace, ref.name, ref.uid)
            log.info("Run deleted after ttlSecondsAfterFinished run=%s/%s", ref.namespace,
                     ref.name)
        except KubeError as error:
            log.warning("Run deletion failed run=%s error=%s", ref.name, error)

    def _count_phases(self) -> None:
        counts: dict[str, int] = defaultdict(int)
        for run in self.runs.values():
            counts[run.phase] += 1
        for phase in ("Pending", "Running"):
            self._metrics.runs.labels(phase).set(counts.get(phase, 0))

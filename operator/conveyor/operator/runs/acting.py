"""Acting on the engine's decisions: a signal goes through `engine.apply`, and each action it
returns is carried out here, in order: publish attempts and run events (their confirms are
awaited before the status that records them is written), arm the run's timer, mark the run
for a status write. The worker event that caused the change is acked with that write, or at
once if it changed nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from conveyor import engine, names
from conveyor.broker.codec import encode_task
from conveyor.manifests import task_message
from conveyor.models import RunEvent
from conveyor.operator.metrics import Metrics
from conveyor.operator.runs.flushing import Flusher
from conveyor.operator.runs.leases import Leases
from conveyor.operator.runs.records import ActiveRun, Send
from conveyor.operator.runs.storage import NO_STORE, RunStorage
from conveyor.operator.seams import BrokerLink, Delivery
from conveyor.stored import ref_id

log = logging.getLogger("conveyor.operator.runs")


class Actor:
    """Applies signals to runs and carries out the actions that follow."""

    def __init__(self, runs: Mapping[str, ActiveRun], link: BrokerLink, flusher: Flusher,
                 metrics: Metrics, *, on_dispatch: Callable[[str, str, str], None],
                 on_phase_change: Callable[[], None], reply_to: str,
                 leases: Leases, retry_seconds: float,
                 spawn: Callable[[Coroutine[Any, Any, None]], None] | None = None,
                 storage: RunStorage | None = None) -> None:
        self._runs = runs
        self._leases = leases  # a dispatch is the first sign of an attempt
        self._retry_seconds = retry_seconds  # after a timer's Tick failed
        self._reply_to = reply_to  # this install: workers route the attempts' events to it
        self._link = link
        self._flusher = flusher
        self._metrics = metrics
        self._on_dispatch = on_dispatch  # (namespace, workflow, task type)
        self._on_phase_change = on_phase_change
        self._spawn = spawn
        self._storage = storage  # None: no object store, a Load fails at once

    def apply(self, run: ActiveRun, signal: engine.Signal,
              delivery: Delivery | None = None) -> bool:
        """Apply `signal` to `run`; whether it changed anything."""
        state = run.state
        assert state is not None
        before = state.phase
        actions = engine.apply(state, signal, time.time())
        for action in actions:
            if isinstance(action, engine.Publish):
                self._publish_task(run, action)
            elif isinstance(action, engine.SetTimer):
                self._arm(run, action.at)
            elif isinstance(action, engine.EmitRunEvent):
                self._publish_run_event(run, action)
            elif isinstance(action, engine.Load):
                self._load(run, action)
            else:
                self._flusher.mark(run)
        if delivery is not None:
            if actions:
                run.acks.append(delivery)
            else:
                delivery.ack()
        if before != state.phase:
            self._on_phase_change()
        return bool(actions)

    def resume(self, run: ActiveRun) -> None:
        """A run rebuilt from its status: handle what fell due while no operator ran, and arm
        the timer of what is still ahead (a Tick that changes nothing returns no SetTimer)."""
        state = run.state
        assert state is not None
        if not self.apply(run, engine.Tick()):
            self._arm(run, engine.next_timer(state))

    def _arm(self, run: ActiveRun, at: float | None) -> None:
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if at is None:
            return
        delay = max(0.0, at - time.time())
        run.timer = asyncio.get_running_loop().call_later(delay, self._fire, run.ref.uid)

    def _fire(self, uid: str) -> None:
        run = self._runs.get(uid)
        if run is not None and run.state is not None:
            run.timer = None
            try:
                self.apply(run, engine.Tick())
            except Exception:  # a callback of the loop: raising would drop the run's timer
                log.exception("Timer failed run=%s/%s; trying again in %.1fs",
                              run.ref.namespace, run.ref.name, self._retry_seconds)
                self._arm(run, time.time() + self._retry_seconds)

    def _load(self, run: ActiveRun, action: engine.Load) -> None:
        """Read stored values for the run, off the loop; then tell its engine (Loaded)."""
        storage = self._storage
        if storage is None or self._spawn is None:
            failed = {ref_id(r): NO_STORE for r in action.refs}
            asyncio.get_running_loop().call_soon(self._loaded, run.ref.uid, (), failed)
            return

        async def load() -> None:
            try:
                loaded, failed = await storage.load(action.refs)
            except Exception as error:  # a bug below: the run must not wait on nothing
                log.exception("Reading stored values failed run=%s/%s", run.ref.namespace,
                              run.ref.name)
                loaded, failed = (), {ref_id(r): f"reading it failed: {error!r}"
                                      for r in action.refs}
            self._loaded(run.ref.uid, loaded, failed)

        self._spawn(load())

    def _loaded(self, uid: str, loaded: tuple[str, ...], failed: dict[str, str]) -> None:
        run = self._runs.get(uid)
        if run is None or run.state is None:
            return
        try:
            self.apply(run, engine.Loaded(loaded, failed))
        except Exception:  # as for a timer: a bug must not leave the run waiting for ever
            log.exception("Applying stored values failed run=%s/%s; retrying in %.1fs",
                          run.ref.namespace, run.ref.name, self._retry_seconds)
            asyncio.get_running_loop().call_later(self._retry_seconds, self._loaded, uid,
                                                  loaded, failed)

    def _publish_task(self, run: ActiveRun, action: engine.Publish) -> None:
        ref = run.ref
        queue = names.queue_name(ref.namespace, ref.workflow, action.task_type)
        message = task_message(action, namespace=ref.namespace, workflow=ref.workflow,
                               run=ref.name, run_uid=ref.uid, reply_to=self._reply_to)
        self._send(run, names.TASKS_EXCHANGE, queue, encode_task(message), action.attempt_id,
                   mandatory=True)
        self._metrics.dispatched.inc()
        self._leases.renew(action.attempt_id, self._leases.now())
        self._on_dispatch(ref.namespace, ref.workflow, action.task_type)

    def _publish_run_event(self, run: ActiveRun, action: engine.EmitRunEvent) -> None:
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

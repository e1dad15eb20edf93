"""Event-driven starts from RabbitMQ: external events on `conveyor.events` that match a
Workflow's `triggers` create WorkflowRuns.

Each matching (Workflow, trigger) pair makes exactly one run, named from the event's message
id, so a redelivered event finds its run already there (409) and starts nothing new. The event
is acked only once every run it makes exists, or the API server can no longer help.

An event that cannot start a run is dropped, acked with an error log line (its id, routing key
and reason) and a count in `conveyor_trigger_events_dropped_total{reason}`, not dead-lettered:
the events come from outside, on a queue of the operator's install that expires when unused,
so a dead-letter queue there would have no owner to read it and nothing to bound it, and the
publisher, not the operator, holds the event that matters. Requeueing it would loop for ever.
The reasons: `too-large` (over MAX_EVENT_BYTES, unread: no run's inputs could hold it),
`too-deep` (JSON nested past what the decoder takes), `inputs-failed` (a trigger's inputs
failed to render; the other triggers it matches still run), `rejected` (the API server refused
the run for good: invalid, forbidden, namespace gone), `failed` (an error nobody foresaw).
Only an API server that did not answer or asked to wait has the event requeued.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from conveyor import names
from conveyor.broker import Admin
from conveyor.errors import ExpressionError
from conveyor.kube import KubeError
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager
from conveyor.operator.seams import BrokerLink, Delivery, KubeApi
from conveyor.operator.triggers.starting import Unusable, start_run
from conveyor.operator.workflows import Workflows
from conveyor.workflow import match_topic

log = logging.getLogger("conveyor.operator.triggers")

RETRY_SECONDS = 2.0
# An event's body becomes a run's inputs, and a run must fit in one object (the API server
# takes about 1.5 MiB): a larger body could never start one.
MAX_EVENT_BYTES = 1024 * 1024


def event_id(delivery: Delivery) -> str:
    """The event's message id; for an event published without one, a digest of its content
    (the same for every redelivery)."""
    if delivery.message_id:
        return delivery.message_id
    return hashlib.sha256(delivery.routing_key.encode() + b"\0" + delivery.body).hexdigest()


class TriggerRouter:
    """Consumes the install's trigger queue, binds the patterns Workflows use, makes runs."""

    def __init__(self, kube: KubeApi, workflows: Workflows, pools: PoolManager,
                 link: BrokerLink, queue: str, *, metrics: Metrics,
                 retry_seconds: float = RETRY_SECONDS) -> None:
        self.queue = queue
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._kube = kube
        self._workflows = workflows
        self._pools = pools
        self._link = link
        self._bound: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._link.consume(self.queue, 100, self._from_io_thread)

    async def sync_bindings(self, *, everything: bool = False) -> None:
        """Bind every pattern some Workflow's triggers use; unbind the ones none uses.
        `everything`: bind again even what was bound (the broker may have lost it)."""
        wanted = {t.pattern for entry in self._workflows.entries() if entry.compiled
                  for t in entry.compiled.triggers if t.pattern is not None}
        add, remove = (wanted if everything else wanted - self._bound), self._bound - wanted
        if not add and not remove:
            return

        def work(admin: Admin) -> None:
            admin.declare_events_queue(self.queue, ())
            for pattern in sorted(add):
                admin.bind(self.queue, pattern)
            for pattern in sorted(remove):
                admin.unbind(self.queue, pattern)

        await self._pools.admin_call(work)
        changed, self._bound = wanted != self._bound, wanted
        if changed:
            log.info("Trigger bindings synced patterns=%s", sorted(wanted))

    def _from_io_thread(self, delivery: Delivery) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._spawn, delivery)

    def _spawn(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, delivery: Delivery) -> None:
        if delivery.routing_key.startswith(("task.", "run.")):
            delivery.ack()  # Conveyor's own events never start runs
            return
        ident = event_id(delivery)
        try:
            await self._start_runs(delivery, ident)
        except KubeError as error:
            if error.retryable:
                log.warning("Run creation failed; event requeued event=%s error=%s", ident,
                            error)
                await asyncio.sleep(self._retry_seconds)
                delivery.requeue()
                return
            self._drop(delivery, ident, "rejected", str(error))
        except Unusable as error:
            self._drop(delivery, ident, error.reason, error.detail)
        except Exception as error:  # never leave an event unsettled: it would hold a slot
            log.exception("Failed to handle an event event=%s", ident)
            self._drop(delivery, ident, "failed", f"{type(error).__name__}: {error}")
        else:
            delivery.ack()

    async def _start_runs(self, delivery: Delivery, ident: str) -> None:
        event = _read(delivery.body)
        failed: list[str] = []
        for entry in self._workflows.entries():
            compiled = entry.compiled
            if compiled is None:
                continue
            for index, trigger in enumerate(compiled.triggers):
                if trigger.pattern is None or not match_topic(trigger.pattern,
                                                              delivery.routing_key):
                    continue
                try:
                    inputs = trigger.inputs.render({"event": event})
                except ExpressionError as error:
                    log.error("Trigger inputs failed workflow=%s/%s error=%s",
                              entry.owner.namespace, entry.owner.name, error)
                    failed.append(str(error))
                    continue
                await self._create(entry.owner.namespace, entry.owner.name, ident,
                                   index=index, routing_key=delivery.routing_key,
                                   inputs=inputs)
        if failed:  # the runs that could start have started: count what could not
            self._metrics.trigger_events_dropped.labels("inputs-failed").inc()

    def _drop(self, delivery: Delivery, ident: str, reason: str, detail: str) -> None:
        log.error("Dropped an event event=%s routingKey=%s reason=%s detail=%s", ident,
                  delivery.routing_key[:255], reason, detail[:1000])
        self._metrics.trigger_events_dropped.labels(reason).inc()
        delivery.ack()

    async def _create(self, namespace: str, workflow: str, ident: str, *, index: int,
                      routing_key: str, inputs: Any) -> None:
        await start_run(self._kube, namespace, workflow, ident, index=index, inputs=inputs,
                        annotations={f"{names.GROUP}/event": routing_key[:253]},
                        described=f"event={ident} routingKey={routing_key}")


def _read(body: bytes) -> Any:
    """The event as triggers see it: its JSON value, else its text."""
    if len(body) > MAX_EVENT_BYTES:
        raise Unusable("too-large", f"body of {len(body)} bytes; events of at most "
                                     f"{MAX_EVENT_BYTES} can start runs")
    try:
        return json.loads(body)
    except RecursionError:
        raise Unusable("too-deep", "body nests deeper than the JSON decoder allows") from None
    except ValueError:
        return body.decode(errors="replace")

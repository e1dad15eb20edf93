"""Event-driven starts: external events on `conveyor.events` that match a Workflow's
`triggers` create WorkflowRuns.

Each matching (Workflow, trigger) pair makes exactly one run, named from the event's message
id, so a redelivered event finds its run already there (409) and starts nothing new. The event
is acked only once every run it makes exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from typing import Any

from conveyor import names
from conveyor.broker import Admin
from conveyor.children import child_name
from conveyor.errors import ExpressionError
from conveyor.kube import KubeError
from conveyor.manifests import run_manifest
from conveyor.operator.pools import PoolManager
from conveyor.operator.seams import BrokerLink, Delivery, KubeApi
from conveyor.operator.workflows import Workflows
from conveyor.workflow import match_topic

log = logging.getLogger("conveyor.operator.triggers")

RETRY_SECONDS = 2.0
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def run_name(workflow: str, message_id: str, trigger: int) -> str:
    """A DNS-safe run name that depends only on the event and the trigger that matched it."""
    readable = _UNSAFE.sub("-", message_id.lower()).strip("-")[:20].strip("-")
    digest = hashlib.sha256(f"{workflow}\0{message_id}\0{trigger}".encode()).hexdigest()[:10]
    return child_name(workflow, *(p for p in (readable, digest) if p))


def event_id(delivery: Delivery) -> str:
    """The event's message id; for an event published without one, a digest of its content
    (the same for every redelivery)."""
    if delivery.message_id:
        return delivery.message_id
    return hashlib.sha256(delivery.routing_key.encode() + b"\0" + delivery.body).hexdigest()


class TriggerRouter:
    """Consumes the install's trigger queue, binds the patterns Workflows use, makes runs."""

    def __init__(self, kube: KubeApi, workflows: Workflows, pools: PoolManager,
                 link: BrokerLink, queue: str) -> None:
        self.queue = queue
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
                  for t in entry.compiled.triggers}
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
        try:
            event: Any = json.loads(delivery.body)
        except ValueError:
            event = delivery.body.decode(errors="replace")
        ident = event_id(delivery)
        try:
            for entry in self._workflows.entries():
                compiled = entry.compiled
                if compiled is None:
                    continue
                for index, trigger in enumerate(compiled.triggers):
                    if not match_topic(trigger.pattern, delivery.routing_key):
                        continue
                    try:
                        inputs = trigger.inputs.render({"event": event})
                    except ExpressionError as error:
                        log.error("Trigger inputs failed workflow=%s/%s error=%s",
                                  entry.owner.namespace, entry.owner.name, error)
                        continue
                    await self._create(entry.owner.namespace, entry.owner.name, ident,
                                       index=index, routing_key=delivery.routing_key,
                                       inputs=inputs)
        except KubeError as error:
            log.warning("Run creation failed; event requeued event=%s error=%s", ident, error)
            await asyncio.sleep(RETRY_SECONDS)
            delivery.requeue()
            return
        delivery.ack()

    async def _create(self, namespace: str, workflow: str, ident: str, *, index: int,
                      routing_key: str, inputs: Any) -> None:
        name = run_name(workflow, ident, index)
        body = run_manifest(
            workflow, inputs if isinstance(inputs, dict) else {"value": inputs}, name=name,
            labels={names.LABEL_WORKFLOW: workflow},
            annotations={f"{names.GROUP}/event-id": ident[:253],
                         f"{names.GROUP}/event": routing_key[:253]})
        try:
            await self._kube.create_run(namespace, body)
        except KubeError as error:
            if error.conflict:
                log.info("Run exists for event run=%s/%s event=%s", namespace, name, ident)
                return
            raise
        log.info("Run created by trigger run=%s/%s event=%s routingKey=%s", namespace, name,
                 ident, routing_key)

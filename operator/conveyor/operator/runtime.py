"""The operator's parts, assembled once on kopf's loop, and their start and stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from conveyor.broker import Admin, Link
from conveyor.kube import AsyncKube, Kube
from conveyor.names import TASK_EVENTS_PATTERN, operator_queue
from conveyor.operator.health import Health
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager
from conveyor.operator.reconcile import Reconciler
from conveyor.operator.runs import RunManager
from conveyor.operator.settings import Settings
from conveyor.operator.supervision import supervised
from conveyor.operator.triggers import TriggerRouter
from conveyor.operator.workflows import Workflows

log = logging.getLogger("conveyor.operator")


class Runtime:
    """Every part of the operator, wired once: the real adapters behind the seams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.kube = AsyncKube(Kube())
        self.workflows = Workflows(self.kube)
        self.link = Link(settings.broker, name="conveyor-operator")
        self.trigger_link = Link(settings.broker, name="conveyor-operator-triggers")
        # The run loop is made after the pools (it reports dispatches to them): late-bound.
        self.pools = PoolManager(settings, self.kube, metrics=self.metrics,
                                 in_flight=lambda: self.runs.in_flight(),  # noqa: PLW0108
                                 workers=lambda: self.runs.workers)
        self.runs = RunManager(settings, self.kube, self.link, self.workflows,
                               metrics=self.metrics, on_dispatch=self.pools.dispatched)
        self.reconciler = Reconciler(settings, self.kube, self.workflows, self.pools,
                                     self.runs)
        self.events_queue = operator_queue(settings.instance, "events")
        self.triggers = TriggerRouter(self.kube, self.workflows, self.pools, self.trigger_link,
                                      operator_queue(settings.instance, "triggers"),
                                      metrics=self.metrics)
        self.health = Health(self.kube, self.metrics,
                             [("events", lambda: self.link.connected),
                              ("triggers", lambda: self.trigger_link.connected)],
                             namespace=settings.namespaces[0] if settings.namespaces else None)
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: web.AppRunner | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def topology(admin: Admin) -> None:
            admin.declare_exchanges()
            admin.declare_events_queue(self.events_queue, [TASK_EVENTS_PATTERN])
            admin.declare_events_queue(self.triggers.queue, ())

        await self.pools.admin_call(topology)
        self.link.start()
        self.trigger_link.start()
        existing: list[dict[str, Any]] = []
        for namespace in self.settings.namespaces or (None,):
            existing += await self.kube.list_custom("workflowruns", namespace)
        self.runs.start(loop, self.events_queue, existing)
        self.triggers.start(loop)
        self._tasks = [loop.create_task(supervised("pools", self.pools.run)),
                       loop.create_task(supervised("api-probe", self.health.probe))]
        if self.settings.health_port:
            self._server = await self.health.serve(self.settings.health_address,
                                                   self.settings.health_port)
        log.info("Operator started broker=%s namespaces=%s queues=%s,%s",
                 self.settings.broker.masked, ",".join(self.settings.namespaces) or "all",
                 self.events_queue, self.triggers.queue)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            await self._server.cleanup()
        await asyncio.to_thread(self.link.close)
        await asyncio.to_thread(self.trigger_link.close)
        log.info("Operator stopped")

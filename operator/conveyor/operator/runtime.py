"""The operator's parts, assembled once on kopf's loop, and their start and stop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from conveyor import kafka, names
from conveyor.broker import Admin, BrokerError, BrokerSettingsError, Link, TLSError, topology
from conveyor.kube import AsyncKube, Kube, KubeError
from conveyor.names import LEGACY_TASK_EVENTS_PATTERN, operator_queue, task_events_pattern
from conveyor.operator.forwarding import RunEventForwarder
from conveyor.operator.forwarding import queue_name as run_events_queue
from conveyor.operator.health import Health
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager
from conveyor.operator.reconcile import Reconciler
from conveyor.operator.removal import RemovalWatch
from conveyor.operator.runs import RunManager
from conveyor.operator.runs.leasekeeping import LeaseKeeper
from conveyor.operator.runs.storage import CONCURRENCY, RunStorage
from conveyor.operator.settings import Settings
from conveyor.operator.supervision import supervised
from conveyor.operator.triggers import KafkaTriggers, Scheduler, TriggerRouter
from conveyor.operator.workflows import Workflows
from conveyor.store import ObjectStore, Values

log = logging.getLogger("conveyor.operator")

TOPOLOGY_SECONDS = 60.0
START_RETRY_SECONDS = (1.0, 30.0)  # the first and the longest pause between start attempts


class Runtime:
    """Every part of the operator, wired once: the real adapters behind the seams."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.kube = AsyncKube(Kube())
        self.removal: RemovalWatch | None = None
        deployment = settings.own_deployment
        if deployment is not None:
            namespace = settings.lease_namespace
            self.removal = RemovalWatch(lambda seconds: self.kube.sync.wait_deployment_gone(
                namespace, deployment, seconds))
        self.workflows = Workflows(self.kube)
        self.link = Link(settings.broker, name="conveyor-operator")
        self.trigger_link = Link(settings.broker, name="conveyor-operator-triggers")
        # The run loop is made after the pools (it reports dispatches to them): late-bound.
        self.pools = PoolManager(settings, self.kube, metrics=self.metrics,
                                 in_flight=lambda: self.runs.in_flight(),  # noqa: PLW0108
                                 workers=lambda: self.runs.workers,
                                 on_round=lambda: self.health.beat("pools"))
        self.object_store: ObjectStore | None = None
        storage = None
        if settings.store is not None:
            self.object_store = ObjectStore(settings.store, max_connections=CONCURRENCY)
            storage = RunStorage(
                Values(self.object_store, max_bytes=settings.store_max_object_bytes),
                self.object_store, bucket=settings.store.bucket,
                key_prefix=settings.store.prefix, cache_bytes=settings.store_cache_bytes)
        self.runs = RunManager(settings, self.kube, self.link, self.workflows,
                               metrics=self.metrics, on_dispatch=self.pools.dispatched,
                               storage=storage)
        self.lease_keeper = LeaseKeeper(
            self.runs.runs, self.runs.actor, self.runs.leases, self.link, self.metrics,
            emptied_at=self.pools.emptied_at, unread_events=self._unread_events,
            unread_limit=0, interval=max(1.0, min(30.0, settings.lease_seconds / 4)))
        self.reconciler = Reconciler(settings, self.kube, self.workflows, self.pools,
                                     self.runs)
        self.events_queue = operator_queue(settings.instance, "events")
        self.triggers = TriggerRouter(self.kube, self.workflows, self.pools, self.trigger_link,
                                      operator_queue(settings.instance, "triggers"),
                                      metrics=self.metrics)
        self.scheduler = Scheduler(self.kube, self.workflows)
        self.health = Health(self.kube, self.metrics,
                             [("events", self.link), ("triggers", self.trigger_link)],
                             namespace=settings.namespaces[0] if settings.namespaces else None)
        self._tasks: list[asyncio.Task[Any]] = []
        self._server: web.AppRunner | None = None
        self._kafka_parts()

    def _kafka_parts(self) -> None:
        """Kafka triggers and the run events' forwarder, when Kafka is configured."""
        settings = self.settings
        self.kafka_triggers: KafkaTriggers | None = None
        self.forwarder: RunEventForwarder | None = None
        self.kafka_consumer: kafka.client.Consumer | None = None
        self.kafka_producer: kafka.client.Producer | None = None
        self.kafka_link: Link | None = None
        if settings.kafka is None:
            return
        self.kafka_consumer = kafka.consumer(
            settings.kafka, settings.kafka_group, name="conveyor-operator",
            max_in_flight=settings.kafka_max_in_flight,
            auto_offset_reset=settings.kafka_auto_offset_reset)
        self.kafka_triggers = KafkaTriggers(self.kube, self.workflows, self.kafka_consumer,
                                            metrics=self.metrics)
        if settings.kafka_run_events_topic:
            self.kafka_producer = kafka.producer(settings.kafka, name="conveyor-operator")
            self.kafka_link = Link(settings.broker, name="conveyor-operator-kafka")
            self.forwarder = RunEventForwarder(
                self.kafka_link, self.kafka_producer, self.pools,
                queue=run_events_queue(settings.instance),
                topic=settings.kafka_run_events_topic, metrics=self.metrics)

    async def _start_kafka(self, loop: asyncio.AbstractEventLoop) -> None:
        settings = self.settings
        if self.kafka_triggers is not None and settings.kafka is not None:
            self.kafka_triggers.start(loop)
            self._tasks.append(loop.create_task(supervised("kafka-triggers",
                                                           self.kafka_triggers.run)))
            log.info("Kafka triggers started kafka=%s group=%s", settings.kafka.masked,
                     settings.kafka_group)
        if self.forwarder is not None and self.kafka_producer is not None:
            assert self.kafka_link is not None
            await self.forwarder.declare()
            self.kafka_producer.start()
            self.kafka_link.start()
            self.forwarder.start()
            self._tasks.append(loop.create_task(supervised("kafka-run-events",
                                                           self.forwarder.run)))
            log.info("Run events forwarded to Kafka topic=%s queue=%s", self.forwarder.topic,
                     self.forwarder.queue)

    async def _stop_kafka(self) -> None:
        if self.kafka_link is not None:
            await asyncio.to_thread(self.kafka_link.close)
        if self.kafka_producer is not None:
            await asyncio.to_thread(self.kafka_producer.close)
        if self.kafka_consumer is not None:
            await asyncio.to_thread(self.kafka_consumer.close)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The probes answer from the first moment: live, and not ready until the start is
        # done. A broker or API server down at start is waited for here, not by kopf's
        # retries of the startup handler, so liveness never restarts an operator that waits.
        if self.settings.health_port:
            self._server = await self.health.serve(self.settings.health_address,
                                                   self.settings.health_port)
        try:
            existing = await self._until_reachable()
        except BaseException:
            await self._stop_server()
            raise
        if self.removal is not None:
            self.removal.start()
        self.link.start()
        self.trigger_link.start()
        self.runs.start(loop, self.events_queue, existing)
        self.triggers.start(loop)
        self._tasks = [loop.create_task(supervised("pools", self.pools.run)),
                       loop.create_task(supervised("leases", self.lease_keeper.run)),
                       loop.create_task(supervised("topology", self._keep_topology)),
                       loop.create_task(supervised("api-probe", self.health.probe)),
                       loop.create_task(supervised("schedules", self.scheduler.run))]
        await self._start_kafka(loop)
        self.health.starting = None
        log.info("Operator started broker=%s namespaces=%s queues=%s,%s",
                 self.settings.broker.masked, ",".join(self.settings.namespaces) or "all",
                 self.events_queue, self.triggers.queue)

    async def _until_reachable(self) -> list[dict[str, Any]]:
        """The install's queues declared and the runs listed, tried again until the broker
        and the API server answer; a broker that refuses TLS or a URL pika refuses is no
        outage: it raises at once (the operator exits saying why)."""
        pause, longest = START_RETRY_SECONDS
        while True:
            try:
                await self.pools.admin_call(self._declare_topology)
                existing: list[dict[str, Any]] = []
                for namespace in self.settings.namespaces or (None,):
                    existing += await self.kube.list_custom("workflowruns", namespace)
                return existing
            except (TLSError, BrokerSettingsError):
                raise
            except (BrokerError, KubeError) as error:
                self.health.starting = f"starting: {error}"
                log.warning("Start waits for the broker and the API server; retrying in "
                            "%.0fs error=%s", pause, error)
            await asyncio.sleep(pause)
            pause = min(longest, pause * 2)

    async def _stop_server(self) -> None:
        if self._server is not None:
            await self._server.cleanup()
            self._server = None

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._stop_server()
        await asyncio.to_thread(self.link.close)
        await asyncio.to_thread(self.trigger_link.close)
        await self._stop_kafka()
        await self._remove_queues_if_uninstalled()
        if self.object_store is not None:
            self.object_store.close()
        log.info("Operator stopped")

    def _declare_topology(self, admin: Admin) -> None:
        admin.declare_exchanges()
        admin.declare_events_queue(self.events_queue,
                                   [task_events_pattern(self.settings.instance)])
        # A queue made by an older operator also bound every install's events: not now.
        admin.unbind(self.events_queue, LEGACY_TASK_EVENTS_PATTERN)
        admin.declare_events_queue(self.triggers.queue, ())
        admin.declare_queue(topology.install_dead_letter_queue(
            names.dead_letter_queue(self.events_queue)))

    async def _keep_topology(self) -> None:
        """The install's queues and bindings, declared again every TOPOLOGY_SECONDS (it is
        idempotent): after a broker lost its data, or a queue was deleted by hand, they are
        back within that time, and the consumers find them again (the task queues come back
        with each Workflow's drift reconcile, the lost messages by their leases)."""
        while True:
            await asyncio.sleep(TOPOLOGY_SECONDS)  # the period of the loop
            try:
                await self.pools.admin_call(self._declare_topology)
                await self.triggers.sync_bindings(everything=True)
            except BrokerError as error:
                log.warning("Declaring the install's queues failed error=%s", error)

    async def _unread_events(self) -> int | None:
        """Events ready in this install's queue, not yet delivered to it; None: unknown."""
        try:
            stats = await self.pools.admin_call(lambda admin: admin.inspect(self.events_queue))
        except BrokerError as error:
            log.debug("Inspecting the events queue failed error=%s", error)
            return None
        return None if stats is None else stats.backlog

    async def _remove_queues_if_uninstalled(self) -> None:
        """Stopping because the install was removed (its Deployment is gone): its queues go
        too, so nothing keeps collecting events for it. Any doubt keeps them: an unanswered
        API server, or a consumer still on a queue (another replica, or a new install under
        the same name)."""
        deployment = self.settings.own_deployment
        if deployment is None or self.removal is None:
            return
        if not self.removal.removed:
            try:
                if await self.kube.deployment_present(self.settings.lease_namespace,
                                                      deployment):
                    return
            except KubeError as error:
                log.info("Kept the install's queues: its Deployment was not seen to go, and "
                         "cannot be read now error=%s", error)
                return

        def remove(admin: Admin) -> None:
            forwarded = [self.forwarder.queue] if self.forwarder is not None else []
            for queue in (self.events_queue, self.triggers.queue,
                          names.dead_letter_queue(self.events_queue), *forwarded):
                stats = admin.inspect(queue)
                if stats is not None and stats.consumers > 0:
                    log.info("Kept queue=%s: it has %d consumers", queue, stats.consumers)
                    continue
                admin.delete_queue(queue)
                log.info("Deleted queue=%s: the install is removed", queue)

        try:
            await self.pools.admin_call(remove)
        except BrokerError as error:
            log.warning("Failed to delete the install's queues error=%s", error)

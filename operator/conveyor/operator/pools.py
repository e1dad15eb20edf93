"""The autoscaler and the pool figures of Workflow status.

Every `pool_interval` seconds it looks at each pool (task type) of each Workflow: the backlog
and dead letters from the broker, the attempts in flight from the run loop; it scales the
Deployment by the pure policy in `conveyor.scaling`, and writes the figures into the Workflow's
status when they changed. A dispatch to a pool with zero replicas is evaluated at once, so
scale-up from zero never waits for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor import names, scaling
from conveyor.broker import Admin, BrokerError, QueueStats
from conveyor.children import deployment_name, selector_labels
from conveyor.kube import KubeError
from conveyor.models import Scaling
from conveyor.operator.metrics import Metrics
from conveyor.operator.seams import KubeApi
from conveyor.operator.settings import Settings

log = logging.getLogger("conveyor.operator.pools")

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

PoolKey = tuple[str, str, str]  # namespace, workflow, task type
T = TypeVar("T")


@dataclass
class Pool:
    """One worker pool (task type): its scaling policy and state, and its last figures."""

    key: PoolKey
    policy: Scaling
    state: scaling.PoolState
    backlog: int = 0
    dead_letters: int = 0
    ready_replicas: int = 0
    emptied_at: float | None = None
    """When its queue was last seen with no message ready (monotonic); None: not yet."""

    @property
    def deployment(self) -> str:
        return deployment_name(self.key[1], self.key[2])

    @property
    def queue(self) -> str:
        return names.queue_name(*self.key)


class PoolManager:
    """The worker pools of every Workflow: their figures, their scaling, their admin link."""

    def __init__(self, settings: Settings, kube: KubeApi, *, metrics: Metrics,
                 in_flight: Callable[[], dict[PoolKey, int]],
                 workers: Callable[[], dict[str, str]]) -> None:
        self._settings = settings
        self._kube = kube
        self._metrics = metrics
        self._in_flight = in_flight
        self._workers = workers  # attempt id -> pod
        self.pools: dict[PoolKey, Pool] = {}
        self._admin: Admin | None = None
        self._admin_lock = asyncio.Lock()
        self._urgent: set[PoolKey] = set()
        self._wake = asyncio.Event()
        self._written: dict[tuple[str, str], Any] = {}

    # -- what the Workflow reconcile tells ----------------------------------------------------
    def register(self, namespace: str, workflow: str, task_type: str, spec: Scaling,
                 current_replicas: int | None) -> int:
        """Track a pool; returns the replicas its Deployment should be applied with."""
        key = (namespace, workflow, task_type)
        pool = self.pools.get(key)
        if pool is None:
            replicas = current_replicas if current_replicas is not None else spec.min_replicas
            pool = self.pools[key] = Pool(key, spec, scaling.PoolState(replicas))
        pool.policy = spec
        bounded = max(spec.min_replicas, min(spec.max_replicas, pool.state.replicas))
        if bounded != pool.state.replicas:
            pool.state = scaling.PoolState(bounded)
        return int(pool.state.replicas)

    def unregister(self, namespace: str, workflow: str, task_type: str | None = None) -> None:
        for key in [k for k in self.pools if k[:2] == (namespace, workflow)
                    and (task_type is None or k[2] == task_type)]:
            del self.pools[key]
        if task_type is None:
            self._written.pop((namespace, workflow), None)

    def dispatched(self, namespace: str, workflow: str, task_type: str) -> None:
        """A task went to the pool's queue: a pool at zero replicas scales up now."""
        pool = self.pools.get((namespace, workflow, task_type))
        if pool is not None and pool.state.replicas == 0:
            self._urgent.add(pool.key)
            self._wake.set()

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.pool_interval)
            self._wake.clear()
            urgent, self._urgent = self._urgent, set()
            try:
                if urgent:
                    await self._evaluate(urgent, with_broker=False)
                else:
                    await self._evaluate(set(self.pools), with_broker=True)
                    await self._write_statuses()
            except Exception:
                log.exception("Pool round failed")

    async def _evaluate(self, keys: set[PoolKey], *, with_broker: bool) -> None:
        if with_broker:
            await self._refresh_broker_figures(keys)
        in_flight = self._in_flight()
        now = time.monotonic()
        for key in keys:
            pool = self.pools.get(key)
            if pool is None:
                continue
            flying = in_flight.get(key, 0)
            # Queued attempts are both in the backlog and in flight: count them once.
            backlog = max(0, pool.backlog - flying) if with_broker else 0
            decision = scaling.decide(pool.policy, pool.state, backlog, flying, now)
            self._metrics.in_flight.labels(*key).set(flying)
            if decision.changed:
                try:
                    await self._scale(pool, decision.replicas)
                except KubeError as error:
                    log.warning("Scaling failed pool=%s error=%s", "/".join(key), error)
                    continue
                log.info("Pool scaled pool=%s replicas=%d reason=%s", "/".join(key),
                         decision.replicas, decision.reason)
            pool.state = decision.state
            self._metrics.replicas.labels(*key).set(pool.state.replicas)

    async def _scale(self, pool: Pool, replicas: int) -> None:
        namespace = pool.key[0]
        if replicas < pool.state.replicas:
            await self._mark_busy_pods(pool)
        await self._kube.scale_deployment(namespace, pool.deployment, replicas)

    async def _mark_busy_pods(self, pool: Pool) -> None:
        """Give busy pods a high deletion cost so the ReplicaSet removes idle ones first."""
        namespace, workflow, task_type = pool.key
        pods = await self._kube.list_pods(namespace, selector_labels(workflow, task_type))
        held = Counter(self._workers().values())
        for pod, cost in scaling.pod_deletion_costs(pods, held).items():
            await self._kube.annotate_pod(namespace, pod, {DELETION_COST: str(cost)})

    async def _refresh_broker_figures(self, keys: set[PoolKey]) -> None:
        async with self._admin_lock:
            seen = time.monotonic()  # the figures are at least this fresh
            try:
                stats = await asyncio.to_thread(self._inspect, sorted(keys))
            except BrokerError as error:
                log.warning("Broker inspection failed error=%s", error)
                self._drop_admin()
                return
        for key, (queue, dead) in stats.items():
            pool = self.pools.get(key)
            if pool is None:
                continue
            pool.backlog = queue.backlog if queue else 0
            pool.dead_letters = dead.backlog if dead else 0
            if queue is not None and queue.backlog == 0:
                pool.emptied_at = seen
            self._metrics.backlog.labels(*key).set(pool.backlog)

    def _inspect(self, keys: list[PoolKey]) -> dict[PoolKey, tuple[QueueStats | None,
                                                                   QueueStats | None]]:
        if self._admin is None:
            self._admin = Admin(self._settings.broker)
        result = {}
        for key in keys:
            queue = names.queue_name(*key)
            result[key] = (self._admin.inspect(queue),
                           self._admin.inspect(names.dead_letter_queue(queue)))
        return result

    def _drop_admin(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:  # the connection is already broken; nothing to save
                log.debug("Admin close failed", exc_info=True)
            self._admin = None

    def emptied_at(self, key: PoolKey) -> float | None:
        """When the pool's queue was last seen with no message ready (monotonic)."""
        pool = self.pools.get(key)
        return None if pool is None else pool.emptied_at

    async def admin_call(self, call: Callable[[Admin], T]) -> T:
        """Run a declare, delete or inspect on the shared admin connection (serialised)."""
        async with self._admin_lock:
            def work() -> T:
                if self._admin is None:
                    self._admin = Admin(self._settings.broker)
                return call(self._admin)

            try:
                return await asyncio.to_thread(work)
            except BrokerError:
                self._drop_admin()
                raise

    # -- Workflow status ----------------------------------------------------------------------
    def figures(self, namespace: str, workflow: str) -> list[dict[str, Any]]:
        """`status.taskTypes` of a Workflow from what the pools know."""
        entries = []
        in_flight = self._in_flight()
        for key, pool in sorted(self.pools.items()):
            if key[:2] != (namespace, workflow):
                continue
            entries.append({
                "name": key[2], "queue": pool.queue, "deployment": pool.deployment,
                "replicas": pool.state.replicas, "readyReplicas": pool.ready_replicas,
                "backlog": pool.backlog, "inFlight": in_flight.get(key, 0),
                "deadLetters": pool.dead_letters,
            })
        return entries

    async def _refresh_ready_replicas(self) -> None:
        """Ready replicas of every pool: one listing per namespace, not one per Workflow."""
        ready: dict[PoolKey, int] = {}
        listed: set[str] = set()
        for namespace in sorted({key[0] for key in self.pools}):
            try:
                found = await self._kube.list_deployments(
                    namespace, {names.LABEL_MANAGED_BY: names.FIELD_MANAGER})
            except KubeError as error:
                log.warning("Listing Deployments failed namespace=%s error=%s", namespace, error)
                continue
            listed.add(namespace)
            ready.update({(namespace, d.workflow, d.task_type): d.ready_replicas for d in found})
        for key, pool in self.pools.items():
            if key[0] in listed:
                pool.ready_replicas = ready.get(key, 0)

    async def _write_statuses(self) -> None:
        await self._refresh_ready_replicas()
        for namespace, workflow in sorted({key[:2] for key in self.pools}):
            figures = self.figures(namespace, workflow)
            if self._written.get((namespace, workflow)) == figures:
                continue
            try:
                await self._kube.patch_status("workflows", namespace, workflow,
                                              {"taskTypes": figures})
            except KubeError as error:
                if not error.not_found:
                    log.warning("Workflow status write failed workflow=%s error=%s",
                                workflow, error)
                continue
            self._metrics.status_writes.labels("Workflow", "ok").inc()
            self._written[(namespace, workflow)] = figures

"""The autoscaler and the pool figures of Workflow status.

Every `pool_interval` seconds it looks at each pool (task type) of each Workflow: the backlog
and dead letters from the broker, the attempts in flight from the run loop; it scales the
Deployment by the pure policy in `conveyor.scaling`, and writes the figures into the Workflow's
status when they changed. A dispatch to a pool with zero replicas is evaluated at once, so
scale-up from zero never waits for the next round.

It also reads the pools' pods (one listing per namespace and round) and says, per pool, why
its pods cannot run (`pool_trouble`, pure: an image that cannot be pulled, a container that
crash-loops or lacks its config, a pod that cannot be scheduled), as the pool's `reason` and
`message` and the Workflow's `PoolsHealthy` condition (`pools_condition`, pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from conveyor import names, scaling
from conveyor.broker import Admin, BrokerError, QueueStats
from conveyor.children import deployment_name, selector_labels
from conveyor.conditions import Condition, find, set_condition
from conveyor.kube import KubeError
from conveyor.models import Scaling
from conveyor.operator.metrics import Metrics
from conveyor.operator.seams import KubeApi
from conveyor.operator.settings import Settings

log = logging.getLogger("conveyor.operator.pools")

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

PoolKey = tuple[str, str, str]  # namespace, workflow, task type
T = TypeVar("T")

POOLS_HEALTHY = "PoolsHealthy"
# The kubelet's waiting reasons that mean a container cannot run until someone acts, the
# most telling first: when a pool's pods differ, the pool shows the first one found.
WAITING_REASONS = (
    "InvalidImageName", "ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
    "CrashLoopBackOff",
)
IMAGE_REASONS = frozenset(WAITING_REASONS[:4])
UNSCHEDULABLE = "Unschedulable"
RESTARTED_RECENTLY = 60.0
"""A container that failed, was restarted and runs for less than this still crash-loops:
the pool's reason does not flap off for the moment it runs between two crashes."""


@dataclass(frozen=True)
class PoolTrouble:
    """Why a pool's pods cannot run: the kubelet's reason, and a message naming the pod,
    the container and its image."""

    reason: str
    message: str


def _since(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return None


def _container_trouble(pod: str, status: Mapping[str, Any],
                       now: datetime) -> PoolTrouble | None:
    name = status.get("name", "")
    image = status.get("image", "")
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    last = (status.get("lastState") or {}).get("terminated") or {}
    restarts = int(status.get("restartCount") or 0)
    if reason in IMAGE_REASONS:
        return PoolTrouble(reason, f"pod {pod}: container {name}: image {image!r} cannot be "
                                   f"pulled: {waiting.get('message') or reason}")
    if reason in WAITING_REASONS and reason != "CrashLoopBackOff":
        return PoolTrouble(reason, f"pod {pod}: container {name} (image {image!r}) cannot "
                                   f"start: {waiting.get('message') or reason}")
    exited = ""
    if last:
        exited = f", last exit code {last.get('exitCode')} ({last.get('reason') or 'Error'})"
    if reason == "CrashLoopBackOff":
        return PoolTrouble(reason, f"pod {pod}: container {name} (image {image!r}) crashed "
                                   f"and was restarted {restarts} times{exited}: "
                                   f"{waiting.get('message') or reason}")
    running = state.get("running")
    failed_before = restarts > 0 and last and last.get("exitCode") not in (0, None)
    if running is not None and failed_before:
        up = _since(running.get("startedAt"), now)
        if up is not None and up < RESTARTED_RECENTLY:
            return PoolTrouble("CrashLoopBackOff",
                               f"pod {pod}: container {name} (image {image!r}) crashed and "
                               f"was restarted {restarts} times{exited}; running again since "
                               f"{running.get('startedAt')}")
    return None


def _pod_trouble(pod: Mapping[str, Any], now: datetime) -> PoolTrouble | None:
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # going: what it says no longer matters
    name = meta.get("name", "")
    status = pod.get("status") or {}
    found = [t for c in [*(status.get("initContainerStatuses") or []),
                         *(status.get("containerStatuses") or [])]
             if (t := _container_trouble(name, c, now)) is not None]
    for condition in status.get("conditions") or []:
        if (condition.get("type") == "PodScheduled" and condition.get("status") == "False"
                and condition.get("reason") == UNSCHEDULABLE):
            found.append(PoolTrouble(UNSCHEDULABLE, f"pod {name} cannot be scheduled: "
                                     f"{condition.get('message') or UNSCHEDULABLE}"))
    return min(found, key=_rank, default=None)


def _rank(trouble: PoolTrouble) -> int:
    order = (*WAITING_REASONS, UNSCHEDULABLE)
    return order.index(trouble.reason) if trouble.reason in order else len(order)


def pool_trouble(pods: Sequence[Mapping[str, Any]], now: datetime) -> PoolTrouble | None:
    """Why the pool's pods (Pod objects as JSON, as the API server gives them) cannot run,
    or None: the most telling reason of any of them (`WAITING_REASONS`, then
    `Unschedulable`), its message prefixed with how many pods are in trouble."""
    troubled = sorted(((t, (p.get("metadata") or {}).get("name", "")) for p in pods
                       if (t := _pod_trouble(p, now)) is not None),
                      key=lambda found: (_rank(found[0]), found[1]))
    if not troubled:
        return None
    first = troubled[0][0]
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    return PoolTrouble(first.reason, f"{len(troubled)} of {len(live)} pods: {first.message}")


def pools_condition(troubles: Mapping[str, PoolTrouble | None]) -> tuple[str, str, str]:
    """The Workflow's `PoolsHealthy` condition (status, reason, message) from its pools'
    troubles by task type: False with the first troubled pool's reason."""
    bad = sorted((name, t) for name, t in troubles.items() if t is not None)
    if not bad:
        return "True", "PodsRunnable", "no worker pod is kept from running"
    reason = bad[0][1].reason
    return "False", reason, "; ".join(f"pool {name}: {t.reason}: {t.message}"
                                      for name, t in bad)


@dataclass
class Pool:
    """One worker pool (task type): its scaling policy and state, and its last figures."""

    key: PoolKey
    policy: Scaling
    state: scaling.PoolState
    backlog: int = 0
    dead_letters: int = 0
    ready_replicas: int = 0
    trouble: PoolTrouble | None = None
    """Why its pods cannot run, from the last listing of its pods; None: nothing known."""
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
                 workers: Callable[[], dict[str, str]],
                 on_round: Callable[[], None] | None = None) -> None:
        self._settings = settings
        self._kube = kube
        self._metrics = metrics
        self._in_flight = in_flight
        self._workers = workers  # attempt id -> pod
        self._on_round = on_round  # the liveness beat of the loop
        self.pools: dict[PoolKey, Pool] = {}
        self._admin: Admin | None = None
        self._admin_lock = asyncio.Lock()
        self._urgent: set[PoolKey] = set()
        self._wake = asyncio.Event()
        self._written: dict[tuple[str, str], Any] = {}
        # The Workflow's conditions and generation as the reconcile last wrote or saw them:
        # a pool round writes them back with PoolsHealthy set (a merge patch replaces lists).
        self._conditions: dict[tuple[str, str], tuple[int | None, list[Condition]]] = {}

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
            self._conditions.pop((namespace, workflow), None)

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
            if self._on_round is not None:
                self._on_round()

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
            entry: dict[str, Any] = {
                "name": key[2], "queue": pool.queue, "deployment": pool.deployment,
                "replicas": pool.state.replicas, "readyReplicas": pool.ready_replicas,
                "backlog": pool.backlog, "inFlight": in_flight.get(key, 0),
                "deadLetters": pool.dead_letters,
            }
            if pool.trouble is not None:
                entry.update(reason=pool.trouble.reason, message=pool.trouble.message)
            entries.append(entry)
        return entries

    def with_condition(self, namespace: str, workflow: str, conditions: list[Condition],
                       generation: int | None) -> list[Condition]:
        """`conditions` with the Workflow's PoolsHealthy set from its pools (none tracked:
        unchanged); remembered, so the pool rounds write them back whole."""
        key = (namespace, workflow)
        troubles = {k[2]: p.trouble for k, p in self.pools.items() if k[:2] == key}
        if troubles:
            known = self._conditions.get(key)
            mine = find(known[1], POOLS_HEALTHY) if known is not None else None
            if mine is not None:  # a status read before our last write is older than it
                present = find(conditions, POOLS_HEALTHY)
                conditions = ([mine if c is present else c for c in conditions]
                              if present is not None else [*conditions, mine])
            status, reason, message = pools_condition(troubles)
            conditions = set_condition(conditions, POOLS_HEALTHY, status, reason, message,
                                       generation)
        self._conditions[key] = (generation, conditions)
        return conditions

    async def _refresh_kube_figures(self) -> None:
        """Ready replicas and pod troubles of every pool: one listing of Deployments and one
        of pods per namespace, not one per Workflow."""
        ready: dict[PoolKey, int] = {}
        pods: dict[PoolKey, list[dict[str, Any]]] = {}
        listed: set[str] = set()
        managed = {names.LABEL_MANAGED_BY: names.FIELD_MANAGER}
        for namespace in sorted({key[0] for key in self.pools}):
            try:
                found = await self._kube.list_deployments(namespace, managed)
                states = await self._kube.list_pod_states(namespace, managed)
            except KubeError as error:
                log.warning("Listing worker Deployments and pods failed namespace=%s error=%s",
                            namespace, error)
                continue
            listed.add(namespace)
            ready.update({(namespace, d.workflow, d.task_type): d.ready_replicas for d in found})
            for pod in states:
                labels = (pod.get("metadata") or {}).get("labels") or {}
                key = (namespace, labels.get(names.LABEL_WORKFLOW, ""),
                       labels.get(names.LABEL_TASK_TYPE, ""))
                pods.setdefault(key, []).append(pod)
        now = datetime.now(UTC)
        for key, pool in self.pools.items():
            if key[0] in listed:
                pool.ready_replicas = ready.get(key, 0)
                trouble = pool_trouble(pods.get(key, []), now)
                if trouble != pool.trouble and trouble is not None:
                    log.warning("Pool pods cannot run pool=%s reason=%s message=%s",
                                "/".join(key), trouble.reason, trouble.message)
                pool.trouble = trouble

    async def _write_statuses(self) -> None:
        await self._refresh_kube_figures()
        for namespace, workflow in sorted({key[:2] for key in self.pools}):
            key = (namespace, workflow)
            patch: dict[str, Any] = {"taskTypes": self.figures(namespace, workflow)}
            known = self._conditions.get(key)
            if known is not None:  # not before the reconcile has seen the Workflow
                patch["conditions"] = self.with_condition(namespace, workflow, known[1],
                                                          known[0])
            if self._written.get(key) == patch:
                continue
            try:
                await self._kube.patch_status("workflows", namespace, workflow, patch)
            except KubeError as error:
                if not error.not_found:
                    log.warning("Workflow status write failed workflow=%s error=%s",
                                workflow, error)
                continue
            self._metrics.status_writes.labels("Workflow", "ok").inc()
            self._written[key] = patch

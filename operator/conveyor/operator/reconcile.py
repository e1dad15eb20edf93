"""Workflow reconcile, the messaging-topology-operator way: fetch (the body kopf gives),
validate, declare (queues, the broker Secret, one Deployment per task type), prune what an
edit dropped, set the Ready condition with `observedGeneration`, post an Event. Deletion waits
for the Workflow's runs, removes the Deployments, waits for their pods to drain, then deletes
the queues.

With an object store, the broker Secret also carries the workers' store keys: those of the
worker Secret (`Settings.store_worker_secret`, read at every reconcile so rotated keys reach
the Workflows) or else the operator's own. A worker Secret that cannot be read leaves the
Workflow `Ready=False` (reason `StoreCredentialsMissing`) until the drift timer finds it.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

from conveyor import names
from conveyor.broker import Admin, ca_bundle
from conveyor.children import StoreKeys, WorkerStore, amqp_secret, worker_deployment
from conveyor.conditions import set_condition
from conveyor.errors import ConveyorError
from conveyor.kube import KubeError
from conveyor.models import WorkflowSpec
from conveyor.operator.pools import PoolManager
from conveyor.operator.runs import RunManager
from conveyor.operator.seams import KubeApi
from conveyor.operator.settings import (
    WORKER_ACCESS_KEY,
    WORKER_SECRET_ENV,
    WORKER_SECRET_KEY,
    Settings,
)
from conveyor.operator.workflows import WorkflowEntry, Workflows

log = logging.getLogger("conveyor.operator.reconcile")


class Retry(ConveyorError):  # noqa: N818 - a signal to the handler, not an error
    """Not done yet: the kopf handler turns this into TemporaryError(delay)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


KAFKA_OFF = "the operator has no Kafka settings (CONVEYOR_KAFKA_BOOTSTRAP_SERVERS)"


class StoreUnusable(ConveyorError):  # noqa: N818 - a state of the Workflow, shown in Ready
    """What the workers need of the object store cannot be had; `reason` is the Ready
    condition's."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WorkerStoreParts:
    """The object store as a Workflow's children carry it."""

    place: WorkerStore
    keys: StoreKeys
    ca: str | None


async def worker_store(settings: Settings, kube: KubeApi) -> WorkerStoreParts | None:
    """What the workers get of the object store (None without one); StoreUnusable when the
    worker Secret or the store's CA file cannot be read. Never a key in a message."""
    store = settings.store
    if store is None:
        return None
    keys = StoreKeys(store.access_key, store.secret_key)
    if settings.store_worker_secret is not None:
        keys = await _worker_keys(kube, settings.lease_namespace, settings.store_worker_secret)
    ca = None
    if store.ca_file is not None:
        try:
            ca = store.ca_file.read_text(encoding="ascii")
            if not ca.strip():
                raise ValueError("the file is empty")  # ssl would trust the system's CAs
            # Loading it is the check: OpenSSL refuses data with no certificate in it, and the
            # workers would fail every TLS connection with it.
            ssl.create_default_context(cadata=ca)
        except (OSError, ValueError, ssl.SSLError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise StoreUnusable(f"cannot use the object store's CA file {store.ca_file}: "
                                f"{reason}", "StoreCAUnreadable") from error
    place = WorkerStore(bucket=store.bucket, region=store.region, endpoint=store.endpoint,
                        prefix=store.prefix, max_object_bytes=settings.store_max_object_bytes,
                        ca=ca is not None)
    return WorkerStoreParts(place, keys, ca)


async def _worker_keys(kube: KubeApi, namespace: str, name: str) -> StoreKeys:
    where = f"the workers' object store Secret {namespace}/{name} ({WORKER_SECRET_ENV})"
    try:
        data = await kube.get_secret_data(namespace, name)
    except KubeError as error:
        if error.status != 403:
            raise  # the API server's trouble: tried again like any other call
        raise StoreUnusable(f"the operator may not read {where}: grant it get on that Secret "
                            "by name (the chart does with store.workerSecret)",
                            "StoreCredentialsMissing") from error
    if data is None:
        raise StoreUnusable(f"{where} is not found: create it with keys {WORKER_ACCESS_KEY} "
                            f"and {WORKER_SECRET_KEY}", "StoreCredentialsMissing")
    missing = [k for k in (WORKER_ACCESS_KEY, WORKER_SECRET_KEY) if not data.get(k)]
    if missing:
        raise StoreUnusable(f"{where} has no {' and no '.join(missing)}",
                            "StoreCredentialsMissing")
    return StoreKeys(data[WORKER_ACCESS_KEY], data[WORKER_SECRET_KEY])


@dataclass
class Reconciler:
    """Provisions each Workflow's queues and worker pools, and takes them down on deletion."""

    settings: Settings
    kube: KubeApi
    workflows: Workflows
    pools: PoolManager
    runs: RunManager

    async def reconcile(self, body: dict[str, Any]) -> None:
        entry = self.workflows.observe(body)
        owner = entry.owner
        status = dict(body.get("status") or {})
        if entry.compiled is None:
            await self._write_status(entry, status, "False", "InvalidSpec", entry.problem or "")
            await self._event(entry, "Warning", "InvalidSpec", entry.problem or "")
            log.warning("Workflow invalid workflow=%s/%s problem=%s", owner.namespace,
                        owner.name, entry.problem)
            return
        try:
            store = await worker_store(self.settings, self.kube)
        except StoreUnusable as problem:
            # Without its keys a worker could not keep a large output: no pool is provisioned
            # (those already running keep theirs) until the drift timer finds the Secret.
            changed = await self._write_status(entry, status, "False", problem.reason,
                                               str(problem))
            if changed:
                await self._event(entry, "Warning", problem.reason, str(problem))
                log.warning("Workflow not provisioned workflow=%s/%s reason=%s problem=%s",
                            owner.namespace, owner.name, problem.reason, problem)
            return
        spec = WorkflowSpec.model_validate(entry.spec)
        queues = [(names.queue_name(owner.namespace, owner.name, t.name), t.delivery_limit)
                  for t in spec.task_types]

        def declare(admin: Admin) -> None:
            admin.declare_exchanges()
            for queue, limit in queues:
                admin.declare_task_queue(queue, limit)

        await self.pools.admin_call(declare)
        # Read at every reconcile (the drift timer's too), so a rotated CA reaches the
        # workers' Secrets; TLSError (unreadable) is retried like any broker error.
        ca = ca_bundle(self.settings.broker)
        await self.kube.apply_secret(amqp_secret(
            owner, self.settings.broker.url, ca, store_keys=store.keys if store else None,
            store_ca=store.ca if store else None))
        existing = {d.task_type: d for d in await self.kube.list_deployments(
            owner.namespace, {names.LABEL_WORKFLOW: owner.name})}
        for task_type in spec.task_types:
            current = existing.get(task_type.name)
            replicas = self.pools.register(owner.namespace, owner.name, task_type.name,
                                           task_type.scaling,
                                           current.replicas if current else None)
            await self.kube.apply_deployment(worker_deployment(
                owner, spec, task_type, replicas, amqp_ca=ca is not None,
                store=store.place if store else None))
        await self._prune(entry, spec, existing)
        self.workflows.provisioned(owner.namespace, owner.name, entry.generation)
        message = f"{len(spec.task_types)} worker pools provisioned"
        unheard = self.settings.kafka is None and any(
            t.kafka is not None for t in entry.compiled.triggers)
        if unheard:  # Ready all the same: its runs can still be started otherwise
            message += (f"; {KAFKA_OFF}: its Kafka triggers start no run")
        changed = await self._write_status(entry, status, "True", "Provisioned", message)
        if changed:
            await self._event(entry, "Warning" if unheard else "Normal", "Provisioned",
                              message)
            log.info("Workflow reconciled workflow=%s/%s generation=%d", owner.namespace,
                     owner.name, entry.generation)

    async def _prune(self, entry: WorkflowEntry, spec: WorkflowSpec,
                     existing: dict[str, Any]) -> None:
        """Remove pools an edit dropped, unless unfinished runs still need them."""
        owner = entry.owner
        keep = {t.name for t in spec.task_types}
        keep |= self.runs.pinned_task_types(owner.namespace, owner.name)
        dropped = [t for t in existing if t not in keep]
        for task_type in dropped:
            await self.kube.delete_deployment(owner.namespace, existing[task_type].name)
            self.pools.unregister(owner.namespace, owner.name, task_type)
            queue = names.queue_name(owner.namespace, owner.name, task_type)

            def delete(admin: Admin, queue: str = queue) -> None:
                admin.delete_task_queue(queue)

            await self.pools.admin_call(delete)
            log.info("Pool removed workflow=%s/%s taskType=%s", owner.namespace, owner.name,
                     task_type)

    async def finalize(self, body: dict[str, Any]) -> None:
        """Delete the Workflow's pools and queues once no run needs them; Retry until then."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        entry = self.workflows.observe(body)
        active = self.runs.workflow_has_runs(namespace, name)
        if active:
            message = f"deletion waits for {active} unfinished runs"
            await self._write_status(entry, dict(body.get("status") or {}), "False",
                                     "ActiveRuns", message)
            await self._event(entry, "Normal", "DeletionWaiting", message)
            raise Retry(message, delay=3)
        labels = {names.LABEL_WORKFLOW: name}
        for deployment in await self.kube.list_deployments(namespace, labels):
            await self.kube.delete_deployment(namespace, deployment.name)
        remaining = await self.kube.list_pods(namespace, labels)
        remaining += [d.name for d in await self.kube.list_deployments(namespace, labels)]
        if remaining:
            raise Retry(f"waiting for {len(remaining)} worker pods and Deployments to go",
                        delay=2)
        task_types = {t.get("name") for t in (entry.spec.get("taskTypes") or [])}
        task_types |= {key[2] for key in self.pools.pools if key[:2] == (namespace, name)}
        queues = [names.queue_name(namespace, name, t) for t in sorted(task_types) if t]

        def delete(admin: Admin) -> None:
            for queue in queues:
                admin.delete_task_queue(queue)

        await self.pools.admin_call(delete)
        self.pools.unregister(namespace, name)
        self.workflows.forget(namespace, name)
        log.info("Workflow finalized workflow=%s/%s queues=%d", namespace, name, len(queues))

    async def _write_status(self, entry: WorkflowEntry, status: dict[str, Any], ready: str,
                            reason: str, message: str) -> bool:
        owner = entry.owner
        conditions = set_condition(status.get("conditions") or [], "Ready", ready, reason,
                                   message, entry.generation)
        conditions = self.pools.with_condition(owner.namespace, owner.name, conditions,
                                               entry.generation)
        wanted = {
            "observedGeneration": entry.generation,
            "conditions": conditions,
            "taskTypes": self.pools.figures(owner.namespace, owner.name),
            "taskTypeNames": ",".join(t.get("name", "") for t in
                                      entry.spec.get("taskTypes") or []),
            "activeRuns": self.runs.active_runs(owner.namespace, owner.name),
        }
        if all(status.get(k) == v for k, v in wanted.items()):
            return False
        await self.kube.patch_status("workflows", owner.namespace, owner.name, wanted)
        return True

    async def _event(self, entry: WorkflowEntry, kind: str, reason: str, message: str) -> None:
        owner = entry.owner
        involved = {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
                    "namespace": owner.namespace, "name": owner.name, "uid": owner.uid}
        await self.kube.post_event(involved, kind, reason, message)

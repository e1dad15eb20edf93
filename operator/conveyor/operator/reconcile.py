"""Workflow reconcile, the messaging-topology-operator way: fetch (the body kopf gives),
validate, declare (queues, the broker Secret, one Deployment per task type), prune what an
edit dropped, set the Ready condition with `observedGeneration`, post an Event. Deletion waits
for the Workflow's runs, removes the Deployments, waits for their pods to drain, then deletes
the queues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from conveyor import names
from conveyor.broker import Admin, ca_bundle
from conveyor.children import amqp_secret, worker_deployment
from conveyor.conditions import set_condition
from conveyor.errors import ConveyorError
from conveyor.models import WorkflowSpec
from conveyor.operator.pools import PoolManager
from conveyor.operator.runs import RunManager
from conveyor.operator.seams import KubeApi
from conveyor.operator.settings import Settings
from conveyor.operator.workflows import WorkflowEntry, Workflows

log = logging.getLogger("conveyor.operator.reconcile")


class Retry(ConveyorError):  # noqa: N818 - a signal to the handler, not an error
    """Not done yet: the kopf handler turns this into TemporaryError(delay)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


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
        await self.kube.apply_secret(amqp_secret(owner, self.settings.broker.url, ca))
        existing = {d.task_type: d for d in await self.kube.list_deployments(
            owner.namespace, {names.LABEL_WORKFLOW: owner.name})}
        for task_type in spec.task_types:
            current = existing.get(task_type.name)
            replicas = self.pools.register(owner.namespace, owner.name, task_type.name,
                                           task_type.scaling,
                                           current.replicas if current else None)
            await self.kube.apply_deployment(worker_deployment(owner, spec, task_type,
                                                               replicas, amqp_ca=ca is not None))
        await self._prune(entry, spec, existing)
        self.workflows.provisioned(owner.namespace, owner.name, entry.generation)
        message = f"{len(spec.task_types)} worker pools provisioned"
        changed = await self._write_status(entry, status, "True", "Provisioned", message)
        if changed:
            await self._event(entry, "Normal", "Provisioned", message)
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

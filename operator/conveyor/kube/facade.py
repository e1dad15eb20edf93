"""The operator's Kubernetes calls as coroutines: one async facade over the blocking client.

Each call runs the blocking `Kube` method in a worker thread, so the operator's loop never
waits on the network. `Kube` fails only with `KubeError` (an error answer and no answer at
all alike, see `conveyor.kube.errors`), so the operator catches one error type, and a status
write that got no answer keeps its run's pending work like any other failed write.

The operator depends on the `KubeApi` Protocol (`conveyor.operator.seams`), which this class
implements and the unit tests' in-memory fake implements too.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from conveyor.kube.client import CONNECTIONS, DeploymentState, Kube

P = ParamSpec("P")
T = TypeVar("T")


class AsyncKube:
    """`Kube`'s calls that the operator makes, awaitable, every failure a `KubeError`."""

    def __init__(self, kube: Kube, *, threads: int = CONNECTIONS) -> None:
        self.sync = kube
        # Threads of its own: not the loop's default few (min(32, cores + 4)), which anything
        # else may fill, so status writes and run creations wait only for each other.
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="kube")

    async def _call(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(call, *args, **kwargs))

    # -- children of a Workflow ---------------------------------------------------------------
    async def apply_deployment(self, manifest: Mapping[str, Any]) -> None:
        await self._call(self.sync.apply_deployment, manifest)

    async def apply_secret(self, manifest: Mapping[str, Any]) -> None:
        await self._call(self.sync.apply_secret, manifest)

    async def apply_config_map(self, manifest: Mapping[str, Any]) -> None:
        await self._call(self.sync.apply_config_map, manifest)

    async def get_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return await self._call(self.sync.get_config_map_data, namespace, name)

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return await self._call(self.sync.get_secret_data, namespace, name)

    async def deployment_present(self, namespace: str, name: str) -> bool:
        return await self._call(self.sync.deployment_present, namespace, name)

    async def list_deployments(self, namespace: str,
                               labels: Mapping[str, str]) -> list[DeploymentState]:
        return await self._call(self.sync.list_deployments, namespace, labels)

    async def delete_deployment(self, namespace: str, name: str) -> None:
        await self._call(self.sync.delete_deployment, namespace, name)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        await self._call(self.sync.scale_deployment, namespace, name, replicas)

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[str]:
        return await self._call(self.sync.list_pods, namespace, labels)

    async def list_pod_states(self, namespace: str,
                              labels: Mapping[str, str]) -> list[dict[str, Any]]:
        return await self._call(self.sync.list_pod_states, namespace, labels)

    async def annotate_pod(self, namespace: str, name: str,
                           annotations: Mapping[str, str]) -> None:
        await self._call(self.sync.annotate_pod, namespace, name, annotations)

    # -- Conveyor's own resources -------------------------------------------------------------
    async def patch_status(self, plural: str, namespace: str, name: str,
                           status: Mapping[str, Any]) -> None:
        await self._call(self.sync.patch_status, plural, namespace, name, status)

    async def replace_status(self, plural: str, namespace: str, name: str,
                             status: Mapping[str, Any]) -> None:
        await self._call(self.sync.replace_status, plural, namespace, name, status)

    async def post_event(self, involved: Mapping[str, str], kind: str, reason: str,
                         message: str) -> None:
        await self._call(self.sync.post_event, involved, kind, reason, message)

    async def list_custom(self, plural: str, namespace: str | None = None,
                          limit: int | None = None) -> list[dict[str, Any]]:
        return await self._call(self.sync.list_custom, plural, namespace, limit)

    async def create_run(self, namespace: str, body: Mapping[str, Any]) -> None:
        await self._call(self.sync.create_run, namespace, body)

    async def delete_run(self, namespace: str, name: str, uid: str | None = None) -> None:
        await self._call(self.sync.delete_run, namespace, name, uid)

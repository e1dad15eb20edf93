"""The operator's Kubernetes calls: blocking, meant for a worker thread (the async facade in
`conveyor.kube.facade` runs them there; the leader election calls them from a thread of its
own). Every error leaves as a `KubeError`, the library's error chained as its cause: an answer
that is an error through `api_error`, no answer at all (refused, reset, timed out, TLS)
through `answered`. A 404 on delete counts as success.
"""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from conveyor import names
from conveyor.kube.errors import KubeError, answered, api_error

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class DeploymentState:
    """A worker Deployment as listed: its pool and its replicas."""

    name: str
    workflow: str
    task_type: str
    replicas: int
    ready_replicas: int


CONNECTIONS = 16  # kept open to the API server: as many as the facade has threads


def load_api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod with a mounted token, else KUBECONFIG."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTIONS
    return client.ApiClient(configuration)


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """The API calls the operator makes besides kopf's own watches and patches."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.api = api_client or load_api_client()
        self.apps = client.AppsV1Api(self.api)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.coordination = client.CoordinationV1Api(self.api)

    # -- children of a Workflow ---------------------------------------------------------------
    @answered
    def apply_deployment(self, manifest: Mapping[str, Any]) -> None:
        meta = manifest["metadata"]
        try:
            self.apps.patch_namespaced_deployment(
                meta["name"], meta["namespace"], dict(manifest),
                field_manager=names.FIELD_MANAGER, force=True, _content_type=APPLY,
            )
        except ApiException as error:
            raise api_error(f"apply Deployment {meta['namespace']}/{meta['name']}",
                            error) from error

    @answered
    def apply_secret(self, manifest: Mapping[str, Any]) -> None:
        """Replace the Secret whole, or create it when there is none.

        Not a server-side apply like the other children: a PATCH answers with the object it
        patched, so the right to patch Secrets would be the right to read every Secret in
        reach (an empty patch returns its data) and, with create, to mint a token for any
        ServiceAccount there (create a token Secret, let the controller fill it, patch it).
        A replace and a create answer with what was sent, so the operator's Role grants
        `update` and `create` on Secrets and nothing that reads one (docs/operating.md).
        """
        meta = manifest["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            self.core.replace_namespaced_secret(name, namespace, dict(manifest),
                                                field_manager=names.FIELD_MANAGER)
            return
        except ApiException as error:
            if error.status != 404:
                raise api_error(f"replace Secret {namespace}/{name}", error) from error
        try:
            self.core.create_namespaced_secret(namespace, dict(manifest),
                                               field_manager=names.FIELD_MANAGER)
        except ApiException as error:
            raise api_error(f"create Secret {namespace}/{name}", error) from error

    @answered
    def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded as UTF-8 text; None when there is none. The operator reads
        one Secret only, by name in its own namespace: the store keys an admin made for
        workers (the chart grants `get` on that name alone)."""
        try:
            found = self.core.read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise api_error(f"get Secret {namespace}/{name}", error) from error
        data: dict[str, str] = {}
        for key, value in (found.data or {}).items():
            try:
                data[key] = base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError):
                # Never the value in the message: only which key could not be read.
                raise KubeError(f"get Secret {namespace}/{name}: key {key} is not UTF-8 "
                                "text") from None
        return data

    @answered
    def apply_config_map(self, manifest: Mapping[str, Any]) -> None:
        meta = manifest["metadata"]
        try:
            self.core.patch_namespaced_config_map(
                meta["name"], meta["namespace"], dict(manifest),
                field_manager=names.FIELD_MANAGER, force=True, _content_type=APPLY,
            )
        except ApiException as error:
            raise api_error(f"apply ConfigMap {meta['namespace']}/{meta['name']}", error) from error

    @answered
    def get_config_map_data(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            found = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise api_error(f"get ConfigMap {namespace}/{name}", error) from error
        return dict(found.data or {})

    @answered
    def deployment_present(self, namespace: str, name: str) -> bool:
        """Whether the Deployment exists and is not being deleted."""
        try:
            found = self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise api_error(f"get Deployment {namespace}/{name}", error) from error
        return found.metadata.deletion_timestamp is None

    @answered
    def wait_deployment_gone(self, namespace: str, name: str, seconds: int) -> bool:
        """Watch one Deployment for up to `seconds`: True as soon as it is gone or being
        deleted, False if the watch ended first. An open watch keeps delivering after the
        watcher's RBAC is deleted, which a later GET would not survive."""
        selector = f"metadata.name={name}"
        try:
            listed = self.apps.list_namespaced_deployment(namespace, field_selector=selector)
            if not listed.items or listed.items[0].metadata.deletion_timestamp is not None:
                return True
            events = watch.Watch().stream(
                self.apps.list_namespaced_deployment, namespace, field_selector=selector,
                resource_version=listed.metadata.resource_version, timeout_seconds=seconds)
            for event in events:
                kind, found = event["type"], event["object"]
                if kind == "ERROR":  # e.g. 410 Gone: the caller watches again, from a list
                    return False
                if kind == "DELETED" or found.metadata.deletion_timestamp is not None:
                    return True
        except ApiException as error:
            raise api_error(f"watch Deployment {namespace}/{name}", error) from error
        return False

    @answered
    def list_deployments(self, namespace: str, labels: Mapping[str, str]) -> list[DeploymentState]:
        try:
            found = self.apps.list_namespaced_deployment(namespace,
                                                         label_selector=_selector(labels))
        except ApiException as error:
            raise api_error(f"list Deployments in {namespace}", error) from error
        return [
            DeploymentState(
                name=d.metadata.name,
                workflow=(d.metadata.labels or {}).get(names.LABEL_WORKFLOW, ""),
                task_type=(d.metadata.labels or {}).get(names.LABEL_TASK_TYPE, ""),
                replicas=int(d.spec.replicas or 0),
                ready_replicas=int((d.status and d.status.ready_replicas) or 0),
            )
            for d in found.items
        ]

    @answered
    def delete_deployment(self, namespace: str, name: str) -> None:
        try:
            self.apps.delete_namespaced_deployment(name, namespace,
                                                   propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise api_error(f"delete Deployment {namespace}/{name}", error) from error

    @answered
    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        try:
            self.apps.patch_namespaced_deployment_scale(
                name, namespace, {"spec": {"replicas": replicas}},
                field_manager=names.FIELD_MANAGER, _content_type=MERGE,
            )
        except ApiException as error:
            raise api_error(f"scale Deployment {namespace}/{name}", error) from error

    @answered
    def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[str]:
        try:
            found = self.core.list_namespaced_pod(namespace, label_selector=_selector(labels))
        except ApiException as error:
            raise api_error(f"list pods in {namespace}", error) from error
        return [p.metadata.name for p in found.items if not p.metadata.deletion_timestamp]

    @answered
    def list_pod_states(self, namespace: str,
                        labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """The pods as JSON (metadata, spec, status), as the API server gives them."""
        try:
            found = self.core.list_namespaced_pod(namespace, label_selector=_selector(labels))
        except ApiException as error:
            raise api_error(f"list pods in {namespace}", error) from error
        return [dict(self.api.sanitize_for_serialization(p)) for p in found.items]

    @answered
    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        try:
            self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": dict(annotations)}},
                field_manager=names.FIELD_MANAGER, _content_type=MERGE,
            )
        except ApiException as error:
            if error.status != 404:
                raise api_error(f"annotate pod {namespace}/{name}", error) from error

    # -- leader election -------------------------------------------------------------------
    @answered
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease = self.coordination.read_namespaced_lease(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise api_error(f"get Lease {namespace}/{name}", error) from error
        return dict(self.api.sanitize_for_serialization(lease))

    @answered
    def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)}
        try:
            self.coordination.create_namespaced_lease(namespace, body)
        except ApiException as error:
            raise api_error(f"create Lease {namespace}/{name}", error) from error

    @answered
    def replace_lease(self, namespace: str, name: str, resource_version: str,
                      spec: Mapping[str, Any]) -> None:
        """Replace the Lease if it is still at `resource_version` (409 otherwise)."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace,
                             "resourceVersion": resource_version}, "spec": dict(spec)}
        try:
            self.coordination.replace_namespaced_lease(name, namespace, body)
        except ApiException as error:
            raise api_error(f"replace Lease {namespace}/{name}", error) from error

    # -- Conveyor's own resources -------------------------------------------------------------
    @answered
    def patch_status(self, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch `status` of a Workflow or WorkflowRun through the status subresource."""
        try:
            return dict(self.custom.patch_namespaced_custom_object_status(
                names.GROUP, names.VERSION, namespace, plural, name, {"status": dict(status)},
                field_manager=names.FIELD_MANAGER, _content_type=MERGE,
            ))
        except ApiException as error:
            raise api_error(f"patch status of {plural}/{name} in {namespace}", error) from error

    @answered
    def replace_status(self, plural: str, namespace: str, name: str,
                       status: Mapping[str, Any]) -> None:
        """Replace the whole status (fields left out are removed, unlike a merge patch)."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                names.GROUP, names.VERSION, namespace, plural, name,
                [{"op": "add", "path": "/status", "value": dict(status)}],
                field_manager=names.FIELD_MANAGER, _content_type=JSON_PATCH,
            )
        except ApiException as error:
            raise api_error(f"replace status of {plural}/{name} in {namespace}", error) from error

    @answered
    def post_event(self, involved: Mapping[str, str], kind: str, reason: str,
                   message: str) -> None:
        """A core/v1 Event about `involved` (apiVersion, kind, namespace, name, uid)."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{involved['name']}.",
                         "namespace": involved["namespace"]},
            "involvedObject": dict(involved),
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": names.FIELD_MANAGER},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(involved["namespace"], body)
        except ApiException as error:
            raise api_error(f"post Event on {involved['kind']} {involved['name']}",
                            error) from error

    @answered
    def list_custom(self, plural: str, namespace: str | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        extra = {"limit": limit} if limit else {}
        try:
            if namespace is None:
                found = self.custom.list_cluster_custom_object(names.GROUP, names.VERSION,
                                                               plural, **extra)
            else:
                found = self.custom.list_namespaced_custom_object(names.GROUP, names.VERSION,
                                                                  namespace, plural, **extra)
        except ApiException as error:
            raise api_error(f"list {plural}", error) from error
        return [dict(item) for item in found.get("items", [])]

    @answered
    def create_run(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a WorkflowRun; a KubeError with `.conflict` when the name is taken."""
        try:
            return dict(self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.RUN_PLURAL, dict(body),
                field_manager=names.FIELD_MANAGER,
            ))
        except ApiException as error:
            raise api_error(f"create WorkflowRun in {namespace}", error) from error

    @answered
    def delete_run(self, namespace: str, name: str, uid: str | None = None) -> None:
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.custom.delete_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, names.RUN_PLURAL, name, body=body)
        except ApiException as error:
            if error.status not in (404, 409):
                raise api_error(f"delete WorkflowRun {namespace}/{name}", error) from error

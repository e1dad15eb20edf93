"""The `conveyor` CLI's calls: any object of ours by plural, with "no cluster" (a refused
connection, a missing kubeconfig) turned into a KubeError too, since a user reads it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from conveyor import names
from conveyor.kube.client import MERGE, Kube
from conveyor.kube.errors import KubeError, answered, api_error

CLI_FIELD_MANAGER = "conveyor-cli"


def load_cli_client(kubeconfig: str | None = None,
                    context: str | None = None) -> tuple[client.ApiClient, str]:
    """A client from a kubeconfig (KUBECONFIG or ~/.kube/config when None) and the namespace
    its context names (`default` when none)."""
    try:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, context=context,
                                client_configuration=configuration, persist_config=False)
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError, ValueError) as error:
        raise KubeError(f"no cluster configured: {error}") from error
    configuration.retries = 1  # a CLI should say "unreachable" quickly, not retry for long
    chosen = next((c for c in contexts if c.get("name") == context), active) if context \
        else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return client.ApiClient(configuration), namespace


class CliKube(Kube):
    """The calls the CLI makes on Workflows and WorkflowRuns."""

    @answered
    def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when there is none of that name."""
        try:
            return dict(self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, plural, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise api_error(f"get {plural}/{name} in {namespace}", error) from error

    @answered
    def list_objects(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        try:
            found = self.custom.list_namespaced_custom_object(names.GROUP, names.VERSION,
                                                              namespace, plural)
        except ApiException as error:
            raise api_error(f"list {plural} in {namespace}", error) from error
        return [dict(item) for item in found.get("items", [])]

    @answered
    def create_object(self, plural: str, namespace: str,
                      body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return dict(self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, plural, dict(body),
                field_manager=CLI_FIELD_MANAGER))
        except ApiException as error:
            raise api_error(f"create {plural} in {namespace}", error) from error

    @answered
    def patch_object(self, plural: str, namespace: str, name: str,
                     patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the object (its spec or metadata, not its status)."""
        try:
            return dict(self.custom.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace, plural, name, dict(patch),
                field_manager=CLI_FIELD_MANAGER, _content_type=MERGE))
        except ApiException as error:
            raise api_error(f"patch {plural}/{name} in {namespace}", error) from error

"""Acting as a ServiceAccount: a token from the TokenRequest API, and an API client or a
kubeconfig that carries it, so a test sees exactly what that account's RBAC allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes import client


def service_account_token(api_client: Any, namespace: str, name: str,
                          seconds: int = 3600) -> str:
    """A token of `namespace/name`, as the kubelet would get one for a pod (TokenRequest)."""
    request = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        name, namespace, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                          "spec": {"expirationSeconds": seconds}})
    token: str = request.status.token
    return token


def client_as(api_client: Any, token: str) -> client.ApiClient:
    """An API client for the same API server as `api_client`, authenticated by `token`
    alone (no client certificate of the admin's)."""
    admin = api_client.configuration
    config = client.Configuration(host=admin.host)
    config.ssl_ca_cert = admin.ssl_ca_cert
    config.verify_ssl = admin.verify_ssl
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(config)


def token_kubeconfig(api_client: Any, token: str, path: Path, namespace: str) -> Path:
    """A kubeconfig (mode 0600) for `api_client`'s API server with `token` as its user."""
    admin = api_client.configuration
    cluster: dict[str, Any] = {"server": admin.host}
    if admin.ssl_ca_cert:
        cluster["certificate-authority"] = str(admin.ssl_ca_cert)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                                               "namespace": namespace}}],
        "current-context": "c",
    }))
    path.chmod(0o600)
    return path

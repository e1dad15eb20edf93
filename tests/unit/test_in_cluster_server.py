"""The operator finds the API server in a pod as the Kubernetes client does: by the
`kubernetes` Service's address the kubelet puts in the environment, no DNS needed."""

from __future__ import annotations

import pytest

from conveyor.operator.settings import in_cluster_server


@pytest.mark.parametrize(("host", "port", "url"), [
    ("10.0.0.1", "443", "https://10.0.0.1:443"),
    ("fd00:10:96::1", "6443", "https://[fd00:10:96::1]:6443"),
])
def test_the_service_address_from_the_kubelets_variables(host: str, port: str,
                                                         url: str) -> None:
    env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
    assert in_cluster_server(env) == url


@pytest.mark.parametrize("env", [
    {}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, {"KUBERNETES_SERVICE_PORT": "443"},
    {"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "443"},
])
def test_none_outside_a_pod(env: dict[str, str]) -> None:
    assert in_cluster_server(env) is None

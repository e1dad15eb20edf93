"""The chart's NetworkPolicies (networkPolicy.*), rendered by `helm template`: which pods they
select, what they let in and out, and the values they refuse. Rendering is all a unit test can
show; tests/e2e/test_chart_privileges.py shows the API server accepts them (the test bed has no
network plugin that enforces them)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conveyor.children import Owner, worker_deployment
from conveyor.models import WorkflowSpec
from support.helm import CHART, helm, set_args, template

URL = {"amqp.url": "amqp://conveyor:secret@broker.example:5672/"}
API = {"networkPolicy.apiServer.cidrs": ["10.96.0.1/32", "172.18.0.2/32"],
       "networkPolicy.apiServer.ports": [443, 6443]}
ON = {"networkPolicy.enabled": True, **API}
EXTERNAL = {**URL, **ON, "networkPolicy.broker.cidrs": ["10.20.0.0/24"]}
KUBE_DNS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]


def _policies(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in template(values) if o["kind"] == "NetworkPolicy"}


def _pod_labels(values: dict[str, Any], kind: str) -> dict[str, str]:
    [workload] = [o for o in template(values) if o["kind"] == kind]
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _worker_pod_labels(namespace: str) -> dict[str, str]:
    """The labels the operator gives worker pods (conveyor.children), not a copy of them."""
    spec = WorkflowSpec.model_validate({"taskTypes": [{"name": "t", "image": "i"}],
                                        "tasks": [{"name": "a", "type": "t"}]})
    deployment = worker_deployment(Owner(namespace, "wf", "uid"), spec, spec.task_types[0], 1)
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on a label set (matchLabels and In/NotIn/Exists)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], \
            expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for p in rule["ports"]}


def test_off_by_default() -> None:
    assert not _policies(URL)


def test_the_operator_may_reach_only_the_api_server_the_broker_and_dns() -> None:
    policy = _policies(EXTERNAL)["conveyor"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert _selects(spec["podSelector"], _pod_labels(EXTERNAL, "Deployment"))
    api, broker, dns = spec["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}},
                         {"ipBlock": {"cidr": "172.18.0.2/32"}}]
    assert _ports(api) == {("TCP", 443), ("TCP", 6443)}
    assert broker["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert _ports(broker) == {("TCP", 5671), ("TCP", 5672)}
    assert dns["to"] == KUBE_DNS
    assert _ports(dns) == {("UDP", 53), ("TCP", 53)}
    # Nothing may come in (the kubelet's probes come from the node, which is always let in).
    assert spec["ingress"] == []


def test_metrics_sources_reach_only_the_health_port() -> None:
    prometheus = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app": "prometheus"}}},
                  {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}]
    values = {**EXTERNAL, "health.port": 9000, "networkPolicy.metricsFrom": prometheus}
    [rule] = _policies(values)["conveyor"]["spec"]["ingress"]
    assert rule["from"] == prometheus
    assert _ports(rule) == {("TCP", 9000)}


def test_a_broker_in_the_cluster_by_selectors_and_no_dns_for_one_named_by_address() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rabbit"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}]
    values = {**URL, **ON, "networkPolicy.broker.peers": peers,
              "networkPolicy.broker.ports": [5671], "networkPolicy.dns.enabled": False}
    egress = _policies(values)["conveyor"]["spec"]["egress"]
    assert len(egress) == 2  # the API server and the broker: no DNS
    assert egress[1]["to"] == peers
    assert _ports(egress[1]) == {("TCP", 5671)}


def test_the_bundled_broker_is_reached_by_its_pods_and_shut_to_the_rest() -> None:
    values = {**ON, "rabbitmq.enabled": True, "operator.namespaces": ["shop", "billing"]}
    policies = _policies(values)
    broker_pod = _pod_labels(values, "StatefulSet")
    operator_pod = _pod_labels(values, "Deployment")

    # The operator's way out to it, by its pod's labels.
    egress = policies["conveyor"]["spec"]["egress"]
    [to_broker] = [r for r in egress if ("TCP", 5672) in _ports(r)]
    [peer] = to_broker["to"]
    assert set(peer) == {"podSelector"} and _selects(peer["podSelector"], broker_pod)
    assert not _selects(peer["podSelector"], operator_pod)

    # Its own policy: AMQP from the operator and from workers of the watched namespaces only.
    spec = policies["conveyor-rabbitmq"]["spec"]
    assert _selects(spec["podSelector"], broker_pod)
    assert not _selects(spec["podSelector"], operator_pod)
    [amqp] = spec["ingress"]  # no management port: managementFrom is empty
    assert _ports(amqp) == {("TCP", 5672)}
    operator_peer, worker_peer = amqp["from"]
    assert set(operator_peer) == {"podSelector"}
    assert _selects(operator_peer["podSelector"], operator_pod)
    assert _selects(worker_peer["podSelector"], _worker_pod_labels("shop"))
    assert not _selects(worker_peer["podSelector"], operator_pod)
    for namespace, allowed in (("shop", True), ("billing", True), ("default", False)):
        labels = {"kubernetes.io/metadata.name": namespace}
        assert _selects(worker_peer["namespaceSelector"], labels) is allowed, namespace
    # Out: DNS only (one node, no cluster peers).
    [dns] = spec["egress"]
    assert dns["to"] == KUBE_DNS


def test_the_bundled_broker_of_an_operator_watching_every_namespace() -> None:
    management = [{"ipBlock": {"cidr": "10.1.2.3/32"}}]
    tools = [{"podSelector": {"matchLabels": {"app": "conveyor-cli"}}}]
    spec = _policies({**ON, "rabbitmq.enabled": True,
                      "networkPolicy.rabbitmq.managementFrom": management,
                      "networkPolicy.rabbitmq.amqpFrom": tools})["conveyor-rabbitmq"]["spec"]
    amqp, ui = spec["ingress"]
    assert amqp["from"][1]["namespaceSelector"] == {}  # workers in any namespace
    assert amqp["from"][2:] == tools
    assert ui["from"] == management and _ports(ui) == {("TCP", 15672)}


def test_no_policy_for_the_bundled_broker_without_it() -> None:
    assert set(_policies(EXTERNAL)) == {"conveyor"}


def test_lint_is_clean_with_the_policies() -> None:
    for values in (EXTERNAL, {**ON, "rabbitmq.enabled": True, "operator.namespaces": ["a"],
                              "networkPolicy.metricsFrom": [{"podSelector": {}}]}):
        out = helm("lint", "--strict", str(CHART), *set_args(values)).stdout
        assert "0 chart(s) failed" in out
        assert not re.search(r"\[(WARNING|ERROR)\]", out), out


@pytest.mark.parametrize(("values", "message"), [
    ({**URL, **ON}, "networkPolicy.broker: say where the broker is"),
    # helm template cannot look the API server up: it says what to set and how to find it.
    ({**URL, "networkPolicy.enabled": True, "networkPolicy.broker.cidrs": ["10.20.0.0/24"]},
     "networkPolicy.apiServer.cidrs: the API server's addresses could not be read"),
    ({**URL, "networkPolicy.enabled": True, "networkPolicy.broker.cidrs": ["10.20.0.0/24"],
      "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"]}, "networkPolicy.apiServer.ports"),
    ({**ON, "rabbitmq.enabled": True, "networkPolicy.dns.enabled": False},
     "which needs DNS"),
    ({**EXTERNAL, "networkPolicy.broker.cidrs": ["10.20.0.1"]}, "cidrs"),
    ({**EXTERNAL, "networkPolicy.metricsFrom": [{"namespace": "monitoring"}]},
     "additional properties 'namespace' not allowed"),
    ({**EXTERNAL, "networkPolicy.metricsFrom": [{}]}, "minProperties"),
    ({**EXTERNAL, "networkPolicy.apiServer.ports": [0]}, "ports"),
])
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    result = helm("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr

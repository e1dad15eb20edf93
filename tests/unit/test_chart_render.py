"""`helm lint` and `helm template` over the chart's main value combinations."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from support.helm import CHART, helm, set_args, template

URL = {"amqp.url": "amqp://conveyor:secret@broker:5672/"}
TLS_URL = {"amqp.url": "amqps://conveyor:secret@broker:5671/"}
SECURE_CONTAINER = {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _operator(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = _by_kind(objects, "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_lint_is_clean() -> None:
    for values in ({**URL}, {"rabbitmq.enabled": True, "operator.namespaces": ["a"],
                             "metrics.serviceMonitor.enabled": True, "dashboard.enabled": True},
                   {**TLS_URL, "amqp.tls.caSecret": "broker-ca"}):
        out = helm("lint", "--strict", str(CHART), *set_args(values)).stdout
        assert "0 chart(s) failed" in out
        assert not re.search(r"\[(WARNING|ERROR)\]", out), out


def test_defaults_run_a_hardened_operator_watching_every_namespace() -> None:
    objects = template(URL)
    container = _operator(objects)
    assert container["image"] == "conveyor-operator:0.1.0"
    assert "command" not in container and "args" not in container
    assert container["securityContext"] == SECURE_CONTAINER
    pod = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == "conveyor"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez"),
                        ("startupProbe", "/livez")):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = _env(container)
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["CONVEYOR_AMQP_URL"] == {"secretKeyRef": {"name": "conveyor-amqp", "key": "url"}}
    assert env["CONVEYOR_LEADER_LEASE"] == "conveyor"
    assert "CONVEYOR_HEALTH_ADDRESS" not in env
    [secret] = _by_kind(objects, "Secret")
    assert secret["stringData"] == {"url": URL["amqp.url"]}
    [service] = _by_kind(objects, "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    assert not _by_kind(objects, "ServiceMonitor") and not _by_kind(objects, "StatefulSet")
    [lease] = _by_kind(objects, "Lease")
    assert lease["metadata"]["namespace"] == "conveyor-system"


def test_every_object_carries_the_helper_labels() -> None:
    objects = template({**URL, "rabbitmq.enabled": True, "operator.namespaces": ["a"],
                        "metrics.serviceMonitor.enabled": True, "dashboard.enabled": True,
                        "networkPolicy.enabled": True,
                        "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"],
                        "networkPolicy.apiServer.ports": [443]})
    assert len({o["kind"] for o in objects}) >= 14
    for o in objects:
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "conveyor", o["kind"]
        assert labels["helm.sh/chart"] == "conveyor-0.1.0"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_the_test_bed_values_run_the_command_on_the_pod_ip() -> None:
    container = _operator(template({**URL, "operator.command": ["conveyor-operator"],
                                    "health.listenOnPodIP": True,
                                    "operator.namespaces": ["demo"],
                                    "operator.extraArgs": ["--log-level", "DEBUG"]}))
    assert container["command"] == ["conveyor-operator"]
    assert container["args"] == ["--namespace", "demo", "--log-level", "DEBUG"]
    assert _env(container)["CONVEYOR_HEALTH_ADDRESS"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_an_existing_secret_is_used_and_none_created() -> None:
    objects = template({"amqp.existingSecret": "broker", "amqp.existingSecretKey": "uri"})
    assert not _by_kind(objects, "Secret")
    assert _env(_operator(objects))["CONVEYOR_AMQP_URL"] == {
        "secretKeyRef": {"name": "broker", "key": "uri"}}


def test_a_ca_secret_is_mounted_read_only_and_named_to_the_operator() -> None:
    objects = template({**TLS_URL, "amqp.tls.caSecret": "broker-ca",
                        "amqp.tls.caSecretKey": "root.pem"})
    container = _operator(objects)
    assert _env(container)["CONVEYOR_AMQP_CA_FILE"] == "/etc/conveyor/amqp/ca.crt"
    assert {"name": "amqp-ca", "mountPath": "/etc/conveyor/amqp", "readOnly": True} \
        in container["volumeMounts"]
    pod = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert {"name": "amqp-ca", "secret": {"secretName": "broker-ca", "items": [
        {"key": "root.pem", "path": "ca.crt"}]}} in pod["volumes"]
    assert container["securityContext"] == SECURE_CONTAINER, "still a read-only root"


def test_a_ca_secret_goes_with_an_existing_url_secret_and_defaults_to_key_ca_crt() -> None:
    objects = template({"amqp.existingSecret": "broker", "amqp.tls.caSecret": "broker-ca"})
    pod = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "amqp-ca"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]


def test_without_a_ca_secret_the_operator_uses_the_system_cas() -> None:
    objects = template(TLS_URL)
    container = _operator(objects)
    assert "CONVEYOR_AMQP_CA_FILE" not in _env(container)
    assert [m["name"] for m in container["volumeMounts"]] == ["tmp"]


def test_the_single_node_rabbitmq() -> None:
    objects = template({"rabbitmq.enabled": True, "rabbitmq.password": "p@ss"})
    [statefulset] = _by_kind(objects, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 1
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("rabbitmq:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    [secret] = _by_kind(objects, "Secret")
    assert secret["stringData"]["url"] == (
        "amqp://conveyor:p%40ss@conveyor-rabbitmq.conveyor-system.svc:5672/")
    assert _env(_operator(objects))["CONVEYOR_AMQP_URL"] == {
        "secretKeyRef": {"name": "conveyor-rabbitmq", "key": "url"}}
    # Operator pods and the broker's are told apart by their selectors.
    deployment = _by_kind(objects, "Deployment")[0]
    broker_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= broker_labels.items()


def test_generated_rabbitmq_password_is_url_safe() -> None:
    [secret] = _by_kind(template({"rabbitmq.enabled": True}), "Secret")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", secret["stringData"]["password"])


def test_service_monitor_and_dashboard() -> None:
    objects = template({**URL, "metrics.serviceMonitor.enabled": True,
                        "metrics.serviceMonitor.labels": {"release": "prom"},
                        "dashboard.enabled": True})
    [monitor] = _by_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics",
                                             "interval": "30s"}]
    [dashboard] = _by_kind(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["conveyor.json"])["title"]


def test_service_account_can_be_brought() -> None:
    objects = template({**URL, "serviceAccount.create": False, "serviceAccount.name": "mine"})
    assert not _by_kind(objects, "ServiceAccount")
    assert _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"][
        "serviceAccountName"] == "mine"
    for binding in _by_kind(objects, "ClusterRoleBinding") + _by_kind(objects, "RoleBinding"):
        assert binding["subjects"][0]["name"] == "mine"


@pytest.mark.parametrize(("values", "message"), [
    ({}, "the operator needs a broker"),
    ({**URL, "replicas": 2}, "additional properties 'replicas' not allowed"),
    ({**URL, "operator": {"namespace": ["a"]}}, "additional properties 'namespace' not allowed"),
    ({**URL, "operator.logLevel": "LOUD"}, "logLevel"),
    ({"amqp.url": "http://nope"}, "url"),
    ({**URL, "metrics.serviceMonitor.enabled": True, "metrics.service.enabled": False},
     "needs metrics.service.enabled"),
    ({**URL, "amqp.tls.caSecret": "ca"}, "amqp.tls.caSecret needs an amqps:// amqp.url"),
    ({"rabbitmq.enabled": True, "amqp.tls.caSecret": "ca"}, "the chart's rabbitmq has no TLS"),
    ({**TLS_URL, "amqp.tls.caSecretKey": ""}, "caSecretKey"),
    ({**TLS_URL, "amqp.tls.ca": "x"}, "additional properties 'ca' not allowed"),
])
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    result = helm("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, sub in node.get("properties", {}).items():
            found += _walk(sub, f"{path}.{key}")
        for key, sub in node.get("definitions", {}).items():
            found += _walk(sub, f"#/definitions/{key}")
        for key in ("items", "additionalProperties"):
            found += _walk(node.get(key), f"{path}[{key}]")
        for sub in node.get("anyOf", []):
            found += _walk(sub, f"{path}|")
    return found


def test_schema_closes_every_object_and_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in _walk(schema):
        if node.get("type") == "object":
            assert "additionalProperties" in node, f"{path or '.'}: open object"
            extra = node["additionalProperties"]
            assert extra is False or (isinstance(extra, dict) and "properties" not in node), path
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def covered(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key}: not in values.schema.json"
                covered(sub, node["properties"][key], f"{path}.{key}")

    covered(values, schema, "")


# Values whose value is a map of their own (Kubernetes types, label sets): one comment covers it.
WHOLE_VALUES = {"resources", "labels"}


def test_every_value_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    inside_value_at: int | None = None  # indentation of a map value being skipped
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):\s*(\S.*)?$", line)
        if not match:
            continue
        indent = len(match[1])
        if inside_value_at is not None and indent > inside_value_at:
            continue
        inside_value_at = None
        following = lines[number + 1] if number + 1 < len(lines) else ""
        listed = match[3] is None and following.lstrip().startswith("- ")
        section = match[3] is None and following.startswith(match[1] + "  ") and not listed
        if section and match[2] not in WHOLE_VALUES:
            continue  # a section: its values carry the comments
        if section or listed:  # one value, a map or a list of maps: one comment covers it
            inside_value_at = indent
        above = lines[number - 1].strip() if number else ""
        assert above.startswith("#"), f"values.yaml:{number + 1}: {line.strip()} has no comment"

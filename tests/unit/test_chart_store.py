"""The chart's object store values (store.*), rendered by `helm template`: the operator's
environment (the key pair by reference only), the CA mount, the bundled in-memory server, its
NetworkPolicies, and the values it refuses. The environment rendered is read back by the
operator's own settings loader, so the chart and the code cannot drift apart."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conveyor.operator.settings import load
from support.helm import CHART, helm, set_args, template
from unit.test_chart_networkpolicy import (
    _pod_labels,
    _policies,
    _ports,
    _selects,
    _worker_pod_labels,
)

URL = {"amqp.url": "amqp://conveyor:secret@broker:5672/"}
EXTERNAL = {**URL, "store.enabled": True, "store.endpoint": "https://s3.example:8443",
            "store.bucket": "runs", "store.region": "eu-west-1", "store.prefix": "conveyor/",
            "store.existingSecret": "operator-s3"}
BUNDLED = {**URL, "store.bundled.enabled": True}
ON = {"networkPolicy.enabled": True, "networkPolicy.apiServer.cidrs": ["10.96.0.1/32"],
      "networkPolicy.apiServer.ports": [443], "networkPolicy.broker.cidrs": ["10.20.0.0/24"]}


def _by_component(objects: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind
               and o["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    return found


def _container(objects: list[dict[str, Any]], component: str = "operator") -> dict[str, Any]:
    deployment = _by_component(objects, "Deployment", component)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _resolved(env: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment as the kubelet hands it over: references to Secrets resolved, and the
    field references the operator's settings read."""
    out = {}
    for name, value in env.items():
        if isinstance(value, str):
            out[name] = value
        elif "secretKeyRef" in value:
            ref = value["secretKeyRef"]
            out[name] = secrets[ref["name"]][ref["key"]]
        else:
            out[name] = "conveyor-system"  # POD_NAMESPACE: the only field reference read
    return out


def test_off_by_default_there_is_no_store_anywhere():
    objects = template(URL)
    assert not [n for n in _env(_container(objects)) if n.startswith("CONVEYOR_S3_")]
    assert not [o for o in objects if o["metadata"]["labels"].get(
        "app.kubernetes.io/component") == "store"]


def test_an_external_store_reaches_the_operator_with_its_key_pair_by_reference():
    objects = template({**EXTERNAL, "store.workerSecret": "workers-s3",
                        "store.maxObjectBytes": 268435456})
    env = _env(_container(objects))
    assert env["CONVEYOR_S3_ENDPOINT"] == "https://s3.example:8443"
    assert (env["CONVEYOR_S3_BUCKET"], env["CONVEYOR_S3_REGION"], env["CONVEYOR_S3_PREFIX"]) == (
        "runs", "eu-west-1", "conveyor/")
    assert env["CONVEYOR_S3_ACCESS_KEY"] == {"secretKeyRef": {"name": "operator-s3",
                                                              "key": "accessKey"}}
    assert env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {"name": "operator-s3",
                                                              "key": "secretKey"}}
    assert env["CONVEYOR_S3_WORKER_SECRET"] == "workers-s3"
    assert env["CONVEYOR_S3_MAX_OBJECT_BYTES"] == "268435456"
    assert "CONVEYOR_S3_CA_FILE" not in env
    # The operator accepts what the chart renders, with the Secret's keys the chart names.
    settings = load([], _resolved(env, {
        "conveyor-amqp": {"url": URL["amqp.url"]},
        "operator-s3": {"accessKey": "AKIA-operator", "secretKey": "op-s3cret"}}))
    assert settings.store is not None
    assert (settings.store.endpoint, settings.store.bucket, settings.store.prefix,
            settings.store.access_key) == ("https://s3.example:8443", "runs", "conveyor/",
                                           "AKIA-operator")
    assert settings.store_worker_secret == "workers-s3"
    assert settings.store_max_object_bytes == 268435456


def test_aws_s3_needs_no_endpoint_and_defaults_leave_the_rest_unset():
    values = {**EXTERNAL, "store.endpoint": "", "store.prefix": ""}
    env = _env(_container(template(values)))
    assert "CONVEYOR_S3_ENDPOINT" not in env and "CONVEYOR_S3_PREFIX" not in env
    assert "CONVEYOR_S3_WORKER_SECRET" not in env and "CONVEYOR_S3_MAX_OBJECT_BYTES" not in env
    assert env["CONVEYOR_S3_REGION"] == "eu-west-1"


def test_a_store_ca_secret_is_mounted_read_only_beside_the_brokers():
    objects = template({**EXTERNAL, "store.caSecret": "s3-ca", "store.caSecretKey": "root.pem"})
    container = _container(objects)
    assert _env(container)["CONVEYOR_S3_CA_FILE"] == "/etc/conveyor/s3/ca.crt"
    assert {"name": "store-ca", "mountPath": "/etc/conveyor/s3", "readOnly": True} in \
        container["volumeMounts"]
    pod = _by_component(objects, "Deployment", "operator")["spec"]["template"]["spec"]
    assert {"name": "store-ca", "secret": {"secretName": "s3-ca", "items": [
        {"key": "root.pem", "path": "ca.crt"}]}} in pod["volumes"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_bundled_store_is_an_in_memory_server_wired_into_the_operator():
    objects = template(BUNDLED)
    secret = _by_component(objects, "Secret", "store")
    assert secret["metadata"]["name"] == "conveyor-store"
    assert secret["stringData"]["accessKey"] == "conveyor"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", secret["stringData"]["secretKey"])
    server = _container(objects, "store")
    assert server["image"] == "conveyor-s3:0.1.0" and "command" not in server
    assert server["args"] == ["-listen", "[$(POD_IP)]:9000", "-allow-non-loopback",
                              "-bucket", "conveyor"]
    env = _env(server)
    assert env["S3SERVER_SECRET_KEY"] == {"secretKeyRef": {"name": "conveyor-store",
                                                           "key": "secretKey"}}
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    store_pod = _by_component(objects, "Deployment", "store")["spec"]
    assert store_pod["replicas"] == 1 and store_pod["strategy"] == {"type": "Recreate"}
    assert store_pod["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    service = _by_component(objects, "Service", "store")
    assert service["spec"]["ports"] == [{"name": "s3", "port": 9000, "targetPort": "s3"}]
    assert _selects({"matchLabels": service["spec"]["selector"]},
                    store_pod["template"]["metadata"]["labels"])
    # The operator's selector does not take the store's pod for one of its own.
    operator = _by_component(objects, "Deployment", "operator")
    assert not _selects(operator["spec"]["selector"], store_pod["template"]["metadata"]["labels"])

    operator_env = _env(_container(objects))
    assert operator_env["CONVEYOR_S3_ENDPOINT"] == "http://conveyor-store.conveyor-system.svc:9000"
    assert operator_env["CONVEYOR_S3_BUCKET"] == "conveyor"
    assert operator_env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {
        "name": "conveyor-store", "key": "secretKey"}}
    settings = load([], _resolved(operator_env, {"conveyor-amqp": {"url": URL["amqp.url"]},
                                                 "conveyor-store": secret["stringData"]}))
    assert settings.store is not None and settings.store.bucket == "conveyor"
    # Its secret key is nowhere but in its Secret.
    text = str([o for o in objects if o is not secret])
    assert secret["stringData"]["secretKey"] not in text


def test_the_bundled_store_takes_a_command_a_bucket_and_a_given_key():
    objects = template({**BUNDLED, "store.bundled.command": ["/cache/conveyor-s3"],
                        "store.bucket": "trial", "store.bundled.secretKey": "given-key",
                        "store.bundled.image.tag": "dev"})
    server = _container(objects, "store")
    assert server["command"] == ["/cache/conveyor-s3"] and server["image"] == "conveyor-s3:dev"
    assert server["args"][-2:] == ["-bucket", "trial"]
    assert _by_component(objects, "Secret", "store")["stringData"]["secretKey"] == "given-key"
    assert _env(_container(objects))["CONVEYOR_S3_BUCKET"] == "trial"


@pytest.mark.parametrize(("endpoint", "port"), [
    ("https://s3.example:8443", 8443), ("https://s3.example", 443), ("http://minio.local", 80),
    ("http://[fd00::5]:9000", 9000), ("", 443)])
def test_the_operator_may_reach_the_store_on_its_endpoints_port(endpoint: str, port: int):
    values = {**EXTERNAL, **ON, "store.endpoint": endpoint,
              "networkPolicy.store.cidrs": ["10.30.0.0/24"]}
    egress = _policies(values)["conveyor"]["spec"]["egress"]
    [to_store] = [r for r in egress if r["to"] == [{"ipBlock": {"cidr": "10.30.0.0/24"}}]]
    assert _ports(to_store) == {("TCP", port)}
    ports = {**values, "networkPolicy.store.ports": [443, 9443]}
    [given] = [r for r in _policies(ports)["conveyor"]["spec"]["egress"]
               if r["to"] == [{"ipBlock": {"cidr": "10.30.0.0/24"}}]]
    assert _ports(given) == {("TCP", 443), ("TCP", 9443)}


def test_no_store_rule_without_a_store():
    egress = _policies({**URL, **ON})["conveyor"]["spec"]["egress"]
    assert len(egress) == 3  # the API server, the broker, DNS


def test_the_bundled_store_is_reached_by_the_operator_and_the_workers_only():
    tools = [{"podSelector": {"matchLabels": {"app": "conveyor-cli"}}}]
    values = {**BUNDLED, **ON, "operator.namespaces": ["shop"],
              "networkPolicy.store.bundledFrom": tools}
    policies = _policies(values)
    objects = template(values)
    store_pod = _by_component(objects, "Deployment", "store")["spec"]["template"]["metadata"][
        "labels"]
    operator_pod = _pod_labels({**URL, **ON}, "Deployment")
    [to_store] = [r for r in policies["conveyor"]["spec"]["egress"]
                  if ("TCP", 9000) in _ports(r)]
    [peer] = to_store["to"]
    assert _selects(peer["podSelector"], store_pod)
    assert not _selects(peer["podSelector"], operator_pod)

    spec = policies["conveyor-store"]["spec"]
    assert _selects(spec["podSelector"], store_pod)
    [s3] = spec["ingress"]
    assert _ports(s3) == {("TCP", 9000)}
    operator_peer, worker_peer, *rest = s3["from"]
    assert _selects(operator_peer["podSelector"], operator_pod)
    assert _selects(worker_peer["podSelector"], _worker_pod_labels("shop"))
    assert _selects(worker_peer["namespaceSelector"], {"kubernetes.io/metadata.name": "shop"})
    assert not _selects(worker_peer["namespaceSelector"],
                        {"kubernetes.io/metadata.name": "default"})
    assert rest == tools
    assert spec["egress"] == []


def test_lint_is_clean_with_a_store():
    for values in (EXTERNAL, {**EXTERNAL, "store.caSecret": "ca", "store.workerSecret": "w"},
                   {**BUNDLED, **ON}):
        out = helm("lint", "--strict", str(CHART), *set_args(values)).stdout
        assert "0 chart(s) failed" in out
        assert not re.search(r"\[(WARNING|ERROR)\]", out), out


@pytest.mark.parametrize(("values", "message"), [
    ({**URL, "store.enabled": True, "store.existingSecret": "s"}, "store.bucket: the object"),
    ({**URL, "store.enabled": True, "store.bucket": "runs"}, "store.existingSecret: the operator"),
    ({**EXTERNAL, "store.endpoint": "http://s3.example", "store.caSecret": "ca"},
     "store.caSecret needs an https:// store.endpoint"),
    ({**BUNDLED, "store.endpoint": "https://s3.example"}, "set one of them"),
    ({**BUNDLED, "store.existingSecret": "s"}, "makes its own key pair"),
    ({**BUNDLED, "store.caSecret": "ca"}, "has no TLS"),
    ({**URL, "store.workerSecret": "w"}, "the object store is off"),
    ({**EXTERNAL, "store.bucket": "Runs_1"}, "/store/bucket"),
    ({**EXTERNAL, "store.endpoint": "https://u:p@s3.example"}, "/store/endpoint"),
    ({**EXTERNAL, "store.endpoint": "s3.example"}, "/store/endpoint"),
    ({**EXTERNAL, "store.workerSecret": "Workers"}, "/store/workerSecret"),
    ({**EXTERNAL, "store.maxObjectBytes": -1}, "/store/maxObjectBytes"),
    ({**EXTERNAL, "store.bundled.image.port": 1}, "additional properties 'port' not allowed"),
    ({**EXTERNAL, **ON}, "networkPolicy.store: say where the object store is"),
    ({**BUNDLED, **ON, "networkPolicy.dns.enabled": False}, "which needs DNS"),
])
def test_bad_store_values_are_refused(values: dict[str, Any], message: str):
    result = helm("template", "x", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr

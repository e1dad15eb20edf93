"""The operator and its workers over amqps, verifying RabbitMQ with a CA taken from a Secret:
a run succeeds; the workers got the CA through their Workflow's broker Secret; an operator
given another CA exits at start saying why; a link that later fails on TLS turns /healthz
503 with the cause, and a CA put right mends it without a restart."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support import http
from support.kube import local_testbed_only
from support.operator import OperatorProcess, operator_process
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow
from testbed import rabbitmq
from testbed.layout import paths, ports

# The operator runs as a local process and reads its CA from a file; RabbitMQ's connection
# list comes from the test bed's rabbitmqctl.
pytestmark = [pytest.mark.e2e, local_testbed_only]

CA_SECRET = "rabbitmq-ca"


def _password(url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    assert password
    return password


def _masked(url: str) -> str:
    return url.replace(f":{_password(url)}@", ":***@")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ca_from_secret(api_client, namespace: str, broker_tls, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """The broker's CA stored in a Secret, and written from that Secret into a file, as the
    kubelet does for the chart's read-only mount (amqp.tls.caSecret)."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": CA_SECRET},
                                              "stringData": {"ca.crt":
                                                             broker_tls.ca_file.read_text()}})
    stored = core.read_namespaced_secret(CA_SECRET, namespace).data["ca.crt"]
    path = tmp_path / "mounted" / "ca.crt"
    path.parent.mkdir()
    path.write_bytes(base64.b64decode(stored))
    return path


@dataclass(frozen=True)
class TLSOperator:
    process: OperatorProcess
    health_url: str


@pytest.fixture
def tls_operator(cluster, broker_tls, namespace: str, crds: None, ca_from_secret: Path,  # type: ignore[no-untyped-def]
                 tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TLSOperator]:
    """An operator on amqps with the CA file from the Secret, /healthz on loopback."""
    port = _free_port()
    process = operator_process(cluster, broker_tls.url, namespace, tmp_path / "operator.log",
                               CONVEYOR_AMQP_CA_FILE=str(ca_from_secret),
                               CONVEYOR_HEALTH_PORT=str(port),
                               CONVEYOR_HEALTH_ADDRESS="127.0.0.1")
    process.start()
    yield TLSOperator(process, f"http://127.0.0.1:{port}/healthz")
    process.stop(signal.SIGTERM)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n--- operator log ({process.log}) ---\n{process.tail(120)}")


def _kubectl(cluster, namespace: str, *args: str, stdin: str | None = None) -> str:  # type: ignore[no-untyped-def]
    result = subprocess.run(["kubectl", "-n", namespace, *args], env=cluster.env(), input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _run_status(cluster, namespace: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = json.loads(_kubectl(cluster, namespace, "get", "cwr", name, "-o", "json"))
    return body.get("status") or {}  # type: ignore[no-any-return]


def _succeeds(cluster, namespace: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    eventually(lambda: _run_status(cluster, namespace, name).get("phase")
               in ("Succeeded", "Failed"), 120, interval=0.2, what=f"run {name} to finish")
    status = _run_status(cluster, namespace, name)
    assert status["phase"] == "Succeeded", status
    return status


def _tls_connections(name_part: str) -> dict[str, bool]:
    """RabbitMQ's connections whose client-given name contains `name_part`: name -> TLS."""
    found = {}
    listing = rabbitmq.ctl(paths(), ports(), "list_connections", "client_properties", "ssl")
    for line in listing.splitlines():
        marker = '{"connection_name","'
        if marker in line and name_part in line:
            name = line.split(marker, 1)[1].split('"}', 1)[0]
            found[name] = line.rstrip().rsplit("\t", 1)[1] == "true"
    return found


def test_a_run_succeeds_with_operator_and_workers_on_amqps(
        tls_operator: TLSOperator, cluster, namespace: str, api_client, broker_tls,  # type: ignore[no-untyped-def]
        ca_from_secret: Path) -> None:
    wf = workflow("secure", [
        {"name": "first", "type": "work", "inputs": {"echo": "over tls"}},
        {"name": "second", "type": "work", "dependsOn": ["first"],
         "inputs": {"echo": "${{ tasks.first.outputs.echo }}"}},
    ], outputs={"echo": "${{ tasks.second.outputs.echo }}"},
        # A worker stays up after the run, so its connection is there to look at.
        taskTypes=[work_type(scaling={"minReplicas": 1})])
    _kubectl(cluster, namespace, "apply", "-f", "-", stdin=as_json(wf, run("r1", "secure")))
    status = _succeeds(cluster, namespace, "r1")
    assert status["outputs"] == {"echo": "over tls"}

    # The workers' CA came through the Workflow's own broker Secret, mounted read-only.
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    secret = core.read_namespaced_secret("conveyor-secure-amqp", namespace)
    assert base64.b64decode(secret.data["ca.crt"]) == ca_from_secret.read_bytes()
    assert base64.b64decode(secret.data["url"]).decode() == broker_tls.url
    pod = apps.read_namespaced_deployment("secure-work", namespace).spec.template.spec
    assert [(v.name, v.secret.secret_name) for v in pod.volumes] == [
        ("conveyor-amqp-ca", "conveyor-secure-amqp")]
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["CONVEYOR_AMQP_CA_FILE"] == "/etc/conveyor/amqp/ca.crt"

    # RabbitMQ's word: the operator's links and the workers' connections are TLS.
    # (Only the workers connected now: a pod scaled away since, or not connected yet, has
    # no connection to show.)
    connections = eventually(
        lambda: (found := _tls_connections("conveyor-")) and any(
            n.startswith("conveyor-worker secure-work") for n in found) and found,
        60, interval=0.5, what="a worker of the pool connected")
    workers = [n for n in connections if n.startswith("conveyor-worker secure-work")]
    for name in ("conveyor-operator", "conveyor-operator-triggers", *workers):
        assert connections.get(name) is True, (name, connections)
    assert _password(broker_tls.url) not in tls_operator.process.log.read_text()


def test_an_operator_given_another_ca_exits_at_start_saying_why(
        cluster, broker_tls, namespace: str, crds: None, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process = operator_process(cluster, broker_tls.url, namespace, tmp_path / "operator.log",
                               CONVEYOR_AMQP_CA_FILE=str(broker_tls.wrong_ca_file))
    started = time.monotonic()
    process.start()
    try:
        assert process.process is not None
        code = process.process.wait(timeout=60)
    finally:
        process.stop()
    log = process.log.read_text()
    assert code == 1, log
    [line] = [x for x in log.splitlines() if x.startswith("conveyor-operator: cannot start: ")]
    assert f"cannot connect to RabbitMQ at {_masked(broker_tls.url)}" in line
    assert "TLS certificate verify failed" in line
    assert _password(broker_tls.url) not in log
    # Start-up (imports, the Lease) is most of it: the handshake's verdict takes milliseconds.
    assert time.monotonic() - started < 30


def test_a_link_that_fails_on_tls_turns_healthz_503_until_the_ca_is_right_again(
        tls_operator: TLSOperator, broker_tls, ca_from_secret: Path) -> None:  # type: ignore[no-untyped-def]
    url = tls_operator.health_url
    # "ok", not the standby's answer while it waits for the Lease: the links are up.
    eventually(lambda: http.answer(url) == (200, "ok\n"), 60, interval=0.2,
               what="the operator started and healthy")
    eventually(lambda: len(_tls_connections("conveyor-operator")) == 2, 30, interval=0.2,
               what="both operator links connected")
    good = ca_from_secret.read_bytes()
    # A rotation gone wrong: the mounted CA is replaced, then the broker drops the links; the
    # operator reads the file again for the new connection.
    ca_from_secret.write_bytes(broker_tls.wrong_ca_file.read_bytes())
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(broker_tls.url).path[1:])
    rabbitmq.ctl(paths(), ports(), "close_all_connections", "-p", vhost, "test: CA rotation")
    _, text = eventually(lambda: (answer := http.answer(url))[0] == 503 and answer, 30,
                         interval=0.2, what="/healthz to report the TLS failure")
    assert "cannot connect (certificate-verify-failed)" in text
    assert _masked(broker_tls.url) in text and _password(broker_tls.url) not in text
    log = tls_operator.process.log.read_text()
    assert "ERROR conveyor.broker Failed to connect over TLS cause=certificate-verify-failed" \
        in log
    ca_from_secret.write_bytes(good)
    eventually(lambda: http.answer(url) == (200, "ok\n"), 30, interval=0.2,
               what="/healthz healthy again once the CA is right")

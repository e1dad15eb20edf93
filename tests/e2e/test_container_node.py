"""The container node: a real kubelet with containerd and runc runs pods from images, with
what the process node does not do (images, read-only root filesystems, users, emptyDir and
projected token volumes, liveness probes, image pull errors, crash-loop back-off, `kubectl
logs` and `exec`), and its pods reach the test bed's broker and API server from their own IPs.

Needs the container node (containerd, runc, the CNI plugins); skips without it, and fails
when CONVEYOR_REQUIRE_CONTAINERS=1.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.containers import (
    BUSYBOX_IMAGE,
    busybox_image,
    container_namespace,
    endpoints,
    require_container_node,
)
from support.kube import pod_manifest, python_container
from support.waiting import eventually
from testbed import containers, netns
from testbed.layout import CONTAINER_NODE_NAME, NODE_NAME, REPO, cache_dir, paths

pytestmark = pytest.mark.e2e

SECURE = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
          "capabilities": {"drop": ["ALL"]}}


@pytest.fixture(scope="module")
def image(cluster) -> str:  # type: ignore[no-untyped-def]
    require_container_node()
    return busybox_image()


@pytest.fixture
def cns(api_client, image: str, request: pytest.FixtureRequest) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A namespace whose pods go to the container node."""
    stem = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:30]
    yield from container_namespace(api_client, f"c-{stem.strip('-')}-{secrets.token_hex(3)}")


@pytest.fixture
def core(api_client) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(api_client)


def _box(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": BUSYBOX_IMAGE, "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", script], **extra}


def _status(core: client.CoreV1Api, ns: str, name: str) -> Any:
    pod = core.read_namespaced_pod(name, ns)
    return (pod.status.container_statuses or [None])[0]


def _kubectl(cluster, ns: str, *args: str) -> str:  # type: ignore[no-untyped-def]
    out = subprocess.run(["kubectl", "-n", ns, *args], env=cluster.env(), capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def test_a_pod_runs_from_an_image_as_a_kubelet_runs_it(cluster, core, cns: str) -> None:  # type: ignore[no-untyped-def]
    core.create_namespaced_secret(cns, {"metadata": {"name": "s1"},
                                        "data": {"k": base64.b64encode(b"sekret").decode()}})
    script = ("id; echo secret=$(cat /s/k); echo pod-ip=$POD_IP; echo greeting=$GREETING; "
              "ls /var/run/secrets/kubernetes.io/serviceaccount; "
              "touch /e/ok && echo emptydir-ok; touch /x 2>/dev/null || echo rootfs-read-only; "
              "trap 'echo got-sigterm' TERM; httpd -p 8080 -h /e; "
              "while true; do sleep 1; done")
    pod = pod_manifest("p1", [_box(
        "c", script, securityContext=SECURE,
        env=[{"name": "GREETING", "value": "hello"},
             {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        readinessProbe={"httpGet": {"port": 8080, "path": "/ok"}, "periodSeconds": 1},
        livenessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 2},
        volumeMounts=[{"name": "s", "mountPath": "/s"}, {"name": "e", "mountPath": "/e"}])],
        terminationGracePeriodSeconds=3,
        securityContext={"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        volumes=[{"name": "s", "secret": {"secretName": "s1"}},
                 {"name": "e", "emptyDir": {}}])
    core.create_namespaced_pod(cns, pod)

    def ready() -> Any:
        p = core.read_namespaced_pod("p1", cns)
        return p if any(c.type == "Ready" and c.status == "True"
                        for c in p.status.conditions or []) else None

    p = eventually(ready, timeout=60, interval=0.5, what="p1 Ready")
    assert p.spec.node_name == CONTAINER_NODE_NAME
    assert ipaddress.ip_address(p.status.pod_ip) in ipaddress.ip_network(netns.POD_SUBNET)
    assert p.status.host_ip == netns.NODE_IP
    status = p.status.container_statuses[0]
    assert status.container_id.startswith("containerd://")
    assert status.image_id.startswith("sha256:") or "@sha256:" in status.image_id
    assert status.restart_count == 0 and status.ready

    logs = _kubectl(cluster, cns, "logs", "p1")
    assert "uid=10001" in logs and "secret=sekret" in logs and "greeting=hello" in logs
    assert f"pod-ip={p.status.pod_ip}" in logs
    assert "token" in logs and "ca.crt" in logs and "namespace" in logs
    assert "emptydir-ok" in logs and "rootfs-read-only" in logs
    assert _kubectl(cluster, cns, "exec", "p1", "--", "cat", "/s/k") == "sekret"

    started = time.monotonic()
    core.delete_namespaced_pod("p1", cns)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("p1", cns)
        except client.ApiException as error:
            return error.status == 404
        return False

    eventually(gone, timeout=40, interval=0.2, what="p1 deleted")
    # The shell traps SIGTERM and goes on, so the kubelet SIGKILLs it after the grace period.
    assert time.monotonic() - started >= 2.5


def test_a_failing_liveness_probe_restarts_the_container(core, cns: str) -> None:  # type: ignore[no-untyped-def]
    core.create_namespaced_pod(cns, pod_manifest("live", [_box(
        "c", "echo up; exec sleep 3600", securityContext=SECURE,
        livenessProbe={"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 1})],
        terminationGracePeriodSeconds=1))

    status = eventually(lambda: (s := _status(core, cns, "live")) and s.restart_count >= 2 and s,
                        timeout=120, interval=1, what="two liveness restarts")
    assert status.last_state.terminated is not None


def test_an_unpullable_image_reports_image_pull_back_off(core, cns: str) -> None:  # type: ignore[no-untyped-def]
    # A loopback registry: the pull fails with `connection refused`, with no DNS lookup.
    core.create_namespaced_pod(cns, pod_manifest("nope", [
        {"name": "c", "image": "127.0.0.1:1/nope:1", "command": ["/bin/sh"]}]))
    seen = set()

    def backoff() -> bool:
        s = _status(core, cns, "nope")
        if s is not None and s.state.waiting is not None:
            seen.add(s.state.waiting.reason)
        return "ImagePullBackOff" in seen

    eventually(backoff, timeout=60, interval=0.3, what="ImagePullBackOff")
    assert seen <= {"ErrImagePull", "ImagePullBackOff", "ContainerCreating"}, seen


def test_a_crashing_container_reaches_crash_loop_back_off(core, cns: str) -> None:  # type: ignore[no-untyped-def]
    core.create_namespaced_pod(cns, pod_manifest("crash", [_box("c", "exit 3",
                                                                securityContext=SECURE)]))

    def looping() -> Any:
        s = _status(core, cns, "crash")
        waiting = s and s.state.waiting
        return s if waiting and waiting.reason == "CrashLoopBackOff" else None

    status = eventually(looping, timeout=90, interval=0.5, what="CrashLoopBackOff")
    assert status.restart_count >= 1
    assert status.last_state.terminated.exit_code == 3
    assert status.last_state.terminated.reason == "Error"


def test_a_pod_reaches_the_broker_and_the_api_server(cluster, core, cns: str,  # type: ignore[no-untyped-def]
                                                     amqp_url: str) -> None:
    ep = endpoints(amqp_url)
    host, port = ep.amqp_url.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    assert host == netns.NODE_IP
    # An AMQP 0-9-1 protocol header; RabbitMQ answers with Connection.Start, naming itself.
    s3 = ep.s3_endpoint
    script = (f"printf 'AMQP\\000\\000\\011\\001' | nc -w 5 {host} {port} | grep -q RabbitMQ "
              f"&& echo broker-ok; wget -S -q -O /dev/null {s3}/ 2>&1 | grep -q 'HTTP/1.1 ' "
              "&& echo store-ok; incluster /api")
    core.create_namespaced_pod(cns, pod_manifest("reach", [_box("c", script,
                                                                securityContext=SECURE)],
                                                 restartPolicy="Never"))

    def finished() -> Any:
        p = core.read_namespaced_pod("reach", cns)
        return p if p.status.phase in ("Succeeded", "Failed") else None

    p = eventually(finished, timeout=60, interval=0.5, what="the reach pod to finish")
    logs = _kubectl(cluster, cns, "logs", "reach")
    assert "broker-ok" in logs, logs
    assert "store-ok" in logs, logs
    assert f"incluster {netns.SERVICE_IP}:443 200" in logs, logs
    assert p.status.phase == "Succeeded", logs
    assert ep.api_server == f"https://{netns.SERVICE_IP}:443"


def test_a_deployment_is_scheduled_onto_the_container_node(api_client, core, cns: str) -> None:  # type: ignore[no-untyped-def]
    apps = client.AppsV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(cns, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [_box(
                "c", "exec httpd -f -p 8080 -h /", securityContext=SECURE,
                readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1})]}}}})

    def available() -> bool:
        d = apps.read_namespaced_deployment("web", cns)
        return (d.status.available_replicas or 0) == 2

    eventually(available, timeout=90, interval=0.5, what="2 available replicas")
    pods = core.list_namespaced_pod(cns, label_selector="app=web").items
    assert {p.spec.node_name for p in pods} == {CONTAINER_NODE_NAME}
    assert len({p.status.pod_ip for p in pods}) == 2, "each pod has an IP of its own"


def test_other_namespaces_stay_on_the_process_node(core, namespace: str, image: str) -> None:  # type: ignore[no-untyped-def]
    core.create_namespaced_pod(namespace, pod_manifest("here", [
        python_container("c", "print('ok')")], restartPolicy="Never"))
    pod = eventually(lambda: core.read_namespaced_pod("here", namespace).spec.node_name,
                     timeout=30, what="the pod scheduled")
    assert pod == NODE_NAME


def test_images_import_skips_what_was_imported(image: str) -> None:
    tar = cache_dir() / "testbed" / "busybox-image.tar"
    env = dict(os.environ, PYTHONPATH=str(REPO / "hack"))

    def run(*extra: str) -> str:
        return subprocess.run([sys.executable, "-m", "testbed", "images", "import", *extra,
                               str(tar)], env=env, check=True, capture_output=True,
                              text=True).stderr

    assert "Imported 0 of 1" in run()
    assert "Imported 1 of 1" in run("--force")
    assert image in containers.ctr(paths(), "images", "ls", "-q").split()
    assert Path(tar).exists()

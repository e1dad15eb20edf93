"""Conveyor from the images `make images` builds, on the container node (a real kubelet with
containerd and runc): `helm install` runs the operator image under the chart's RBAC,
securityContext and probes; the example Workflow's pools run the examples image, scale from
zero to several pods and back to zero, and the run succeeds with every item; a podTemplate's
ServiceAccount, Secret and ConfigMap reach a task in a pod of the worker image; an image that
cannot be pulled is named in the Workflow's status and by `conveyor get`.

One release serves the module: a container namespace (its pods all go to the container node)
holds the operator and the Workflows it watches. The broker URL is the node's view of the
test bed's RabbitMQ (through the bridge), which the operator also hands its workers. Needs the
container node and the images; fails, never skips, when CONVEYOR_REQUIRE_CONTAINERS=1.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.containers import (
    container_namespace,
    endpoints,
    product_images,
    require_container_node,
)
from support.helm import CHART, helm
from support.waiting import eventually
from support.workflows import as_json, run, workflow
from testbed.layout import CONTAINER_NODE_NAME

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
IMAGE_ID_PREFIX = "docker.io/library/"


@dataclass
class Install:
    """The release and its namespace; kubectl and the CLI in it."""

    namespace: str
    release: str
    env: dict[str, str]
    images: dict[str, str]
    amqp_url: str

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl in the namespace, its outcome whatever it is."""
        return subprocess.run(["kubectl", "-n", self.namespace, *args], env=self.env,
                              input=stdin, capture_output=True, text=True, timeout=120,
                              check=False)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=as_json(*manifests))

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def conveyor(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conveyor.cli", *args, "-n",
                               self.namespace], env=dict(self.env, CONVEYOR_AMQP_URL=self.amqp_url),
                              capture_output=True, text=True, timeout=60, check=False)

    def operator_pod(self) -> dict[str, Any]:
        pods = [p for p in self.json("pods", "-l", f"app.kubernetes.io/instance={self.release}")
                ["items"] if not p["metadata"].get("deletionTimestamp")]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        return pods[0]  # type: ignore[no-any-return]

    def operator_log(self) -> str:
        return self.kubectl("logs", "-l", f"app.kubernetes.io/instance={self.release}",
                            "--tail", "80", check=False)

    def finished(self, run_name: str, timeout: float,
                 each: Any = None) -> dict[str, Any]:
        """The run's status once it ended; `each()` is called at every poll until then."""
        def ended() -> dict[str, Any] | None:
            if each is not None:
                each()
            status = self.json("cwr", run_name).get("status") or {}
            return status if status.get("phase") in ("Succeeded", "Failed", "Cancelled") \
                else None

        try:
            return eventually(ended, timeout, interval=0.5,  # type: ignore[no-any-return]
                              what=f"run {run_name} to end")
        except AssertionError:
            print(f"--- operator log ---\n{self.operator_log()}")
            raise


@pytest.fixture(scope="module")
def install(cluster, api_client, amqp_url: str, crds: None,  # type: ignore[no-untyped-def]
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    require_container_node()
    images = product_images()
    ns_name = f"c-images-{secrets.token_hex(3)}"
    release = f"cv-{secrets.token_hex(3)}"
    env = cluster.env()
    repository, _, tag = images["operator"].rpartition(":")
    values = {
        # The session applied the CRDs (the `crds` fixture); a release owning them would
        # fight the other tests' over them.
        "crds": {"enabled": False},
        # Never: a missing image must fail here, not send the kubelet to a public registry.
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "operator": {"namespaces": [ns_name]},
        "amqp": {"url": endpoints(amqp_url).amqp_url},
    }
    values_file = tmp_path_factory.mktemp("images") / "values.yaml"
    values_file.write_text(json.dumps(values))
    values_file.chmod(0o600)
    for ns in container_namespace(api_client, ns_name):
        made = Install(ns, release, env, images, amqp_url)
        try:
            helm("install", release, str(CHART), "--namespace", ns, "-f", str(values_file),
                 "--wait", "--timeout", "4m", env=env)
        except AssertionError:
            print(f"--- pods ---\n{made.kubectl('get', 'pods', '-o', 'wide', check=False)}"
                  f"\n--- operator log ---\n{made.operator_log()}")
            raise
        try:
            yield made
        finally:
            helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m",
                 env=env, check=False)


def _ran_from(container: dict[str, Any], image: str) -> None:
    """A container status as a kubelet reports it: containerd's ID, the resolved image."""
    assert container["containerID"].startswith("containerd://"), container
    assert container["image"] == IMAGE_ID_PREFIX + image, container
    assert container["imageID"].split("@")[-1].startswith("sha256:"), container


def test_the_operator_image_runs_under_the_charts_security_context_and_probes(
        install: Install) -> None:
    pod = install.operator_pod()
    assert pod["spec"]["nodeName"] == CONTAINER_NODE_NAME
    [container] = pod["status"]["containerStatuses"]
    _ran_from(container, install.images["operator"])
    assert container["ready"] is True and container["restartCount"] == 0, container
    probes = pod["spec"]["containers"][0]
    assert {probes[p]["httpGet"]["path"] for p in
            ("livenessProbe", "readinessProbe", "startupProbe")} == {"/livez", "/readyz"}

    name = pod["metadata"]["name"]
    # The image's user, not root, and a root filesystem it cannot write.
    assert install.kubectl("exec", name, "--", "id", "-u").strip() == "10001"
    wrote = install.run("exec", name, "--", "touch", "/opt/conveyor/x")
    assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, wrote


@dataclass
class PoolWatch:
    """The example's pools as they change: the most replicas each had, where its pods ran."""

    install: Install
    most: dict[str, int] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self) -> None:
        for d in self.install.json("deployments", "-l",
                                   "conveyor.dev/workflow=order-fulfilment")["items"]:
            pool = d["metadata"]["labels"]["conveyor.dev/task-type"]
            self.most[pool] = max(self.most.get(pool, 0), d["spec"].get("replicas") or 0)
        for p in self.install.json("pods", "-l", "conveyor.dev/workflow=order-fulfilment")[
                "items"]:
            if p["status"].get("containerStatuses"):
                self.pods[p["metadata"]["name"]] = p

    def replicas(self) -> dict[str, int]:
        return {d["metadata"]["labels"]["conveyor.dev/task-type"]: d["spec"].get("replicas")
                for d in self.install.json("deployments", "-l",
                                           "conveyor.dev/workflow=order-fulfilment")["items"]}


def test_the_example_runs_from_the_examples_image_its_pools_scale_up_and_back_to_zero(
        install: Install) -> None:
    install.kubectl("apply", "-f", str(EXAMPLES / "order-fulfilment.yaml"))
    watch = PoolWatch(install)
    try:
        eventually(lambda: len(watch.replicas()) == 4 and watch.replicas(), 60, interval=0.5,
                   what="the example's four pools")
    except AssertionError:
        print(f"--- workflow ---\n{install.kubectl('get', 'cwf', '-o', 'yaml', check=False)}"
              f"\n--- operator log ---\n{install.operator_log()}")
        raise
    assert set(watch.replicas().values()) == {0}, watch.replicas()  # minReplicas 0: idle

    install.kubectl("apply", "-f", str(EXAMPLES / "order-fulfilment-run.yaml"))
    status = install.finished("order-42", 300, each=watch)
    assert status["phase"] == "Succeeded", status.get("message")
    # Nothing lost: each of the 20 reservations counted, each task done.
    assert status["outputs"]["reserved"] == 20, status["outputs"]
    phases = {t["name"]: t["phase"] for t in status["tasks"]}
    assert phases["reserve"] == "Succeeded" and phases["charge"] == "Succeeded", phases
    assert phases["gift-wrap"] == "Skipped", phases

    # Up from zero: every pool ran pods (how many the backlog asked for is the scaling
    # policy's business, tested on its own).
    print(f"most replicas seen: {watch.most}")
    assert all(watch.most.get(pool, 0) >= 1 for pool in
               ("checks", "inventory", "payments", "notify")), watch.most
    assert watch.pods, "no worker pod was seen running"
    for pod in watch.pods.values():
        assert pod["spec"]["nodeName"] == CONTAINER_NODE_NAME, pod["metadata"]["name"]
        _ran_from(pod["status"]["containerStatuses"][0], install.images["examples"])

    # And back to zero once idle (idleSecondsBeforeScaleDown: 30), the pods gone.
    eventually(lambda: set(watch.replicas().values()) == {0}, 150, interval=1,
               what="every pool scaled back to zero")
    eventually(lambda: not install.json("pods", "-l",
                                        "conveyor.dev/workflow=order-fulfilment")["items"],
               120, interval=1, what="the worker pods gone")


MODULE = textwrap.dedent('''\
    """A task that reports what its pod was given: a mounted Secret, its identity, its user."""
    import base64
    import json
    import os

    from conveyor.worker import task

    TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


    @task("files")
    def read(inputs, ctx):
        with open(inputs["path"]) as f:
            content = f.read()
        with open(TOKEN) as f:
            claims = f.read().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        return {"content": content, "subject": claims["sub"], "uid": os.getuid(),
                "colour": os.environ.get("E2E_COLOUR")}
    ''')


def test_a_pod_template_gives_worker_pods_of_the_worker_image_an_account_and_a_secret(
        install: Install) -> None:
    greeting = f"hello {secrets.token_hex(4)}"
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "e2e-workers"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e2e-config"},
         "data": {"greeting": base64.b64encode(greeting.encode()).decode()}},
        # The task module itself, mounted where the worker image looks (/app).
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e2e-module"},
         "data": {"e2e_files.py": MODULE}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "e2e-env"},
         "data": {"COLOUR": "teal"}},
    ]
    files_type = {
        "name": "files", "image": install.images["worker"],
        "command": ["conveyor-worker", "--module", "e2e_files"],
        "scaling": {"minReplicas": 0, "maxReplicas": 1, "idleSecondsBeforeScaleDown": 5},
        "podTemplate": {
            "serviceAccountName": "e2e-workers",
            "automountServiceAccountToken": True,
            "imagePullPolicy": "Never",
            "volumes": [{"name": "module", "configMap": {"name": "e2e-module"}},
                        {"name": "config", "secret": {"secretName": "e2e-config"}}],
            "volumeMounts": [{"name": "module", "mountPath": "/app", "readOnly": True},
                             {"name": "config", "mountPath": "/etc/e2e-config",
                              "readOnly": True}],
            "envFrom": [{"configMapRef": {"name": "e2e-env"}, "prefix": "E2E_"}],
        },
    }
    wf = workflow("templated", [{"name": "read", "type": "files",
                                 "inputs": {"path": "/etc/e2e-config/greeting"}}],
                  outputs={"got": "${{ tasks.read.outputs }}"}, taskTypes=[files_type])
    install.apply(*objects, wf, run("t1", "templated"))

    status = install.finished("t1", 180)
    assert status["phase"] == "Succeeded", status.get("message")
    got = status["outputs"]["got"]
    assert got["content"] == greeting
    assert got["subject"] == f"system:serviceaccount:{install.namespace}:e2e-workers"
    assert got["uid"] == 10001 and got["colour"] == "teal", got


def test_an_image_that_cannot_be_pulled_is_named_in_the_workflow_status_and_conveyor_get(
        install: Install) -> None:
    # A loopback registry: the pull fails with `connection refused`, no DNS lookup, no
    # traffic beyond the node.
    broken = {"name": "broken", "image": "127.0.0.1:1/nope:1",
              "command": ["conveyor-worker", "--module", "nothing"],
              "scaling": {"minReplicas": 1, "maxReplicas": 1}}
    wf = workflow("unpullable", [{"name": "a", "type": "broken"}], taskTypes=[broken])
    install.apply(wf)

    def pulled_back() -> dict[str, Any] | None:
        status = install.json("workflow", "unpullable").get("status") or {}
        pools = {p["name"]: p for p in status.get("taskTypes") or []}
        return status if (pools.get("broken") or {}).get("reason") == "ImagePullBackOff" \
            else None

    status = eventually(pulled_back, 150, interval=1, what="the pool's ImagePullBackOff")
    [entry] = status["taskTypes"]
    assert "127.0.0.1:1/nope:1" in entry["message"], entry
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["PoolsHealthy"]["status"] == "False"
    assert conditions["PoolsHealthy"]["reason"] == "ImagePullBackOff"

    # The kubelet goes on trying: the reason flips between the two as it does.
    got = install.conveyor("get", "workflow/unpullable")
    assert got.returncode == 0, got.stderr
    [row] = [line for line in got.stdout.splitlines() if line.startswith("broken ")]
    assert ("ImagePullBackOff" in row or "ErrImagePull" in row) and "127.0.0.1:1/nope:1" in row, \
        got.stdout

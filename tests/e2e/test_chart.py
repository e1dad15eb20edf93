"""`helm install` of the chart runs the operator as a pod of the cluster, under the chart's RBAC
and nothing more, and the example Workflow succeeds through it; `helm uninstall` leaves none of
the release's objects behind but the CRDs (kept by default).

Each test installs a release of its own name and uninstalls it in a `finally`, so no
cluster-scoped object (ClusterRoles...) outlives it. On the test bed the operator's container
runs `conveyor-operator` as a local process (no images there); against another cluster
(CONVEYOR_TEST_USE_KUBECONFIG=1) it runs the image CONVEYOR_TEST_OPERATOR_IMAGE names.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor import names
from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from support.helm import CHART, helm
from support.waiting import eventually
from testbed.layout import paths

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CRDS = ("workflows.conveyor.dev", "workflowruns.conveyor.dev")
NAMESPACED = "deployments,replicasets,pods,services,secrets,configmaps,serviceaccounts,roles," \
             "rolebindings,leases"
CLUSTER = "clusterroles,clusterrolebindings"


def _operator_values(amqp_url: str, namespace: str) -> dict[str, Any]:
    values: dict[str, Any] = {"operator": {"namespaces": [namespace]},
                              "amqp": {"url": amqp_url}}
    if os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1":
        image = os.environ.get("CONVEYOR_TEST_OPERATOR_IMAGE", "conveyor-operator:dev")
        repository, _, tag = image.rpartition(":")
        values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    else:
        values["operator"]["command"] = ["conveyor-operator"]
        values["health"] = {"listenOnPodIP": True}
    return values


class Release:
    def __init__(self, cluster: Any, namespace: str, tmp_path: Path) -> None:
        self.name = f"cv-{secrets.token_hex(3)}"
        self.namespace = namespace
        self.env = cluster.env()
        self.values = tmp_path / "values.yaml"

    def kubectl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(["kubectl", *args], env=self.env, capture_output=True,
                                text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def adopt_crds(self) -> None:
        """CRDs that `kubectl apply -f crds/` or another release made join this release."""
        for crd in CRDS:
            if not self.kubectl("get", "crd", crd, "--ignore-not-found", "-o", "name"):
                continue
            self.kubectl("annotate", "--overwrite", "crd", crd,
                         f"meta.helm.sh/release-name={self.name}",
                         f"meta.helm.sh/release-namespace={self.namespace}")
            self.kubectl("label", "--overwrite", "crd", crd, "app.kubernetes.io/managed-by=Helm")

    def install(self, values: dict[str, Any]) -> None:
        self.values.write_text(yaml.safe_dump(values))
        self.values.chmod(0o600)
        helm("install", self.name, str(CHART), "--namespace", self.namespace,
             "-f", str(self.values), "--wait", "--timeout", "3m", env=self.env)

    def uninstall(self) -> None:
        helm("uninstall", self.name, "--namespace", self.namespace, "--wait",
             "--timeout", "2m", env=self.env, check=False)

    def leftovers(self) -> list[str]:
        selector = f"app.kubernetes.io/instance={self.name}"
        found = self.kubectl("-n", self.namespace, "get", NAMESPACED, "-l", selector, "-o",
                             "name").split()
        found += self.kubectl("get", CLUSTER, "-l", selector, "-o", "name").split()
        return found

    def operator_log(self) -> str:
        """The operator pod's last lines: `kubectl logs`, or the test bed's log files."""
        pods = self.kubectl("-n", self.namespace, "get", "pods", "-l",
                            f"app.kubernetes.io/instance={self.name}", "-o", "name",
                            check=False).split()
        if os.environ.get("CONVEYOR_TEST_USE_KUBECONFIG") == "1":
            return "\n".join(self.kubectl("-n", self.namespace, "logs", p, "--tail", "80",
                                          check=False) for p in pods)
        logs = sorted((paths().root / "pods" / self.namespace).glob("*/operator.log"))
        return "\n".join("\n".join(f.read_text(errors="replace").splitlines()[-80:])
                         for f in logs)


@pytest.fixture
def release(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[Release]:
    made = Release(cluster, namespace, tmp_path)
    try:
        yield made
    finally:
        made.uninstall()


def example_pools(release: Release, namespace: str) -> list[dict[str, Any]]:
    """The worker Deployments of the example Workflow (there is at least one)."""
    pools: list[dict[str, Any]] = json.loads(release.kubectl(
        "-n", namespace, "get", "deployments", "-l", "conveyor.dev/workflow=order-fulfilment",
        "-o", "json"))["items"]
    assert pools
    return pools


def _run_the_example(release: Release) -> None:
    """Apply the example Workflow and its run; the run succeeds with the expected output."""
    kubectl = ["-n", release.namespace]
    release.kubectl(*kubectl, "apply", "-f", str(EXAMPLES / "order-fulfilment.yaml"),
                    "-f", str(EXAMPLES / "order-fulfilment-run.yaml"))

    def finished() -> str:
        return release.kubectl(*kubectl, "get", "cwr", "order-42", "-o",
                               "jsonpath={.status.phase}") in ("Succeeded", "Failed") and \
            "done"

    eventually(finished, 180, interval=0.5, what="the run to finish")
    run = json.loads(release.kubectl(*kubectl, "get", "cwr", "order-42", "-o", "json"))
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    assert run["status"]["outputs"]["reserved"] == 20


def test_the_example_runs_through_the_operator_pod_and_uninstall_cleans_up(
        release: Release, amqp_url: str, namespace: str) -> None:
    release.adopt_crds()
    # With the admission policy on: the operator does all it must under it too.
    release.install({**_operator_values(amqp_url, namespace),
                     "admissionPolicy": {"enabled": True}})

    deployment = json.loads(release.kubectl("-n", namespace, "get", "deployment",
                                            release.name + "-conveyor", "-o", "json"))
    assert deployment["status"].get("readyReplicas") == 1
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == release.name + "-conveyor"

    # The operator acts with its ServiceAccount's rights: exactly the chart's rules.
    account = f"system:serviceaccount:{namespace}:{release.name}-conveyor"
    def can(verb: str, resource: str, ns: str | None = namespace, *more: str) -> bool:
        where = ["-n", ns] if ns else []
        out = release.kubectl("auth", "can-i", verb, resource, "--as", account, *where,
                              *more, check=False)
        return out.strip() == "yes"
    # (`kind/x` names an object x to can-i, not a subresource: --subresource does.)
    assert can("patch", "deployments.apps")
    assert can("patch", "workflowruns.conveyor.dev", namespace, "--subresource=status")
    assert not can("patch", "workflowruns.conveyor.dev")  # kopf only watches runs
    assert not can("get", "secrets") and not can("patch", "secrets")
    assert not can("delete", "pods")
    assert not can("list", "workflowruns.conveyor.dev", "default")  # only its namespace

    try:
        kubectl = ["-n", namespace]
        _run_the_example(release)

        # Deleting the Workflow runs the operator's finalizer (pools deleted under its RBAC).
        release.kubectl(*kubectl, "delete", "cwr", "order-42", "--wait=true", "--timeout=60s")
        release.kubectl(*kubectl, "delete", "cwf", "order-fulfilment", "--wait=true",
                        "--timeout=120s")
        assert not release.kubectl(*kubectl, "get", "deployments", "-l",
                                   "conveyor.dev/workflow=order-fulfilment", "-o", "name")
    except AssertionError:
        print(f"--- operator log ---\n{release.operator_log()}")
        raise

    assert release.leftovers()  # the query finds the release's objects while it is installed
    # The install's own queues on the broker: there while it runs, deleted by its uninstall
    # (a removed install must not keep collecting events nobody will read).
    instance = f"{namespace}.{release.name}-conveyor"
    own_queues = [names.operator_queue(instance, purpose) for purpose in ("events", "triggers")]
    with Admin(BrokerSettings(amqp_url)) as admin:
        assert all(admin.inspect(queue) is not None for queue in own_queues)
        release.uninstall()
        eventually(lambda: not release.leftovers(), 90, interval=0.5,
                   what="every object of the release to be gone")
        eventually(lambda: all(admin.inspect(queue) is None for queue in own_queues), 60,
                   interval=0.5, what=f"the install's queues {own_queues} to be deleted")
    for crd in CRDS:  # kept: deleting them would delete every Workflow and WorkflowRun
        assert release.kubectl("get", "crd", crd, "-o", "name").strip()


def test_an_existing_secret_and_a_cluster_wide_operator(
        release: Release, amqp_url: str, namespace: str) -> None:
    """Watching every namespace: a ClusterRole; the URL from a Secret the user made."""
    release.kubectl("-n", namespace, "create", "secret", "generic", "broker",
                    f"--from-literal=uri={amqp_url}")
    values = _operator_values(amqp_url, namespace)
    values["operator"]["namespaces"] = []
    values["amqp"] = {"existingSecret": "broker", "existingSecretKey": "uri"}
    values["crds"] = {"enabled": False}
    values["rbac"] = {"create": True, "userRoles": False}
    release.install(values)
    account = f"system:serviceaccount:{namespace}:{release.name}-conveyor"
    out = release.kubectl("auth", "can-i", "list", "workflowruns.conveyor.dev", "--as", account,
                          "--all-namespaces", check=False)
    assert out.strip() == "yes"
    assert release.kubectl("-n", namespace, "get", "secret", "-l",
                           f"app.kubernetes.io/instance={release.name}", "-o", "name") == ""
    release.uninstall()
    eventually(lambda: not release.leftovers(), 90, interval=0.5,
               what="every object of the release to be gone")


def test_over_amqps_the_operator_mounts_the_ca_secret_and_the_example_runs(
        release: Release, broker_tls: Any, namespace: str) -> None:
    """amqp.tls.caSecret: the operator's pod mounts the CA read-only, verifies RabbitMQ with
    it and hands it to the workers through their Workflow's broker Secret."""
    release.kubectl("-n", namespace, "create", "secret", "generic", "broker-ca",
                    f"--from-file=ca.crt={broker_tls.ca_file}")
    values = _operator_values(broker_tls.url, namespace)
    values["amqp"]["tls"] = {"caSecret": "broker-ca"}
    release.adopt_crds()
    release.install(values)
    try:
        _run_the_example(release)
        # The operator found the CA at the path the chart gave it: the workers mount a copy.
        pools = example_pools(release, namespace)
        for pool in pools:
            [volume] = pool["spec"]["template"]["spec"]["volumes"]
            assert volume["secret"]["secretName"] == "conveyor-order-fulfilment-amqp"
    except AssertionError:
        print(f"--- operator log ---\n{release.operator_log()}")
        raise
    finally:
        release.kubectl("-n", namespace, "delete", "cwf", "--all", "--wait=true",
                        "--timeout=120s", check=False)

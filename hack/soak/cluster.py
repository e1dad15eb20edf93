"""The soak's view of the test bed: the API server as its admin, the broker's vhost, and the
health of every part. Reads made while faults run return None on an outage instead of
raising: the soak keeps polling until its deadline."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3

from conveyor import names
from testbed import controlplane, parts, procs, rabbitmq
from testbed.layout import REPO, Paths, Ports, paths, ports
from testbed.rest import ApiError, Rest

T = TypeVar("T")
GROUP_PATH = f"/apis/{names.API_VERSION}"
ALWAYS_ON = ("epmd", "kube-controller-manager", "kube-scheduler", "nodeagent")


class Cluster:
    """The test bed of this checkout (its state dir), with a namespace and vhost of its own."""

    def __init__(self) -> None:
        self.paths: Paths = paths()
        self.ports: Ports = ports()
        if not self.paths.admin_kubeconfig.exists():
            raise SystemExit("the test bed has not been started: run `make testbed-up`")
        pki = self.paths.pki
        self.rest = Rest(controlplane.server_url(self.ports), str(pki / "ca.crt"),
                         str(pki / "admin.crt"), str(pki / "admin.key"))
        tag = secrets.token_hex(3)
        self.namespace = f"soak-{tag}"
        self.vhost = f"soak-{tag}"
        self.amqp_url = ""

    # -- the parts ----------------------------------------------------------------------------

    def unhealthy(self) -> list[str]:
        """The parts that do not run or do not answer."""
        bad = [n for n in ALWAYS_ON if procs.running_pid(self.paths.pids, n) is None]
        for name in parts.DAEMONS:
            try:
                if not parts.serving(self.paths, self.ports, name):
                    bad.append(name)
            except Exception:
                bad.append(name)
        return bad

    def heal(self, timeout: float = 120) -> list[str]:
        """Start again every daemon that is down (a soak stopped halfway leaves some killed)
        and wait until all serve; return the ones restarted."""
        restarted = []
        for name in parts.DAEMONS:  # every part that unhealthy() checks
            if procs.running_pid(self.paths.pids, name) is None:
                parts.restart(self.paths, self.ports, name, wait=False)
                restarted.append(name)
        procs.wait_until(lambda: not self.unhealthy(), timeout, "every part of the test bed")
        return restarted

    # -- the namespace, the CRDs and the vhost -----------------------------------------------

    def prepare(self) -> None:
        kubectl = controlplane.environ_for_kubectl(self.paths, self._bin_dir())
        subprocess.run(["kubectl", "apply", "-f", str(REPO / "crds")], env=kubectl, check=True,
                       capture_output=True)
        subprocess.run(["kubectl", "wait", "--for=condition=Established", "--timeout=60s",
                        "-f", str(REPO / "crds")], env=kubectl, check=True,
                       capture_output=True)
        self.rest.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace, "labels": {"conveyor.dev/soak": "true"}}})
        self.amqp_url = rabbitmq.add_vhost(self.paths, self.ports, self.vhost)

    def kubectl_env(self) -> dict[str, str]:
        return controlplane.environ_for_kubectl(self.paths, self._bin_dir())

    def _bin_dir(self) -> Path:
        return Path((self.paths.root / "bin-dir").read_text().strip())

    def remove(self) -> None:
        """Delete the soak's objects, namespace and vhost. Run after the operator stopped, so
        its finalizers are taken off here: nothing is left Terminating."""
        for plural in (names.RUN_PLURAL, names.WORKFLOW_PLURAL):
            base = f"{GROUP_PATH}/namespaces/{self.namespace}/{plural}"
            for item in self.rest.get(base).get("items", []):
                self._delete(f"{base}/{item['metadata']['name']}", unfinalize=True)
        self._delete(f"/api/v1/namespaces/{self.namespace}")
        if self.amqp_url:
            rabbitmq.delete_vhost(self.paths, self.ports, self.vhost)

    def _delete(self, path: str, unfinalize: bool = False) -> None:
        try:
            if unfinalize:
                self.rest.merge_patch(path, {"metadata": {"finalizers": None}})
            self.rest.request("DELETE", path)
        except ApiError as error:
            if error.status != 404:
                raise

    # -- objects ------------------------------------------------------------------------------

    def create(self, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.rest.request(
            "POST", f"{GROUP_PATH}/namespaces/{self.namespace}/{plural}", manifest)

    def runs(self) -> list[dict[str, Any]] | None:
        """Every WorkflowRun of the soak, or None while the API server cannot say."""
        return self.tolerant(lambda: self.rest.request(
            "GET", f"{GROUP_PATH}/namespaces/{self.namespace}/{names.RUN_PLURAL}",
            timeout=20)["items"])

    def workflow_ready(self, name: str) -> bool:
        wf = self.tolerant(lambda: self.rest.get(
            f"{GROUP_PATH}/namespaces/{self.namespace}/{names.WORKFLOW_PLURAL}/{name}"))
        conditions = ((wf or {}).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def ready_replicas(self, deployment: str) -> int:
        found = self.tolerant(lambda: self.rest.get(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment}"))
        return int(((found or {}).get("status") or {}).get("readyReplicas") or 0)

    def container_restarts(self) -> int | None:
        pods = self.tolerant(lambda: self.rest.get(f"/api/v1/namespaces/{self.namespace}/pods"))
        if pods is None:
            return None
        return sum(int(s.get("restartCount") or 0) for pod in pods.get("items", [])
                   for s in (pod.get("status") or {}).get("containerStatuses") or [])

    def queue_depths(self) -> dict[str, tuple[int, int]] | None:
        """(ready, unacked) messages of each queue of the soak's vhost, or None."""
        try:
            out = rabbitmq.ctl(self.paths, self.ports, "list_queues", "-p", self.vhost,
                               "--formatter", "json", "name", "messages_ready",
                               "messages_unacknowledged")
        except (RuntimeError, subprocess.SubprocessError):
            return None
        return {q["name"]: (int(q["messages_ready"]), int(q["messages_unacknowledged"]))
                for q in json.loads(out)}

    @staticmethod
    def tolerant(call: Callable[[], T]) -> T | None:
        """`call()`, or None when the API server is away, overloaded, cannot reach etcd, or
        has no such object (yet); any other answer is the soak's own bug and raises."""
        try:
            return call()
        except ApiError as error:
            if error.status in (404, 429) or error.status >= 500:
                return None
            raise
        except (urllib3.exceptions.HTTPError, OSError):
            return None

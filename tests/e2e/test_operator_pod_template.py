"""A task type's podTemplate on the real API server and the test bed's node: the worker pods
run as the ServiceAccount it names, with its Secret volume mounted, its ConfigMap's keys in
their environment and its labels and annotations; a task reads the mounted file; an edit of
the podTemplate rolls the pool onto new pods."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow

pytestmark = pytest.mark.e2e

MOUNT = "/etc/e2e-pod-template"


def _pod_template(note: str) -> dict[str, Any]:
    return {
        "serviceAccountName": "e2e-workers",
        "volumes": [{"name": "config", "secret": {"secretName": "e2e-config",
                                                  "items": [{"key": "greeting",
                                                             "path": "greeting.txt"}]}}],
        "volumeMounts": [{"name": "config", "mountPath": MOUNT, "readOnly": True}],
        "envFrom": [{"configMapRef": {"name": "e2e-env"}, "prefix": "E2E_"}],
        "labels": {"team": "e2e"},
        "annotations": {"example.com/note": note},
    }


def _files_workflow(note: str) -> dict[str, Any]:
    return workflow("templated", [
        {"name": "read", "type": "files",
         "inputs": {"path": f"{MOUNT}/greeting.txt", "env": "E2E_COLOUR"}},
    ], outputs={"content": "${{ tasks.read.outputs.content }}",
                "env": "${{ tasks.read.outputs.env }}"},
        taskTypes=[work_type("files", scaling={"minReplicas": 1},
                             podTemplate=_pod_template(note))])


def _pods(kubectl) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    found = json.loads(kubectl("get", "pods", "-l", "conveyor.dev/task-type=files", "-o",
                               "json"))
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def _succeeded(kubectl, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    def phase() -> dict[str, Any] | None:
        status = json.loads(kubectl("get", "cwr", name, "-o", "json")).get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = eventually(phase, 120, interval=0.3, what=f"run {name} to finish")
    assert status["phase"] == "Succeeded", status
    return status


def test_worker_pods_take_the_pod_template_and_a_task_reads_the_mounted_secret(
        operator, kubectl) -> None:  # type: ignore[no-untyped-def]
    kubectl("create", "serviceaccount", "e2e-workers")
    kubectl("create", "secret", "generic", "e2e-config", "--from-literal=greeting=hello, pod")
    kubectl("create", "configmap", "e2e-env", "--from-literal=COLOUR=teal")
    kubectl("apply", "-f", "-", stdin=as_json(_files_workflow("first"), run("r1", "templated")))
    status = _succeeded(kubectl, "r1")
    assert status["outputs"] == {"content": "hello, pod", "env": "teal"}

    # The pod as the API server holds it: what the podTemplate says, beside the operator's.
    [pod] = eventually(lambda: _pods(kubectl), 30, what="the pool's pod")
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "e2e-workers"
    assert {"name": "config", "secret": {"secretName": "e2e-config", "defaultMode": 420,
            "items": [{"key": "greeting", "path": "greeting.txt"}]}} in spec["volumes"]
    [container] = spec["containers"]
    assert {"name": "config", "mountPath": MOUNT, "readOnly": True} in container["volumeMounts"]
    assert container["envFrom"] == [{"configMapRef": {"name": "e2e-env"}, "prefix": "E2E_"}]
    assert container["securityContext"]["runAsNonRoot"] is True  # the operator's default
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels["team"] == "e2e" and labels["conveyor.dev/task-type"] == "files"
    assert annotations["example.com/note"] == "first"

    # An edit of the podTemplate alone rolls the pool: a new pod carries the new annotation.
    old = pod["metadata"]["name"]
    kubectl("apply", "-f", "-", stdin=as_json(_files_workflow("second")))
    rolled = eventually(
        lambda: [p for p in _pods(kubectl) if p["metadata"]["name"] != old
                 and p["metadata"]["annotations"].get("example.com/note") == "second"],
        90, interval=0.5, what="a pod of the edited podTemplate")
    assert rolled[0]["spec"]["serviceAccountName"] == "e2e-workers"
    kubectl("apply", "-f", "-", stdin=as_json(run("r2", "templated")))
    assert _succeeded(kubectl, "r2")["outputs"] == {"content": "hello, pod", "env": "teal"}

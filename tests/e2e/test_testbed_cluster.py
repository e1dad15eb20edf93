"""The test bed's control plane is real: CRDs, the status subresource, watches, RBAC for pods,
Deployments that run local processes, and garbage collection by the controller-manager."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from support.kube import container_state, local_testbed_only, pod_manifest, python_container
from support.waiting import eventually

pytestmark = pytest.mark.e2e

GROUP = "testbed.conveyor.dev"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                },
            }},
        }],
    },
}


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True"
               for c in (crd.status.conditions or []))


def test_a_crd_serves_objects_whose_status_patch_a_watch_sees(api_client, namespace):
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(WIDGET_CRD)
    except ApiException as error:
        if error.status != 409:
            raise
    eventually(lambda: _established(ext, WIDGET_CRD["metadata"]["name"]), 30,
               what="the Widget CRD to be established")
    objects = client.CustomObjectsApi(api_client)
    created = objects.create_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets",
        {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"},
         "spec": {"size": 3}},
    )
    listed = objects.list_namespaced_custom_object(GROUP, "v1", namespace, "widgets")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]

    # A status written through the main resource is ignored: the subresource owns it.
    objects.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w1",
                                           {"status": {"phase": "Ignored"}})
    assert "status" not in objects.get_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "w1")
    objects.patch_namespaced_custom_object_status(GROUP, "v1", namespace, "widgets", "w1",
                                                  {"status": {"phase": "Ready"}})

    seen = []
    stream = watch.Watch().stream(
        objects.list_namespaced_custom_object, GROUP, "v1", namespace, "widgets",
        resource_version=created["metadata"]["resourceVersion"], timeout_seconds=20,
    )
    for event in stream:
        seen.append((event["type"], (event["object"].get("status") or {}).get("phase")))
        if seen[-1] == ("MODIFIED", "Ready"):
            break
    assert seen[-1] == ("MODIFIED", "Ready"), seen


def test_owned_objects_are_garbage_collected_with_their_owner(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(namespace, {"metadata": {
        "name": "owned",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                             "uid": owner.metadata.uid}],
    }})
    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    eventually(owned_gone, 60, what="the owned ConfigMap to be garbage-collected")


DEPLOYMENT_SCRIPT = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    out = pathlib.Path(os.environ["OUT_DIR"])
    me = os.environ["HOSTNAME"]
    def on_term(signum, frame):
        (out / f"{me}.term").write_text("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    (out / f"{me}.started").write_text(str(os.getpid()))
    while True:
        signal.pause()
""")


@local_testbed_only
def test_a_deployment_runs_local_processes_and_scaling_to_zero_terminates_them(
    api_client, namespace, tmp_path: Path
):
    apps = client.AppsV1Api(api_client)
    labels = {"app": "sleeper"}
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [python_container(
                    "main", DEPLOYMENT_SCRIPT, env=[{"name": "OUT_DIR", "value": str(tmp_path)}]
                )]},
            },
        },
    })
    started = eventually(lambda: sorted(tmp_path.glob("*.started")) if len(
        list(tmp_path.glob("*.started"))) == 2 else None, 90, what="two replicas to start")
    pids = [int(p.read_text()) for p in started]
    assert all(Path(f"/proc/{pid}").exists() for pid in pids)
    core = client.CoreV1Api(api_client)
    eventually(lambda: all(p.status.phase == "Running" and container_state(p).ready
                           for p in core.list_namespaced_pod(namespace).items), 30,
               what="both pods to report Running and ready")

    apps.patch_namespaced_deployment_scale("sleeper", namespace, {"spec": {"replicas": 0}})
    eventually(lambda: len(list(tmp_path.glob("*.term"))) == 2, 60,
               what="both processes to receive SIGTERM")
    eventually(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), 30,
               what="both processes to exit")
    eventually(lambda: not core.list_namespaced_pod(namespace).items, 30,
               what="both pods to be removed")
    names = {p.name.removesuffix(".started") for p in started}
    assert names == {p.name.removesuffix(".term") for p in tmp_path.glob("*.term")}


RBAC_SCRIPT = textwrap.dedent("""
    import os, sys
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    config.load_kube_config()
    try:
        client.CoreV1Api().list_namespaced_config_map(os.environ["NS"])
    except ApiException as error:
        print("denied", error.status)
        sys.exit(43 if error.status == 403 else 1)
    print("allowed")
""")


@local_testbed_only
def test_a_pod_acts_with_its_service_account_under_rbac(api_client, namespace):
    core = client.CoreV1Api(api_client)
    rbac = client.RbacAuthorizationV1Api(api_client)
    for sa in ("reader", "nobody"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": sa}})
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "read-configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    })
    for sa in ("reader", "nobody"):
        core.create_namespaced_pod(namespace, pod_manifest(
            sa, [python_container("main", RBAC_SCRIPT,
                                  env=[{"name": "NS", "value": namespace}])],
            serviceAccountName=sa, restartPolicy="Never",
        ))

    def finished(name: str):  # type: ignore[no-untyped-def]
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    reader = eventually(lambda: finished("reader"), 60, what="the reader pod to finish")
    nobody = eventually(lambda: finished("nobody"), 60, what="the nobody pod to finish")
    assert reader.status.phase == "Succeeded"
    assert container_state(reader).state.terminated.exit_code == 0
    assert nobody.status.phase == "Failed"
    assert container_state(nobody).state.terminated.exit_code == 43, "expected a 403"

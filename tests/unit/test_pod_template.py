"""A task type's podTemplate: the model takes Kubernetes' shapes, admission (`conveyor lint`'s
offline copy of the API server's, with the operator's compile) refuses what it must naming the
field, and the worker Deployment carries the overlay beside what the operator sets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from conveyor import children, models, names
from conveyor.children import Owner, grace_seconds, worker_deployment
from conveyor.cli.admission import object_problems
from conveyor.errors import InvalidSpecError
from conveyor.models import PodTemplate, WorkflowSpec
from conveyor.operator import pools
from conveyor.workflow import compile_workflow
from support.pod_templates import FULL, REJECTED, workflow_spec

OWNER = Owner("shop", "orders", "uid-1")


def _workflow(pod_template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": names.API_VERSION, "kind": names.WORKFLOW_KIND,
            "metadata": {"name": "orders"}, "spec": workflow_spec(pod_template)}


def _deployment(pod_template: dict[str, Any] | None, **options: Any) -> dict[str, Any]:
    spec = WorkflowSpec.model_validate(workflow_spec(pod_template) if pod_template is not None
                                       else {**workflow_spec({}), "taskTypes": [
                                           {"name": "work", "image": "shop:1"}]})
    return worker_deployment(OWNER, spec, spec.task_types[0], 1, **options)


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


# --- the model ---------------------------------------------------------------------------


def test_a_pod_template_of_every_field_is_admitted_and_reads_back_as_written() -> None:
    assert object_problems(_workflow(FULL)) == []
    model = PodTemplate.model_validate(FULL, strict=True)
    assert model.model_dump(by_alias=True, exclude_none=True) == FULL


@pytest.mark.parametrize(("case", "pod_template", "message"), REJECTED,
                         ids=[c[0] for c in REJECTED])
def test_admission_refuses_a_broken_pod_template_naming_the_field(
        case: str, pod_template: dict[str, Any], message: str) -> None:
    messages = [m for _, m, stage in object_problems(_workflow(pod_template))
                if stage == "admission"]
    assert messages, f"{case} was admitted"
    assert any(m.startswith(message) for m in messages), messages


# --- the operator's compile: what admission's CEL does not check -------------------------


@pytest.mark.parametrize(("pod_template", "place", "words"), [
    ({"labels": {"Not a key": "x"}}, 'labels["Not a key"]', "the name of a key"),
    ({"labels": {"team": "-bad-"}}, "labels.team", "a label value must be"),
    ({"labels": {"UPPER.example/a": "x"}}, 'labels["UPPER.example/a"]',
     "prefix of a key must be a DNS subdomain"),
    ({"labels": {"team": "x" * 64}}, "labels.team", "at most 63"),
    ({"annotations": {"/no-prefix": "x"}}, "annotations./no-prefix", "prefix of a key"),
    ({"annotations": {"big": "x" * 300_000}}, "annotations", "the API server takes at most"),
    ({"nodeSelector": {"pool": "a b"}}, "nodeSelector.pool", "a label value must be"),
    ({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "a b"}}}]}}},
     "affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
     ".matchLabels.app", "a label value must be"),
    ({"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "c"}}],
      "volumeMounts": [{"name": "a", "mountPath": "/data", "subPath": "../etc"}]},
     "volumeMounts[0].subPath", "must not contain a '..' element"),
    ({"volumes": [{"name": "a", "secret": {"secretName": "s", "items": [
        {"key": "k", "path": "/etc/passwd"}]}}]},
     "volumes[0].secret.items[0].path", "must be a relative path"),
    ({"volumes": [{"name": "a", "projected": {"sources": [
        {"serviceAccountToken": {"path": "../token"}}]}}]},
     "volumes[0].projected.sources[0].serviceAccountToken.path", "'..'"),
])
def test_the_compile_names_what_the_deployment_would_be_refused_for(
        pod_template: dict[str, Any], place: str, words: str) -> None:
    spec = WorkflowSpec.model_validate(workflow_spec(pod_template))
    with pytest.raises(InvalidSpecError) as raised:
        compile_workflow(spec)
    found = [str(p) for p in raised.value.problems]
    assert any(p.startswith(f"spec.taskTypes[0].podTemplate.{place}: ") and words in p
               for p in found), found
    # `conveyor lint` says the same, as the operator's word.
    assert any(stage == "operator" and words in message
               for _, message, stage in object_problems(_workflow(pod_template)))


def test_the_compile_repeats_the_reference_and_reserved_name_rules() -> None:
    # Admission refuses these already; the operator does not rely on it (an older CRD).
    spec = WorkflowSpec.model_validate(workflow_spec({
        "volumes": [{"name": "conveyor-x", "emptyDir": {}}, {"name": "conveyor-x",
                                                             "emptyDir": {}}],
        "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
        "labels": {names.LABEL_WORKFLOW: "other"},
        "annotations": {"controller.kubernetes.io/pod-deletion-cost": "9"}}))
    with pytest.raises(InvalidSpecError) as raised:
        compile_workflow(spec)
    places = sorted({p.path for p in raised.value.problems})
    at = "spec.taskTypes[0].podTemplate"
    assert places == sorted({f'{at}.annotations["controller.kubernetes.io/pod-deletion-cost"]',
                             f'{at}.labels["conveyor.dev/workflow"]', f"{at}.volumeMounts[0].name",
                             f"{at}.volumes[0].name", f"{at}.volumes[1].name"})


def test_the_full_template_compiles() -> None:
    compile_workflow(WorkflowSpec.model_validate(workflow_spec(FULL)))


# --- the worker Deployment -----------------------------------------------------------------


def test_without_a_pod_template_the_deployment_is_the_operators_alone() -> None:
    deployment = _deployment(None)
    template = deployment["spec"]["template"]
    assert set(template["metadata"]) == {"labels"}
    assert set(template["spec"]) == {"terminationGracePeriodSeconds", "enableServiceLinks",
                                     "automountServiceAccountToken", "containers"}
    assert _deployment({}) == deployment, "an empty podTemplate changes nothing"


def test_the_overlay_adds_to_the_pod_the_operator_builds() -> None:
    deployment = _deployment(FULL, amqp_ca=True)
    metadata = deployment["spec"]["template"]["metadata"]
    pod = _pod(deployment)
    [container] = pod["containers"]
    # The operator's CA volume and mount first, the template's after them.
    assert [v["name"] for v in pod["volumes"]] == ["conveyor-amqp-ca", *(
        v["name"] for v in FULL["volumes"])]
    assert pod["volumes"][1:] == FULL["volumes"]
    assert container["volumeMounts"][0]["mountPath"] == "/etc/conveyor/amqp"
    assert container["volumeMounts"][1:] == FULL["volumeMounts"]
    assert container["envFrom"] == FULL["envFrom"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert any(e["name"] == "CONVEYOR_QUEUE" for e in container["env"])
    for field in ("serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations",
                  "affinity", "priorityClassName", "securityContext",
                  "automountServiceAccountToken", "terminationGracePeriodSeconds"):
        assert pod[field] == FULL[field], field
    assert pod["enableServiceLinks"] is False
    # Pod labels: the template's and the operator's; the selector still matches.
    labels = metadata["labels"]
    assert {"team": "shop", "example.com/tier": "backend"}.items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/name"] == "conveyor-worker"
    assert metadata["annotations"] == FULL["annotations"]
    # The Deployment's own labels are not the pods'.
    assert "team" not in deployment["metadata"]["labels"]


def test_the_grace_period_of_the_template_replaces_the_computed_one_and_the_drain_follows() -> None:
    spec = WorkflowSpec.model_validate({**workflow_spec({"terminationGracePeriodSeconds": 20}),
                                        "tasks": [{"name": "a", "type": "work",
                                                   "timeoutSeconds": 600}]})
    assert grace_seconds(spec, "work") == 20
    pod = _pod(worker_deployment(OWNER, spec, spec.task_types[0], 1))
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert pod["terminationGracePeriodSeconds"] == 20 and env["CONVEYOR_GRACE_SECONDS"] == "15"
    without = spec.model_copy(deep=True)
    without.task_types[0].pod_template = None
    assert grace_seconds(without, "work") == 610


def _security(pod_template: dict[str, Any]) -> dict[str, Any]:
    return _pod(_deployment(pod_template))["containers"][0]["securityContext"]  # type: ignore[no-any-return]


DEFAULTS = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.mark.parametrize(("pod_template", "expected"), [
    ({}, DEFAULTS),
    ({"containerSecurityContext": {"runAsNonRoot": False}}, {**DEFAULTS, "runAsNonRoot": False}),
    ({"containerSecurityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000}},
     {**DEFAULTS, "readOnlyRootFilesystem": True, "runAsUser": 1000}),
    # add keeps the default drop; a drop given replaces it.
    ({"containerSecurityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}},
     {**DEFAULTS, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
    ({"containerSecurityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
     {**DEFAULTS, "capabilities": {"drop": ["NET_RAW"]}}),
    ({"containerSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
     {**DEFAULTS, "seccompProfile": {"type": "Unconfined"}}),
    # Set on the pod, a default the container's would override is left to the pod's.
    ({"securityContext": {"runAsNonRoot": False}},
     {k: v for k, v in DEFAULTS.items() if k != "runAsNonRoot"}),
    ({"securityContext": {"seccompProfile": {"type": "Localhost",
                                             "localhostProfile": "w.json"}}},
     {k: v for k, v in DEFAULTS.items() if k != "seccompProfile"}),
    ({"securityContext": {"runAsNonRoot": False},
      "containerSecurityContext": {"runAsNonRoot": True}}, DEFAULTS),
])
def test_the_containers_security_is_the_defaults_with_what_the_template_sets(
        pod_template: dict[str, Any], expected: dict[str, Any]) -> None:
    assert _security(pod_template) == expected


def test_the_defaults_are_not_shared_between_deployments() -> None:
    first = _security({"containerSecurityContext": {"capabilities": {"add": ["CHOWN"]}}})
    first["capabilities"]["drop"].append("X")
    assert _security({}) == DEFAULTS


def test_a_change_of_the_pod_template_changes_the_pods_template() -> None:
    # The Deployment controller rolls the pool when its pod template changes: every field of
    # the podTemplate must reach it (the operator applies the whole manifest each reconcile).
    base = _deployment(FULL)["spec"]["template"]
    for field in FULL:
        changed = copy.deepcopy(FULL)
        del changed[field]
        assert _deployment(changed)["spec"]["template"] != base, field


def test_what_admission_reserves_is_what_the_operator_uses() -> None:
    # The operator's pod labels, CA volumes and mount folders, and the busy pods' annotation
    # (pools.py keeps its own spelling: the pure core may not import the operator).
    deployment = _deployment({}, amqp_ca=True)
    for key in deployment["spec"]["template"]["metadata"]["labels"]:
        assert key.startswith(f"{names.GROUP}/") or key in models.RESERVED_LABELS, key
    for volume in (children.AMQP_CA_VOLUME, children.STORE_CA_VOLUME):
        assert volume.startswith(models.RESERVED_VOLUME_PREFIX)
    for folder in (children.AMQP_CA_DIR, children.STORE_CA_DIR):
        assert folder.startswith(models.RESERVED_MOUNT_DIR + "/")
    assert pools.DELETION_COST == models.DELETION_COST

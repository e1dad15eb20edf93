"""Manifests the operator applies for a Workflow: pure builders, checked field by field."""

from __future__ import annotations

from conveyor.children import (
    Owner,
    amqp_secret,
    child_name,
    deployment_name,
    grace_seconds,
    worker_deployment,
)
from conveyor.models import EnvVar, WorkflowSpec

SPEC = WorkflowSpec.model_validate({
    "taskTypes": [
        {"name": "inventory", "image": "shop:1", "command": ["conveyor-worker"],
         "args": ["--module", "shop.tasks"], "concurrency": 4,
         "env": [{"name": "CONVEYOR_QUEUE", "value": "hijack"}, {"name": "MODE", "value": "x"}],
         "resources": {"limits": {"cpu": "500m"}}},
        {"name": "payments", "image": "shop:1"},
    ],
    "tasks": [
        {"name": "reserve", "type": "inventory", "timeoutSeconds": 30},
        {"name": "charge", "type": "payments"},
    ],
    "finally": [{"name": "release", "type": "inventory", "timeoutSeconds": 120}],
})
OWNER = Owner("shop", "orders", "uid-1")


def _env(container: dict) -> dict:  # type: ignore[type-arg]
    result = {}
    for var in container["env"]:
        result[var["name"]] = var.get("value", var.get("valueFrom"))
    return result


def test_a_worker_deployment_consumes_its_task_types_queue_with_the_spec_settings():
    deployment = worker_deployment(OWNER, SPEC, SPEC.task_types[0], replicas=0)
    assert deployment["metadata"]["name"] == "orders-inventory"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert deployment["spec"]["replicas"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["conveyor-worker"]
    assert container["args"] == ["--module", "shop.tasks"]
    assert container["resources"] == {"limits": {"cpu": "500m"}}
    env = _env(container)
    # The last duplicate wins in Kubernetes: the operator's queue, not the user's.
    assert [v["value"] for v in container["env"] if v["name"] == "CONVEYOR_QUEUE"][-1] == \
        "conveyor.shop.orders.inventory"
    assert env["CONVEYOR_TASK_TYPE"] == "inventory"
    assert env["CONVEYOR_CONCURRENCY"] == "4"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace == 130 and env["CONVEYOR_GRACE_SECONDS"] == str(grace - 5)
    assert env["MODE"] == "x"
    assert env["CONVEYOR_AMQP_URL"] == {"secretKeyRef": {"name": "conveyor-orders-amqp",
                                                         "key": "url"}}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False


def test_a_task_type_without_command_keeps_the_images_entrypoint():
    container = worker_deployment(OWNER, SPEC, SPEC.task_types[1], 1)["spec"]["template"][
        "spec"]["containers"][0]
    assert "command" not in container and "args" not in container


def test_grace_covers_the_longest_timeout_of_the_type_including_finally_tasks():
    assert grace_seconds(SPEC, "inventory") == 130
    assert grace_seconds(SPEC, "payments") == 60


def test_long_names_are_shortened_stably_and_stay_valid_labels():
    long = "a" * 40
    name = deployment_name(long, "b" * 30)
    assert len(name) <= 52 and name == deployment_name(long, "b" * 30)
    assert name != deployment_name(long, "c" * 30)
    assert child_name("short", "x") == "short-x"


def test_the_amqp_secret_is_owned_by_the_workflow():
    secret = amqp_secret(OWNER, "amqp://u:p@h/v")
    assert secret["stringData"] == {"url": "amqp://u:p@h/v"}
    assert secret["metadata"]["ownerReferences"][0]["name"] == "orders"


CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_with_a_ca_the_secret_carries_it_beside_the_url():
    secret = amqp_secret(OWNER, "amqps://u:p@h/v", CA)
    assert secret["stringData"] == {"url": "amqps://u:p@h/v", "ca.crt": CA}


def test_with_a_ca_workers_mount_only_it_read_only_from_their_workflows_secret():
    deployment = worker_deployment(OWNER, SPEC, SPEC.task_types[0], replicas=0, amqp_ca=True)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["volumes"] == [{"name": "conveyor-amqp-ca", "secret": {
        "secretName": "conveyor-orders-amqp", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
    assert container["volumeMounts"] == [{"name": "conveyor-amqp-ca",
                                          "mountPath": "/etc/conveyor/amqp", "readOnly": True}]
    env = _env(container)
    assert env["CONVEYOR_AMQP_CA_FILE"] == "/etc/conveyor/amqp/ca.crt"
    assert env["CONVEYOR_AMQP_URL"] == {"secretKeyRef": {"name": "conveyor-orders-amqp",
                                                         "key": "url"}}


def test_the_operators_ca_path_wins_over_a_task_types_env():
    spec = SPEC.model_copy(deep=True)
    spec.task_types[1].env = [EnvVar(name="CONVEYOR_AMQP_CA_FILE", value="/elsewhere.pem")]
    deployment = worker_deployment(OWNER, spec, spec.task_types[1], replicas=0, amqp_ca=True)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert _env(container)["CONVEYOR_AMQP_CA_FILE"] == "/etc/conveyor/amqp/ca.crt"


def test_without_a_ca_there_is_no_volume_and_no_ca_variable():
    deployment = worker_deployment(OWNER, SPEC, SPEC.task_types[0], replicas=0)
    pod = deployment["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert "CONVEYOR_AMQP_CA_FILE" not in _env(pod["containers"][0])
    assert amqp_secret(OWNER, "amqps://u:p@h/v")["stringData"] == {"url": "amqps://u:p@h/v"}

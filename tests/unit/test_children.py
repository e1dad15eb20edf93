"""Manifests the operator applies for a Workflow: pure builders, checked field by field."""

from __future__ import annotations

from conveyor import children
from conveyor.children import (
    Owner,
    StoreKeys,
    WorkerStore,
    amqp_secret,
    child_name,
    deployment_name,
    grace_seconds,
    worker_deployment,
)
from conveyor.models import EnvVar, WorkflowSpec
from conveyor.store import settings as store_settings
from conveyor.store.loading import MAX_OBJECT_ENV

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


# -- the object store -------------------------------------------------------------------------
KEYS = StoreKeys("workers", "s3cret-key")
STORE = WorkerStore(bucket="runs", region="eu-west-1", endpoint="https://s3.example",
                    prefix="conveyor/", max_object_bytes=1048576)


def test_the_store_keys_travel_in_the_workflows_secret_under_their_variables_names():
    secret = amqp_secret(OWNER, "amqp://u:p@h/v", store_keys=KEYS)
    assert secret["stringData"] == {"url": "amqp://u:p@h/v", "CONVEYOR_S3_ACCESS_KEY": "workers",
                                    "CONVEYOR_S3_SECRET_KEY": "s3cret-key"}
    assert "s3cret-key" not in repr(KEYS)


def test_workers_get_the_stores_place_as_values_and_its_keys_only_by_reference():
    deployment = worker_deployment(OWNER, SPEC, SPEC.task_types[0], replicas=0, store=STORE)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["CONVEYOR_S3_ENDPOINT"] == "https://s3.example"
    assert env["CONVEYOR_S3_BUCKET"] == "runs"
    assert env["CONVEYOR_S3_REGION"] == "eu-west-1"
    assert env["CONVEYOR_S3_PREFIX"] == "conveyor/"
    assert env["CONVEYOR_S3_MAX_OBJECT_BYTES"] == "1048576"
    for key in ("CONVEYOR_S3_ACCESS_KEY", "CONVEYOR_S3_SECRET_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "conveyor-orders-amqp", "key": key}}
    assert "CONVEYOR_S3_CA_FILE" not in env
    assert "volumes" not in deployment["spec"]["template"]["spec"]
    # No value of any variable is a key: a plain value never carries a secret.
    assert not [v for v in container["env"] if v.get("value") in ("workers", "s3cret-key")]


def test_an_aws_store_without_endpoint_or_prefix_sets_neither():
    store = WorkerStore(bucket="runs", region="us-east-1")
    [container] = worker_deployment(OWNER, SPEC, SPEC.task_types[0], 0, store=store)[
        "spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert "CONVEYOR_S3_ENDPOINT" not in env and "CONVEYOR_S3_PREFIX" not in env
    assert "CONVEYOR_S3_MAX_OBJECT_BYTES" not in env
    assert env["CONVEYOR_S3_BUCKET"] == "runs"


def test_the_operators_store_wins_over_a_task_types_env():
    spec = SPEC.model_copy(deep=True)
    spec.task_types[1].env = [EnvVar(name="CONVEYOR_S3_BUCKET", value="elsewhere"),
                              EnvVar(name="CONVEYOR_S3_SECRET_KEY", value="mine")]
    [container] = worker_deployment(OWNER, spec, spec.task_types[1], 0, store=STORE)[
        "spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["CONVEYOR_S3_BUCKET"] == "runs"
    assert env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {
        "name": "conveyor-orders-amqp", "key": "CONVEYOR_S3_SECRET_KEY"}}


def test_a_store_ca_travels_in_the_secret_and_is_mounted_beside_the_brokers():
    secret = amqp_secret(OWNER, "amqps://u:p@h/v", CA, store_keys=KEYS, store_ca="S3 CA")
    assert secret["stringData"]["s3-ca.crt"] == "S3 CA"
    assert secret["stringData"]["ca.crt"] == CA
    store = WorkerStore(bucket="runs", region="us-east-1", endpoint="https://s3", ca=True)
    pod = worker_deployment(OWNER, SPEC, SPEC.task_types[0], 0, amqp_ca=True, store=store)[
        "spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["volumes"] == [
        {"name": "conveyor-amqp-ca", "secret": {"secretName": "conveyor-orders-amqp",
                                                "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"name": "conveyor-s3-ca", "secret": {"secretName": "conveyor-orders-amqp", "items": [
            {"key": "s3-ca.crt", "path": "s3-ca.crt"}]}}]
    assert container["volumeMounts"] == [
        {"name": "conveyor-amqp-ca", "mountPath": "/etc/conveyor/amqp", "readOnly": True},
        {"name": "conveyor-s3-ca", "mountPath": "/etc/conveyor/s3", "readOnly": True}]
    assert _env(container)["CONVEYOR_S3_CA_FILE"] == "/etc/conveyor/s3/s3-ca.crt"
    only_store = worker_deployment(OWNER, SPEC, SPEC.task_types[0], 0, store=store)[
        "spec"]["template"]["spec"]
    assert [v["name"] for v in only_store["volumes"]] == ["conveyor-s3-ca"]


def test_the_variable_names_are_the_ones_the_store_adapter_reads():
    assert (children.STORE_ENDPOINT_ENV, children.STORE_BUCKET_ENV, children.STORE_REGION_ENV,
            children.STORE_PREFIX_ENV, children.STORE_CA_FILE_ENV, children.STORE_ACCESS_KEY,
            children.STORE_SECRET_KEY) == (
        store_settings.ENDPOINT_ENV, store_settings.BUCKET_ENV, store_settings.REGION_ENV,
        store_settings.PREFIX_ENV, store_settings.CA_FILE_ENV, store_settings.ACCESS_KEY_ENV,
        store_settings.SECRET_KEY_ENV)
    assert children.STORE_MAX_OBJECT_ENV == MAX_OBJECT_ENV

"""Worker pods get the object store from the operator: its place in their environment, a key
pair through their Workflow's Secret (the worker Secret's, or the operator's own with a
warning), and a Workflow that is not Ready while the worker Secret is missing. A task of the
e2e workers (`probe`) writes an object with what its pod was given: the round trip."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.children import amqp_secret_name
from conveyor.store import ObjectStore, StoreSettings
from support.operator import OperatorProcess, operator_process
from support.store import store_env
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow

pytestmark = pytest.mark.e2e

WORKER_SECRET = "workers-s3"


@pytest.fixture
def start_operator(cluster, amqp_url: str, namespace: str, crds: None,  # type: ignore[no-untyped-def]
                   tmp_path: Path, store_settings: StoreSettings,
                   ) -> Iterator[Any]:
    started: list[OperatorProcess] = []

    def start(**extra: str) -> OperatorProcess:
        process = operator_process(cluster, amqp_url, namespace, tmp_path / "operator.log",
                                   **store_env(store_settings), **extra)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGTERM)


def _get(kubectl, kind: str, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", kind, name, "-o", "json"))  # type: ignore[no-any-return]


def _ready(kubectl, name: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    conditions = (_get(kubectl, "cwf", name).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == "Ready"), None)


def _probe_workflow() -> str:
    return as_json(workflow("stored", [{"name": "p", "type": "probe"}],
                            taskTypes=[work_type("probe")]))


def _run_probe(kubectl) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    kubectl("apply", "-f", "-", stdin=as_json(run("r1", "stored")))
    status = eventually(
        lambda: (s := _get(kubectl, "cwr", "r1").get("status") or {}).get("phase") in (
            "Succeeded", "Failed") and s, 120, interval=0.2, what="the probe run to end")
    assert status["phase"] == "Succeeded", status
    outputs: dict[str, Any] = status["tasks"][0]["outputs"]
    return outputs


def test_workers_get_the_worker_secrets_keys_once_it_exists_and_write_to_the_store(
        start_operator, kubectl, namespace: str, store_settings: StoreSettings):
    process = start_operator(CONVEYOR_S3_WORKER_SECRET=WORKER_SECRET)
    kubectl("apply", "-f", "-", stdin=_probe_workflow())
    ready = eventually(lambda: (c := _ready(kubectl, "stored")) and c["status"] == "False"
                       and c, 60, what="Ready=False for the missing worker Secret")
    assert ready["reason"] == "StoreCredentialsMissing"
    assert f"{namespace}/{WORKER_SECRET} (CONVEYOR_S3_WORKER_SECRET) is not found" in \
        ready["message"]
    assert not kubectl("get", "deploy", "-o", "name").strip(), "no pool without the keys"

    # The admin's Secret for workers (on the test bed one key pair is all the store takes).
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": WORKER_SECRET},
        "stringData": {"accessKey": store_settings.access_key,
                       "secretKey": store_settings.secret_key}}))
    # An edit reconciles at once (the drift timer would, within a minute).
    kubectl("patch", "cwf", "stored", "--type=merge",
            "-p", '{"spec": {"ttlSecondsAfterFinished": 3600}}')
    eventually(lambda: (c := _ready(kubectl, "stored")) and c["status"] == "True", 60,
               what="Ready=True once the worker Secret exists")

    data = _get(kubectl, "secret", amqp_secret_name("stored"))["data"]
    assert base64.b64decode(data["CONVEYOR_S3_SECRET_KEY"]).decode() == store_settings.secret_key
    deployment = _get(kubectl, "deploy", "stored-probe")
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in
           deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONVEYOR_S3_BUCKET"] == store_settings.bucket
    assert env["CONVEYOR_S3_SECRET_KEY"] == {"secretKeyRef": {
        "name": amqp_secret_name("stored"), "key": "CONVEYOR_S3_SECRET_KEY"}}
    assert store_settings.secret_key not in json.dumps(deployment)

    outputs = _run_probe(kubectl)
    assert outputs["bucket"] == store_settings.bucket
    with ObjectStore(store_settings) as store:
        assert store.read(outputs["bucket"], outputs["key"], 100) == b'{"probe": true}'
    log = process.tail(400)
    assert "share the operator's object store credentials" not in log
    assert store_settings.secret_key not in log


def test_without_a_worker_secret_workers_get_the_operators_keys_with_a_warning(
        start_operator, kubectl, store_settings: StoreSettings):
    process = start_operator()
    kubectl("apply", "-f", "-", stdin=_probe_workflow())
    outputs = _run_probe(kubectl)
    assert outputs["accessKey"] == store_settings.access_key
    log = process.tail(400)
    assert log.count("Workers share the operator's object store credentials") == 1
    assert "CONVEYOR_S3_WORKER_SECRET" in log
    assert store_settings.secret_key not in log

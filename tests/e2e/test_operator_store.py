"""Data at scale through the object store (issue 11), on the test bed with its S3 server: a
forEach over 100,000 stored items summed by a fan-in while the WorkflowRun stays small, 50 MB
from one task to the next, retry that reuses stored outputs without copying them and
deletion that takes them, a store that is down, an object deleted under a reference."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.store import ObjectStore, StoreSettings
from conveyor.store.values import run_prefix
from support.kube import local_testbed_only
from support.operator import OperatorProcess, running_operator
from support.store import store_down, store_env
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow
from testbed import objectstore
from testbed.layout import paths, ports
from testbed.sizes import LargestObject

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024  # what the WorkflowRun object must stay under, the whole time


@pytest.fixture
def store_operator(cluster, amqp_url: str, namespace: str, crds: None,  # type: ignore[no-untyped-def]
                   tmp_path: Path, store_settings: StoreSettings,
                   request: pytest.FixtureRequest) -> Iterator[OperatorProcess]:
    """`conveyor-operator` for the test's namespace with the session's bucket as its store."""
    yield from running_operator(cluster, amqp_url, namespace, tmp_path, request,
                                **store_env(store_settings))


@pytest.fixture
def objects(store_settings: StoreSettings) -> Iterator[ObjectStore]:
    with ObjectStore(store_settings) as store:
        yield store


def data_type(**extra: Any) -> dict[str, Any]:
    return work_type("data", **extra)


def fan_out_and_in(items: int, total: str) -> list[dict[str, Any]]:
    """`gen` makes `items` items (stored by its worker), `work` answers each (about 100
    bytes), and `total` (`sum`, or `fail` on purpose) reads every answer."""
    return [
        {"name": "gen", "type": "data", "inputs": {"op": "gen", "n": items}},
        {"name": "work", "type": "data", "dependsOn": ["gen"],
         "forEach": "${{ tasks.gen.outputs.items }}",
         "inputs": {"op": "item", "item": "${{ item }}"}},
        {"name": "total", "type": "data", "dependsOn": ["work"],
         "inputs": {"op": total, "values": "${{ tasks.work.outputs }}"}},
    ]


def _ready(kubectl, name: str) -> None:  # type: ignore[no-untyped-def]
    eventually(lambda: "True" in kubectl(
        "get", "cwf", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"),
        60, what=f"the Workflow {name} Ready")


def _get(kubectl, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", "cwr", name, "-o", "json"))  # type: ignore[no-any-return]


def _status(kubectl, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return _get(kubectl, name).get("status") or {}


def _wait(kubectl, name: str, *phases: str, timeout: float = 180) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return eventually(lambda: (s := _status(kubectl, name)).get("phase") in phases and s,
                      timeout, interval=0.5, what=f"run {name} to be {'/'.join(phases)}")


def _task(status: dict[str, Any], name: str) -> dict[str, Any]:
    """The task's entry in the status; {} until it has one."""
    return next((t for t in status.get("tasks", []) if t["name"] == name), {})


def _run_keys(objects: ObjectStore, kubectl, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    body = _get(kubectl, name)
    return _keys_under(objects, body)


def _keys_under(objects: ObjectStore, body: dict[str, Any]) -> list[str]:
    meta = body["metadata"]
    prefix = run_prefix(meta["namespace"], body["spec"]["workflowRef"]["name"], meta["uid"])
    return [key for key, _ in objects.list(prefix)]


def _peak_rss_kib(process: OperatorProcess) -> int:
    assert process.process is not None
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:")))


@local_testbed_only
def test_a_fan_out_over_a_hundred_thousand_stored_items_sums_right_and_stays_small(
        store_operator, kubectl, cluster, namespace, objects):
    items = 100_000
    pool = data_type(concurrency=32, scaling={"minReplicas": 2, "maxReplicas": 2})
    wf = workflow("bigfan", fan_out_and_in(items, "sum"), taskTypes=[pool],
                  outputs={"sum": "${{ tasks.total.outputs.sum }}",
                           "count": "${{ tasks.total.outputs.count }}"})
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    _ready(kubectl, "bigfan")
    with LargestObject(["-n", namespace, "get", "cwr", "big"], cluster.env()) as sizes:
        kubectl("apply", "-f", "-", stdin=as_json(run("big", "bigfan")))
        status = _wait(kubectl, "big", "Succeeded", "Failed", timeout=900)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["outputs"] == {"sum": 2 * sum(range(items)), "count": items}
    gen, work = _task(status, "gen"), _task(status, "work")
    assert "$ref" in gen["outputs"] and gen["outputs"]["$ref"]["size"] > 1_000_000
    assert work["outputs"]["$ref"]["items"] == items
    assert sizes.reads >= 3, "the run's size was read while it ran"
    assert sizes.largest < LIMIT, f"the WorkflowRun reached {sizes.largest} bytes"
    peak = _peak_rss_kib(store_operator)
    started, finished = status["startedAt"], status["finishedAt"]
    print(f"\n100,000 items: run {started} -> {finished}; largest WorkflowRun "
          f"{sizes.largest} B over {sizes.reads} reads; operator peak RSS {peak // 1024} MiB;"
          f" {len(_run_keys(objects, kubectl, 'big'))} stored objects")
    assert peak < 1024 * 1024, f"the operator's peak RSS was {peak // 1024} MiB"


def test_fifty_megabytes_pass_from_one_task_to_the_next_by_reference(store_operator, kubectl):
    wf = workflow("blob", [
        {"name": "producer", "type": "data", "inputs": {"op": "blob", "mb": 50}},
        {"name": "consumer", "type": "data", "dependsOn": ["producer"],
         "inputs": {"op": "check", "given": "${{ tasks.producer.outputs }}"}},
    ], taskTypes=[data_type()])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("b1", "blob")))
    status = _wait(kubectl, "b1", "Succeeded", "Failed", timeout=300)
    assert status["phase"] == "Succeeded", status.get("message")
    ref = _task(status, "producer")["outputs"]["$ref"]
    consumer = _task(status, "consumer")["outputs"]
    assert ref["size"] > 50_000_000
    assert consumer["size"] == 50_000_000 and len(consumer["verified"]) == 64


def test_retry_reuses_stored_outputs_without_copying_and_deletion_takes_them(
        store_operator, kubectl, cluster, namespace, objects):
    tasks = fan_out_and_in(3000, "fail")
    wf = workflow("reuse", tasks, taskTypes=[data_type(concurrency=16)])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "reuse")))
    failed = _wait(kubectl, "r1", "Succeeded", "Failed")
    assert failed["phase"] == "Failed"
    first = _get(kubectl, "r1")
    stored = _keys_under(objects, first)
    assert stored, "gen's outputs and work's item chunks are in the store"

    tasks[2]["inputs"]["op"] = "sum"  # the fix, then a retry of what failed
    kubectl("apply", "-f", "-", stdin=as_json(workflow("reuse", tasks,
                                                       taskTypes=[data_type(concurrency=16)])))
    cli = subprocess.run([sys.executable, "-m", "conveyor.cli", "retry", "r1", "--name", "r2",
                          "-n", namespace], env=cluster.env(), capture_output=True, text=True,
                         timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr
    status = _wait(kubectl, "r2", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status.get("message")
    assert _task(status, "total")["outputs"] == {"sum": 2 * sum(range(3000)), "count": 3000}
    for name in ("gen", "work"):
        reused = _task(status, name)
        assert reused["reason"] == "Reused"
        assert reused["outputs"] == _task(first["status"], name)["outputs"], "not copied"
    second = _get(kubectl, "r2")
    assert _keys_under(objects, second) == [], "nothing of r1 was copied under r2"

    kubectl("delete", "cwr", "r1", "--wait=true")
    # What r2 reuses stays while r2 is there, once the operator has acted on the deletion.
    line = f"Stored objects of a deleted run run={namespace}/r1 deleted=0 kept={len(stored)}"
    eventually(lambda: line in store_operator.log.read_text(), 60,
               what=f"the operator to log {line!r}")
    assert _keys_under(objects, first) == stored
    kubectl("delete", "cwr", "r2", "--wait=true")
    eventually(lambda: _keys_under(objects, first) == [], 60,
               what="r1's objects to go with the last run that reused them")


@local_testbed_only
def test_a_store_that_is_down_fails_the_task_naming_it_never_a_stuck_run(
        store_operator, kubectl, store_settings):
    wf = workflow("down", [
        {"name": "producer", "type": "data", "inputs": {"op": "blob", "mb": 0.2},
         "retry": {"limit": 1, "backoffSeconds": 1}},
    ], taskTypes=[data_type(scaling={"minReplicas": 1, "maxReplicas": 1})])
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    _ready(kubectl, "down")
    with store_down(store_settings):
        kubectl("apply", "-f", "-", stdin=as_json(run("d1", "down")))
        status = _wait(kubectl, "d1", "Succeeded", "Failed", timeout=180)
    producer = _task(status, "producer")
    assert status["phase"] == "Failed"
    assert producer["attempts"] == 2, "retried under its retry policy first"
    assert "cannot store outputs at s3://" in producer["message"]


def test_a_reference_whose_object_was_deleted_fails_the_reader_naming_the_key(
        store_operator, kubectl, objects, store_settings):
    wf = workflow("gone", [
        {"name": "producer", "type": "data", "inputs": {"op": "blob", "mb": 0.2}},
        {"name": "pause", "type": "work", "dependsOn": ["producer"], "inputs": {"seconds": 4}},
        {"name": "consumer", "type": "data", "dependsOn": ["pause"],
         "inputs": {"op": "check", "given": "${{ tasks.producer.outputs }}"}},
    ], taskTypes=[data_type(), work_type()])
    kubectl("apply", "-f", "-", stdin=as_json(wf, run("g1", "gone")))
    ref = eventually(lambda: _task(_status(kubectl, "g1"), "producer").get("outputs", {})
                     .get("$ref"), 120, interval=0.2, what="the producer's stored outputs")
    objects.delete(ref["key"][len(store_settings.prefix):])
    status = _wait(kubectl, "g1", "Succeeded", "Failed")
    consumer = _task(status, "consumer")
    assert status["phase"] == "Failed"
    assert consumer["phase"] == "Failed" and ref["key"] in consumer["message"]
    assert consumer["attempts"] == 1, "a missing object is not worth a retry"


@local_testbed_only
def test_operator_and_workers_reach_the_store_over_tls_with_its_ca(
        cluster, amqp_url: str, namespace: str, crds: None, tmp_path: Path,
        store_settings: StoreSettings, request: pytest.FixtureRequest, kubectl):
    """The store's HTTPS endpoint, verified with its CA: the operator reads it from
    CONVEYOR_S3_CA_FILE, the workers get a copy through their Workflow's Secret."""
    secure = {**store_env(store_settings),
              "CONVEYOR_S3_ENDPOINT": objectstore.tls_endpoint(ports()),
              "CONVEYOR_S3_CA_FILE": str(paths().amqp_ca)}
    operator = running_operator(cluster, amqp_url, namespace, tmp_path, request, **secure)
    next(operator)
    try:
        wf = workflow("secure", fan_out_and_in(2000, "sum"),
                      taskTypes=[data_type(concurrency=16)])
        kubectl("apply", "-f", "-", stdin=as_json(wf, run("s1", "secure")))
        status = _wait(kubectl, "s1", "Succeeded", "Failed")
        assert status["phase"] == "Succeeded", status.get("message")
        assert _task(status, "total")["outputs"] == {"sum": 2 * sum(range(2000)),
                                                     "count": 2000}
        assert "$ref" in _task(status, "gen")["outputs"], "the worker stored over TLS"
        pools = json.loads(kubectl("get", "deployments", "-o", "json"))["items"]
        env = {e["name"]: e.get("value") for e in
               pools[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["CONVEYOR_S3_ENDPOINT"].startswith("https://")
        assert env["CONVEYOR_S3_CA_FILE"]
    finally:
        next(operator, None)

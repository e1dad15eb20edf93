"""Nothing is lost: pools scale from zero and back with no task dropped while pods go, and an
operator killed with SIGKILL mid-flight resumes every run, applying each result exactly once."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from conveyor import names
from conveyor.broker import Admin
from conveyor.broker.settings import BrokerSettings
from support.kube import local_testbed_only
from support.operator import operator_process
from support.waiting import eventually
from support.workflows import as_json, run, work_type, workflow

pytestmark = pytest.mark.e2e


def _runs(kubectl) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return json.loads(kubectl("get", "cwr", "-o", "json"))["items"]  # type: ignore[no-any-return]


def _replicas(kubectl, name: str) -> int:  # type: ignore[no-untyped-def]
    out = kubectl("get", "deploy", name, "-o", "jsonpath={.spec.replicas}", check=False)
    return int(out or 0)


def _execution_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@local_testbed_only
def test_a_pool_scales_from_zero_with_the_work_and_back_to_zero_losing_nothing(
    operator, kubectl, tmp_path: Path
):
    log = tmp_path / "executions.jsonl"
    pool = work_type(log=log, concurrency=2, scaling={
        "minReplicas": 0, "maxReplicas": 4, "backlogPerReplica": 2,
        "idleSecondsBeforeScaleDown": 3})
    wf = workflow("fanout", [{
        "name": "items", "type": "work", "forEach": "${{ inputs.items }}",
        "inputs": {"seconds": 0.5, "echo": "${{ item }}"},
    }], taskTypes=[pool])
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    eventually(lambda: kubectl("get", "deploy", "fanout-work", "-o", "name", check=False), 30,
               what="the pool's Deployment")
    assert _replicas(kubectl, "fanout-work") == 0, "minReplicas 0: no pod without work"

    kubectl("apply", "-f", "-", stdin=as_json(run("r1", "fanout", items=list(range(40)))))
    peak = 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, _replicas(kubectl, "fanout-work"))
        phase = (_runs(kubectl)[0].get("status") or {}).get("phase")
        return phase in ("Succeeded", "Failed")

    eventually(done, 180, interval=0.2, what="the run to finish")
    status = _runs(kubectl)[0]["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert peak >= 3, f"the pool should grow with the backlog, peaked at {peak}"
    items = status["tasks"][0]["items"]
    assert items["succeeded"] == items["total"] == 40
    assert [o["echo"] for o in status["tasks"][0]["outputs"]] == list(range(40))

    eventually(lambda: _replicas(kubectl, "fanout-work") == 0, 60,
               what="the pool to scale back to zero after the idle period")
    eventually(lambda: not kubectl("get", "pods", "-o", "name").strip(), 60,
               what="the worker pods to go")
    succeeded = {e["attempt"] for e in _execution_log(log) if e["outcome"] == "succeeded"}
    assert len({a.split("/")[1] for a in succeeded}) == 40, "every item ran to success"


@local_testbed_only
def test_an_operator_killed_mid_flight_resumes_every_run_applying_each_result_once(
    operator, kubectl, tmp_path: Path
):
    log = tmp_path / "executions.jsonl"
    pool = work_type(log=log, concurrency=8, scaling={
        "minReplicas": 2, "maxReplicas": 3, "backlogPerReplica": 20,
        "idleSecondsBeforeScaleDown": 60})
    wf = workflow("sturdy", [
        {"name": "first", "type": "work", "inputs": {"seconds": 0.2}},
        {"name": "fan", "type": "work", "dependsOn": ["first"],
         "forEach": "${{ [0, 1, 2, 3, 4, 5] }}", "maxParallel": 3,
         "inputs": {"seconds": 0.3, "fail": 1, "echo": "${{ item }}"},
         "retry": {"limit": 2, "backoffSeconds": 0.2}},
        {"name": "last", "type": "work", "dependsOn": ["fan"],
         "inputs": {"echo": "${{ size(tasks.fan.outputs) }}"}},
    ], taskTypes=[pool], outputs={"count": "${{ tasks.last.outputs.echo }}"})
    kubectl("apply", "-f", "-", stdin=as_json(wf))
    eventually(lambda: _replicas(kubectl, "sturdy-work") == 2, 30, what="the warm pool")
    kubectl("apply", "-f", "-", stdin=as_json(*(run(f"r{i:02d}", "sturdy") for i in range(20))))

    def progressed() -> bool:
        done = sum(1 for e in _execution_log(log) if e["outcome"] == "succeeded")
        return done >= 40

    eventually(progressed, 120, interval=0.1, what="the runs to be under way")
    operator.kill()  # SIGKILL: no chance to flush or ack anything
    phases = Counter((r.get("status") or {}).get("phase") for r in _runs(kubectl))
    assert phases.get("Succeeded", 0) < 20, f"the kill came too late to test much: {phases}"
    operator.start()

    def all_finished() -> bool:
        runs = _runs(kubectl)
        return len(runs) == 20 and all((r.get("status") or {}).get("phase") in
                                       ("Succeeded", "Failed", "Cancelled") for r in runs)

    eventually(all_finished, 240, interval=0.5, what="every run to finish after the restart")
    executed: dict[str, set[str]] = defaultdict(set)
    for entry in _execution_log(log):
        uid = entry["attempt"].split("/")[0]
        executed[uid].add(entry["attempt"])
    for item in _runs(kubectl):
        status, uid = item["status"], item["metadata"]["uid"]
        assert status["phase"] == "Succeeded", (item["metadata"]["name"], status.get("message"))
        assert status["outputs"] == {"count": 6}
        tasks = {t["name"]: t for t in status["tasks"]}
        assert tasks["fan"]["items"]["succeeded"] == 6
        # Each attempt the status counts was dispatched once and its result applied once:
        # the attempts recorded equal the distinct attempts the workers executed.
        recorded = sum(t.get("attempts", 0) for t in status["tasks"])
        assert recorded == len(executed[uid]), (item["metadata"]["name"], recorded,
                                                sorted(executed[uid]))
        # Every item failed its first attempt on purpose and succeeded on its second.
        assert tasks["fan"]["attempts"] == 12


@local_testbed_only
def test_a_second_replica_waits_for_the_lease_and_takes_over_when_the_leader_dies(
    operator, kubectl, cluster, amqp_url, namespace, tmp_path: Path
):
    eventually(lambda: "Leader lease acquired" in operator.tail(), 30,
               what="the first replica to lead")
    standby = operator_process(cluster, amqp_url, namespace, tmp_path / "standby.log")
    standby.start()
    try:
        eventually(lambda: "Waiting for the leader lease" in standby.tail(), 30,
                   what="the second replica to stand by")
        wf = workflow("leader", [{"name": "t", "type": "work", "inputs": {"echo": 1}}])
        kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "leader")))
        eventually(lambda: (_runs(kubectl)[0].get("status") or {}).get("phase") == "Succeeded",
                   60, what="the leader to run r1")
        assert "Workflow reconciled" not in standby.tail(400), "the standby must not act"
        operator.kill()
        eventually(lambda: "Leader lease expired; taking over" in standby.tail(), 60,
                   what="the standby to take over")
        kubectl("apply", "-f", "-", stdin=as_json(run("r2", "leader")))
        eventually(lambda: all((r.get("status") or {}).get("phase") == "Succeeded"
                               for r in _runs(kubectl)), 60, what="the new leader to run r2")
        standby.stop()  # SIGTERM: a clean shutdown hands the Lease over at once
        assert "Leader lease released" in standby.tail()
    finally:
        standby.stop()


def test_two_installs_sharing_a_broker_each_run_their_own_workflows(
    operator, kubectl, cluster, amqp_url, api_client, tmp_path: Path
):
    core = client.CoreV1Api(api_client)
    other = f"t-second-install-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": other}})
    second = operator_process(cluster, amqp_url, other, tmp_path / "second.log")
    second.start()
    try:
        wf = workflow("shared", [{"name": "t", "type": "work",
                                  "forEach": "${{ [1, 2, 3, 4, 5, 6, 7, 8] }}",
                                  "inputs": {"seconds": 0.2, "echo": "${{ item }}"}}])
        manifests = as_json(wf, run("r1", "shared"))
        kubectl("apply", "-f", "-", stdin=manifests)
        kubectl("apply", "-n", other, "-f", "-", stdin=manifests)

        def phases() -> list[str | None]:
            mine = (_runs(kubectl)[0].get("status") or {}).get("phase")
            theirs = (json.loads(kubectl("get", "-n", other, "cwr", "r1", "-o", "json"))
                      .get("status") or {}).get("phase")
            return [mine, theirs]

        eventually(lambda: phases() == ["Succeeded", "Succeeded"], 120, interval=0.3,
                   what="both installs to finish their own run")
    finally:
        second.stop()
        core.delete_namespace(other, propagation_policy="Background")


def test_an_install_that_is_gone_collects_none_of_the_other_installs_events(
    operator, kubectl, cluster, amqp_url, api_client, tmp_path: Path
):
    """Worker events go to the install that dispatched the attempt, not to every install that
    ever ran on the broker: one that stopped for good (its queue kept, nobody consuming) gains
    nothing while another install fans out."""
    core = client.CoreV1Api(api_client)
    other = f"t-gone-install-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": other}})
    gone = operator_process(cluster, amqp_url, other, tmp_path / "gone.log")
    gone_queue = names.operator_queue(f"{other}.conveyor-operator", "events")
    try:
        with Admin(BrokerSettings(amqp_url)) as admin:
            gone.start()
            eventually(lambda: admin.inspect(gone_queue) is not None, 60, interval=0.2,
                       what=f"the second install to declare {gone_queue}")
            gone.stop()  # no Deployment of its own to tell it was uninstalled: queues kept
            items = 300
            wf = workflow("fan", [{"name": "t", "type": "work",
                                   "forEach": "${{ " + str(list(range(items))) + " }}",
                                   "inputs": {"echo": "${{ item }}"}}])
            kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "fan")))
            eventually(lambda: (_runs(kubectl)[0].get("status") or {}).get("phase")
                       == "Succeeded", 180, interval=0.3, what="the fan-out to succeed")
            stats = admin.inspect(gone_queue)
            assert stats is not None and stats.consumers == 0
            assert stats.backlog == 0, f"the gone install's queue collected {stats.backlog} events"
    finally:
        gone.stop()
        with Admin(BrokerSettings(amqp_url)) as admin:
            admin.delete_queue(gone_queue)
            admin.delete_queue(names.operator_queue(f"{other}.conveyor-operator", "triggers"))
        core.delete_namespace(other, propagation_policy="Background")


def test_tasks_whose_messages_were_purged_from_their_queue_are_dispatched_again(
    cluster, amqp_url, namespace, crds, kubectl, tmp_path: Path
):
    """A run never waits on nothing: items Queued whose messages are purged from the queue
    (as a broker that lost its data would lose them) are found by their lease once the queue
    drains, dispatched again under their own attempt ids, and the run succeeds."""
    operator = operator_process(cluster, amqp_url, namespace, tmp_path / "operator.log",
                                CONVEYOR_LEASE_SECONDS="4")
    operator.start()
    try:
        worker = work_type(concurrency=1, scaling={"minReplicas": 1, "maxReplicas": 1},
                           env=[*work_type()["env"],
                                {"name": "CONVEYOR_HEARTBEAT_SECONDS", "value": "1"}])
        wf = workflow("purged", [{"name": "t", "type": "work", "forEach": "${{ [0, 1, 2] }}",
                                  "inputs": {"seconds": 3, "echo": "${{ item }}"}}],
                      taskTypes=[worker])
        kubectl("apply", "-f", "-", stdin=as_json(wf, run("r1", "purged")))

        def one_running() -> bool:  # item states, run-length encoded: R a running one
            tasks = ((_runs(kubectl) or [{}])[0].get("status") or {}).get("tasks") or [{}]
            return "R" in (tasks[0].get("items") or {}).get("states", "")
        eventually(one_running, 90, interval=0.1, what="the first item to be running")
        queue = names.queue_name(namespace, "purged", "work")
        with Admin(BrokerSettings(amqp_url)) as admin:
            assert admin.purge(queue) == 2, "the other two items were not waiting in the queue"

        eventually(lambda: (_runs(kubectl)[0].get("status") or {}).get("phase")
                   == "Succeeded", 90, interval=0.3, what="the run to succeed all the same")
        items = _runs(kubectl)[0]["status"]["tasks"][0]["items"]
        assert (items["succeeded"], items["total"]) == (3, 3)
        assert "Dispatched again attempts whose messages were lost" in operator.tail(400)
    finally:
        operator.stop()

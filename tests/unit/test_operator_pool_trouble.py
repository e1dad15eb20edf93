"""Why a pool's pods cannot run, from their status as the kubelet and the scheduler write it
(`pools.pool_trouble`, pure), and how it reaches the Workflow's status: each pool's `reason`
and `message`, and the `PoolsHealthy` condition beside `Ready`, written only when changed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from conveyor import names
from conveyor.broker import Admin, BrokerSettings
from conveyor.operator.metrics import Metrics
from conveyor.operator.pools import PoolManager, PoolTrouble, pool_trouble, pools_condition
from conveyor.operator.reconcile import Reconciler
from conveyor.operator.settings import Settings
from unit.fakes import NAMESPACE, WORKFLOW, Bed, drive, workflow_body, workflow_spec

T = TypeVar("T")
NOW = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
IMAGE = "127.0.0.1:1/nope:1"


def pod(name: str, *containers: dict[str, Any], conditions: list[dict[str, Any]] | None = None,
        phase: str = "Pending", deleting: bool = False,
        init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A worker pod as the API server lists it (the fields the mapping reads, and others)."""
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}",
                            "labels": {names.LABEL_WORKFLOW: WORKFLOW,
                                       names.LABEL_TASK_TYPE: "pool"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T07:59:00Z"
    status: dict[str, Any] = {"phase": phase, "hostIP": "127.0.0.1", "qosClass": "BestEffort",
                              "conditions": conditions or [
                                  {"type": "PodScheduled", "status": "True"},
                                  {"type": "Ready", "status": "False",
                                   "reason": "ContainersNotReady"}]}
    if containers:
        status["containerStatuses"] = list(containers)
    if init:
        status["initContainerStatuses"] = init
    return {"metadata": meta, "spec": {"restartPolicy": "Always"}, "status": status}


def container(state: dict[str, Any], *, restarts: int = 0, last: dict[str, Any] | None = None,
              name: str = "worker", image: str = IMAGE) -> dict[str, Any]:
    return {"name": name, "image": image, "imageID": "", "ready": False, "started": False,
            "restartCount": restarts, "state": state, "lastState": last or {}}


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


CRASHED = {"terminated": {"exitCode": 3, "reason": "Error", "startedAt": "2026-12-02T07:59:50Z",
                          "finishedAt": "2026-12-02T07:59:51Z",
                          "containerID": "containerd://4f1c0a"}}
RUNNING = container({"running": {"startedAt": "2026-12-02T07:00:00Z"}})


# -- the pure mapping ---------------------------------------------------------------------------

def test_err_image_pull_names_the_pod_the_container_and_the_image() -> None:
    message = (f'failed to pull and unpack image "{IMAGE}": failed to resolve reference '
               f'"{IMAGE}": dial tcp 127.0.0.1:1: connect: connection refused')
    found = pool_trouble([pod("wf-pool-7d9-abcde", container(waiting("ErrImagePull", message)))],
                         NOW)
    assert found == PoolTrouble(
        "ErrImagePull", f"1 of 1 pods: pod wf-pool-7d9-abcde: container worker: image "
                        f"'{IMAGE}' cannot be pulled: {message}")


def test_image_pull_back_off_and_an_invalid_image_name() -> None:
    back_off = container(waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'))
    found = pool_trouble([pod("p1", back_off)], NOW)
    assert found is not None and found.reason == "ImagePullBackOff"
    assert f"pod p1: container worker: image '{IMAGE}'" in found.message
    assert found.message.endswith(f'Back-off pulling image "{IMAGE}"')
    invalid = container(waiting("InvalidImageName", 'Failed to apply default image tag '
                                '"Bad Name": couldn\'t parse image name "Bad Name": invalid '
                                'reference format'), image="Bad Name")
    found = pool_trouble([pod("p2", invalid)], NOW)
    assert found is not None and found.reason == "InvalidImageName"
    assert "image 'Bad Name' cannot be pulled: Failed to apply default image tag" in found.message


def test_crash_loop_back_off_with_the_last_exit_code_and_the_restarts() -> None:
    message = "back-off 20s restarting failed container=worker pod=p1_shop(uid-p1)"
    crashing = container(waiting("CrashLoopBackOff", message), restarts=2, last=CRASHED)
    found = pool_trouble([pod("p1", crashing, phase="Running")], NOW)
    assert found == PoolTrouble(
        "CrashLoopBackOff", f"1 of 1 pods: pod p1: container worker (image '{IMAGE}') crashed "
                            f"and was restarted 2 times, last exit code 3 (Error): {message}")


def test_a_crashed_container_running_again_briefly_still_crash_loops() -> None:
    again = container({"running": {"startedAt": "2026-12-02T07:59:40Z"}}, restarts=3,
                      last=CRASHED)
    found = pool_trouble([pod("p1", again, phase="Running")], NOW)
    assert found is not None and found.reason == "CrashLoopBackOff"
    assert "running again since 2026-12-02T07:59:40Z" in found.message
    settled = container({"running": {"startedAt": "2026-12-02T07:50:00Z"}}, restarts=3,
                        last=CRASHED)
    assert pool_trouble([pod("p1", settled, phase="Running")], NOW) is None, \
        "running for long since: it recovered"


def test_create_container_config_error_says_what_is_missing() -> None:
    missing = container(waiting("CreateContainerConfigError", 'secret "wf-keys" not found'))
    found = pool_trouble([pod("p1", missing)], NOW)
    assert found == PoolTrouble("CreateContainerConfigError",
                                f"1 of 1 pods: pod p1: container worker (image '{IMAGE}') "
                                f"cannot start: secret \"wf-keys\" not found")


def test_an_unschedulable_pod_says_the_schedulers_message() -> None:
    says = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
            "available: 1 No preemption victims found for incoming pod.")
    unscheduled = pod("p1", conditions=[{"type": "PodScheduled", "status": "False",
                                         "reason": "Unschedulable", "message": says,
                                         "lastTransitionTime": "2026-12-02T07:58:00Z"}])
    found = pool_trouble([unscheduled], NOW)
    assert found == PoolTrouble("Unschedulable", f"1 of 1 pods: pod p1 cannot be scheduled: "
                                                 f"{says}")


def test_an_init_container_that_crash_loops_counts() -> None:
    message = "back-off 10s restarting failed container=setup pod=p1_shop(uid-p1)"
    init = container(waiting("CrashLoopBackOff", message), name="setup", restarts=1,
                     last=CRASHED)
    found = pool_trouble([pod("p1", init=[init])], NOW)
    assert found is not None and found.reason == "CrashLoopBackOff"
    assert "container setup" in found.message


def test_healthy_starting_and_going_pods_are_no_trouble() -> None:
    creating = container({"waiting": {"reason": "ContainerCreating"}})
    gone = container(waiting("CrashLoopBackOff", "back-off 10s"), restarts=1, last=CRASHED)
    assert pool_trouble([], NOW) is None
    assert pool_trouble([pod("p1", RUNNING, phase="Running"), pod("p2", creating),
                         pod("p3", gone, deleting=True)], NOW) is None


def test_several_pods_the_most_telling_reason_and_how_many() -> None:
    crashing = container(waiting("CrashLoopBackOff", "back-off 10s"), restarts=1,
                         last=CRASHED)
    pulling = container(waiting("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'))
    found = pool_trouble([pod("a", crashing), pod("b", RUNNING, phase="Running"),
                          pod("c", pulling)], NOW)
    assert found is not None and found.reason == "ImagePullBackOff"
    assert found.message.startswith("2 of 3 pods: pod c: ")


def test_the_workflow_condition_names_each_troubled_pool() -> None:
    assert pools_condition({"a": None}) == ("True", "PodsRunnable",
                                            "no worker pod is kept from running")
    status, reason, message = pools_condition({
        "b": PoolTrouble("CrashLoopBackOff", "1 of 1 pods: x"), "a": None,
        "c": PoolTrouble("Unschedulable", "1 of 2 pods: y")})
    assert (status, reason) == ("False", "CrashLoopBackOff")
    assert message == ("pool b: CrashLoopBackOff: 1 of 1 pods: x; "
                       "pool c: Unschedulable: 1 of 2 pods: y")


# -- into the Workflow's status ---------------------------------------------------------------

class Pools(PoolManager):
    async def admin_call(self, call: Callable[[Admin], T]) -> T:
        class NoBroker:
            def declare_exchanges(self) -> None:
                pass

            def declare_task_queue(self, queue: str, limit: int) -> None:
                pass

        return call(cast(Admin, NoBroker()))


def test_a_crash_looping_pool_shows_in_the_workflow_status_and_heals() -> None:
    async def scenario() -> None:
        bed = Bed()
        settings = Settings(broker=BrokerSettings(url="amqp://u:p@localhost/"))
        pools = Pools(settings, bed.kube, metrics=Metrics(), in_flight=dict, workers=dict)
        reconciler = Reconciler(settings, bed.kube, bed.workflows, pools, bed.manager)
        await reconciler.reconcile(workflow_body(workflow_spec({"name": "a"})))
        writes = bed.kube.patches[("workflows", NAMESPACE, WORKFLOW)]
        by_type = {c["type"]: c for c in writes[-1]["conditions"]}
        assert by_type["PoolsHealthy"]["status"] == "True"
        assert by_type["PoolsHealthy"]["observedGeneration"] == 1

        labels = {names.LABEL_MANAGED_BY: names.FIELD_MANAGER, names.LABEL_WORKFLOW: WORKFLOW,
                  names.LABEL_TASK_TYPE: "pool"}
        crash = container(waiting("CrashLoopBackOff", "back-off 10s restarting failed "
                                  "container=worker pod=p1_shop(uid-p1)"), restarts=1,
                          last=CRASHED)
        bed.kube.pods[(NAMESPACE, "p1")] = {"labels": labels,
                                            "status": pod("p1", crash)["status"]}
        await pools._write_statuses()
        [entry] = writes[-1]["taskTypes"]
        assert entry["reason"] == "CrashLoopBackOff"
        assert entry["message"].startswith("1 of 1 pods: pod p1: container worker")
        by_type = {c["type"]: c for c in writes[-1]["conditions"]}
        assert (by_type["PoolsHealthy"]["status"], by_type["PoolsHealthy"]["reason"]) == (
            "False", "CrashLoopBackOff")
        assert by_type["Ready"]["status"] == "True", "the pool reason keeps Ready as it was"

        count = len(writes)
        await pools._write_statuses()
        assert len(writes) == count, "nothing changed: no write"
        # The drift reconcile from a status read before the pools' write keeps their view.
        await reconciler.reconcile(workflow_body(workflow_spec({"name": "a"})))
        by_type = {c["type"]: c for c in writes[-1]["conditions"]}
        assert by_type["PoolsHealthy"]["reason"] == "CrashLoopBackOff"

        bed.kube.pods[(NAMESPACE, "p1")]["status"] = pod("p1", RUNNING, phase="Running")[
            "status"]
        await pools._write_statuses()
        [entry] = writes[-1]["taskTypes"]
        assert "reason" not in entry and "message" not in entry
        by_type = {c["type"]: c for c in writes[-1]["conditions"]}
        assert by_type["PoolsHealthy"]["status"] == "True"

    drive(scenario)

"""A run being rebuilt from its status when its Workflow arrives (found with `make soak`:
after an operator restart kopf may deliver the Workflow, and the reconcile mark it ready,
while a rebuild still waits for the API server to return the generation's snapshot).

The rebuild must win: the run keeps its progress and the generation it started with, and
nothing it had done is dispatched again (a run keeps the status it was first seen with,
`ActiveRun.seen_status`, and one activation runs at a time).
"""

from __future__ import annotations

from typing import Any

import pytest

from unit.fakes import NAMESPACE, WORKFLOW, Bed, drive, run_body, turns, workflow_spec
from unit.test_operator_delivery import TWO_STEPS, phase, started

EDITED = workflow_spec({"name": "a"}, {"name": "c", "dependsOn": ["a"]})


@pytest.mark.parametrize(("spec", "generation"), [(TWO_STEPS, 1), (EDITED, 2)],
                         ids=["same-generation", "workflow-edited-meanwhile"])
def test_a_workflow_arriving_during_a_rebuild_does_not_restart_the_run(
    spec: dict[str, Any], generation: int
) -> None:
    saved: dict[str, Any] = {}

    async def before_restart() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS, generation=1)
        bed.start()
        bed.add_run("r1")
        await started(bed)
        bed.send("uid-r1/a/1", outputs={"x": 1})
        await bed.until(lambda: phase(bed.status("r1"), "b") == "Queued", what="b queued")
        await bed.settle()
        saved["status"] = bed.status("r1")
        saved["config_maps"] = dict(bed.kube.config_maps)  # generation 1's snapshot

    async def after_restart() -> None:
        bed = Bed()
        bed.kube.config_maps.update(saved["config_maps"])
        bed.kube.block("get_config_map_data")  # the API server slow to answer the rebuild
        bed.start([run_body("r1", status=saved["status"])])
        await bed.until(lambda: bed.kube.waiting["get_config_map_data"] == 1,
                        what="the rebuild reading the snapshot")
        bed.add_workflow(spec, generation=generation)  # kopf delivers it, the pools are ready
        await turns(50)
        bed.kube.unblock("get_config_map_data")
        await bed.until(lambda: bed.run("uid-r1") is not None
                        and bed.run("uid-r1").state is not None, what="the run rebuilt")
        await bed.settle()
        assert bed.link.task_ids() == [], "a, done before the restart, dispatched again"
        for status in bed.written("r1"):
            assert status["workflowGeneration"] == 1, "the run changed generation"
            assert phase(status, "a") == "Succeeded", "the run's progress was discarded"
        bed.send("uid-r1/b/1", outputs={"y": 2})
        await bed.until(lambda: (bed.status("r1") or {}).get("phase") == "Succeeded",
                        what="the run to finish on generation 1")

    drive(before_restart)
    drive(after_restart)


def test_a_workflow_ready_while_a_new_run_writes_that_it_waits_starts_the_run() -> None:
    """Found in CI after a leader takeover: the new leader saw a new run before its
    Workflow's pools were ready, and the reconcile said they were while the run's status
    write (`WorkflowNotReady`) was still under way. That notice must not be lost: the run
    starts, not waits for nothing."""

    async def scenario() -> None:
        bed = Bed()
        bed.add_workflow(TWO_STEPS, provisioned=False)
        bed.start()
        bed.kube.block("replace_status")  # the API server slow to take the waiting status
        bed.add_run("r1")
        await bed.until(lambda: bed.kube.waiting["replace_status"] == 1,
                        what="the run's waiting status in flight")
        bed.workflows.provisioned(NAMESPACE, WORKFLOW, 1)
        await turns(50)
        bed.kube.unblock("replace_status")
        await started(bed)
        assert bed.link.task_ids() == ["uid-r1/a/1"]

    drive(scenario)

"""`conveyor get` shows why a pool's pods cannot run: beside the run's tasks when a pool is in
trouble, and in `get workflow/NAME` always; `list workflows` gives PoolsHealthy's reason."""

from __future__ import annotations

from typing import Any

from conveyor.cli.runs import _workflow_row, pools_table, workflow_view

MESSAGE = ("1 of 1 pods: pod shop-resize-5f6-x2: container worker (image 'img:1') crashed and "
           "was restarted 3 times, last exit code 1 (Error): back-off 40s restarting failed "
           "container=worker pod=shop-resize-5f6-x2_shop(u1)")


def _workflow(*pools: dict[str, Any], healthy: bool = True) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True", "reason": "Provisioned",
                   "message": "2 worker pools provisioned"},
                  {"type": "PoolsHealthy", "status": "True" if healthy else "False",
                   "reason": "PodsRunnable" if healthy else "CrashLoopBackOff",
                   "message": "" if healthy else f"pool resize: CrashLoopBackOff: {MESSAGE}"}]
    return {"metadata": {"name": "shop", "generation": 2,
                         "creationTimestamp": "2026-12-02T08:00:00Z"},
            "spec": {"tasks": [{"name": "a"}]},
            "status": {"conditions": conditions, "taskTypes": list(pools), "activeRuns": 1}}


GOOD = {"name": "fetch", "replicas": 1, "readyReplicas": 1, "backlog": 0, "inFlight": 0}
BAD = {"name": "resize", "replicas": 1, "readyReplicas": 0, "backlog": 4, "inFlight": 1,
       "reason": "CrashLoopBackOff", "message": MESSAGE}


def test_the_reason_stands_next_to_its_pool() -> None:
    text = pools_table(_workflow(GOOD, BAD), troubled_only=True)
    assert text is not None
    header, fetch, resize = text.splitlines()
    assert header.split()[:5] == ["POOL", "REPLICAS", "READY", "BACKLOG", "IN"]
    assert fetch.split() == ["fetch", "1", "1", "0", "0"]
    assert resize.split()[:6] == ["resize", "1", "0", "4", "1", "CrashLoopBackOff"]
    assert resize.endswith(MESSAGE)


def test_no_pool_in_trouble_no_table_beside_a_run() -> None:
    assert pools_table(_workflow(GOOD), troubled_only=True) is None
    assert pools_table(None, troubled_only=True) is None
    assert pools_table(_workflow(GOOD), troubled_only=False) is not None


def test_the_workflow_view_has_its_conditions_and_pools() -> None:
    text = workflow_view(_workflow(GOOD, BAD, healthy=False))
    assert text.splitlines()[0] == "shop  generation 2  active runs 1"
    assert "PoolsHealthy   False    CrashLoopBackOff" in text
    assert any(line.startswith("resize ") and "CrashLoopBackOff" in line
               for line in text.splitlines())


def test_list_workflows_gives_the_pools_reason_when_ready() -> None:
    assert _workflow_row(_workflow(GOOD, BAD, healthy=False), 0.0)[-1] == "CrashLoopBackOff"
    assert _workflow_row(_workflow(GOOD), 0.0)[-1] == ""

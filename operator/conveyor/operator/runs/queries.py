"""Pure questions the rest of the operator asks of the active runs (the autoscaler, the
Workflow reconcile): answered from the runs' engine states, never stored twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from conveyor.operator.runs.records import ActiveRun

PoolKey = tuple[str, str, str]  # namespace, workflow, task type


def _of(runs: Iterable[ActiveRun], namespace: str, workflow: str) -> list[ActiveRun]:
    """Runs of the Workflow that started on it (runs still waiting for it have no state)."""
    return [r for r in runs if r.state is not None and r.ref.namespace == namespace
            and r.ref.workflow == workflow]


def started_runs(runs: Iterable[ActiveRun], namespace: str, workflow: str) -> int:
    """Runs of the Workflow that started on it and have not finished. Runs still waiting
    for it do not count: they wait for a Workflow of that name, which may come back."""
    return len(_of(runs, namespace, workflow))


def in_flight(runs: Iterable[ActiveRun]) -> dict[PoolKey, int]:
    """Attempts dispatched and not ended, per (namespace, workflow, task type)."""
    counts: dict[PoolKey, int] = defaultdict(int)
    for run in runs:
        state = run.state
        if state is None or state.phase != "Running":
            continue
        for task in state.tasks:
            if task.active:
                counts[(run.ref.namespace, run.ref.workflow, task.spec.type)] += task.active
    return counts


def task_types_in_use(runs: Iterable[ActiveRun], namespace: str, workflow: str) -> set[str]:
    """Task types that unfinished runs (of any generation) still need."""
    return {t.spec.type for r in _of(runs, namespace, workflow)
            for t in r.state.tasks}  # type: ignore[union-attr]

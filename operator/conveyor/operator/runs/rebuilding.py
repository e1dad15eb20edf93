"""A run's engine state, when the operator first holds it: rebuilt from its status if it has
started (on the Workflow generation it started with, from the snapshot if the Workflow moved
on), else new on the Workflow's current generation, which is pinned for it then."""

from __future__ import annotations

import logging
import time
from typing import Any

from conveyor import engine
from conveyor.operator.runs import kube_events
from conveyor.operator.runs.records import ActiveRun
from conveyor.operator.runs.storage import RunStorage
from conveyor.operator.workflows import Workflows

log = logging.getLogger("conveyor.operator.runs")


async def give_state(workflows: Workflows, run: ActiveRun, status: dict[str, Any],
                     storage: RunStorage | None = None) -> engine.RunState:
    """Set `run.state` and return it; raises WorkflowUnavailableError (the Workflow or its
    generation is not there), KubeError (the API server failed), InvalidStatusError (a status
    the engine could not have written)."""
    ref = run.ref
    store = None if storage is None else storage.target(ref)
    values = None if storage is None else storage.cache
    generation = status.get("workflowGeneration")
    if generation is not None and status.get("phase"):
        compiled = await workflows.generation(ref.namespace, ref.workflow, int(generation))
        run.state = engine.from_status(compiled, ref.uid, run.inputs, status, store=store,
                                       values=values)
        # What the status shows was announced with Events already: not again.
        run.written_tasks = {t["name"]: t.get("phase", "") for t in status.get("tasks") or []}
        run.written_tasks[kube_events.RUN_KEY] = status["phase"]
        log.info("Run resumed run=%s/%s phase=%s", ref.namespace, ref.name, run.state.phase)
        return run.state
    compiled = workflows.current(ref.namespace, ref.workflow)
    await workflows.pin(ref.namespace, ref.workflow, compiled)
    run.state = engine.new_run(compiled, ref.uid, run.inputs, time.time(), reuse=run.reuse,
                               store=store, values=values)
    return run.state

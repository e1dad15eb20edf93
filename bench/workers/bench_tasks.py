"""No-op tasks for the operator benchmark: the cost measured is Conveyor's, not the task's."""

from __future__ import annotations

from typing import Any

from conveyor.worker import TaskContext, task


@task("noop")
def noop(inputs: dict[str, Any], ctx: TaskContext) -> None:
    return None

"""The worker SDK: write tasks as functions, serve them with `conveyor-worker`.

    from conveyor.worker import NonRetryable, task

    @task("inventory", non_retryable=(KeyError,))
    def reserve(inputs: dict, ctx) -> dict:
        if inputs["quantity"] <= 0:
            raise NonRetryable("quantity must be positive")  # final, whatever the policy
        return {"reserved": reserve_at_the_store(inputs["sku"]),   # ConnectionError: retried
                "key": ctx.idempotency_key}

`conveyor-worker --module shop.tasks` consumes the queue in CONVEYOR_QUEUE and runs the task
type in CONVEYOR_TASK_TYPE; see docs/workers.md.
"""

from collections.abc import Sequence

from conveyor.worker.context import TaskContext
from conveyor.worker.errors import NonRetryable, Retryable, WorkerConfigError
from conveyor.worker.registry import TaskDefinition, task

__all__ = ["NonRetryable", "Retryable", "TaskContext", "TaskDefinition", "WorkerConfigError",
           "main", "task"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `conveyor-worker` (imports the broker only when it runs)."""
    from conveyor.worker.cli import main as run  # noqa: PLC0415 (keeps `task` import light)

    return run(argv)

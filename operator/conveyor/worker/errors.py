"""Errors of the worker SDK.

    ConveyorError
     ├── Retryable           raised by a task: this attempt failed, another may succeed
     ├── NonRetryable        raised by a task: this failure is final, do not try again
     └── WorkerConfigError   `conveyor-worker` cannot start (module, task type, settings)

Any exception a task raises fails the attempt, and the task's retry policy decides whether
another follows (DESIGN.md §7) unless the failure is marked final: `NonRetryable`, or a type
that `@task(non_retryable=...)` names or `@task(retry_on=...)` leaves out. `Retryable` says
"retry this" whatever `retry_on` and `non_retryable` say.
"""

from conveyor.errors import ConveyorError


class Retryable(ConveyorError):  # noqa: N818 (the SDK's name for it, as DESIGN.md §4 has it)
    """Raise from a task when the failure is transient (a timeout, a busy dependency)."""


class NonRetryable(ConveyorError):  # noqa: N818 (the SDK's name for it, as DESIGN.md §7 has it)
    """Raise from a task when another attempt would fail the same way (a declined card,
    invalid inputs): the attempt fails for good, whatever the task's retry policy."""


class WorkerConfigError(ConveyorError):
    """The worker cannot start; the message is one line that names the problem."""

"""Errors of the worker SDK.

    ConveyorError
     ├── Retryable           raised by a task: this attempt failed, another may succeed
     └── WorkerConfigError   `conveyor-worker` cannot start (module, task type, settings)

Any other exception a task raises fails the attempt for good (`retryable: false`): the task's
retry policy only applies to failures the task marked as transient.
"""

from conveyor.errors import ConveyorError


class Retryable(ConveyorError):  # noqa: N818 (the SDK's name for it, as DESIGN.md §4 has it)
    """Raise from a task when the failure is transient (a timeout, a busy dependency)."""


class WorkerConfigError(ConveyorError):
    """The worker cannot start; the message is one line that names the problem."""

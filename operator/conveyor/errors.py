"""The one root of Conveyor's errors.

    ConveyorError
     ├── InvalidSpecError    a Workflow the operator cannot run (cycles, bad CEL, ...);
     │                       `.problems` lists each problem with its place in the spec
     ├── ExpressionError     a `${{ }}` expression failed to compile or to evaluate
     ├── InvalidStatusError  a WorkflowRun status that cannot be rebuilt into engine state
     ├── KubeError           the API server failed a call or gave no answer (conveyor.kube)
     ├── BrokerError         a broker operation failed, with its branches (conveyor.broker)
     ├── StoreError          an object store operation failed, with its branches (conveyor.store)
     ├── BrokerSettingsError, StoreSettingsError, SettingsError, WorkerConfigError, CliError
     │                       configuration a user gave cannot be used, and why
     ├── MalformedMessageError  a task body no worker can run (dead-lettered with a reason)
     ├── WorkflowUnavailableError  a run's Workflow is missing, invalid or lacks its generation
     ├── Retryable           raised by a task: try the attempt again (the worker SDK)
     ├── Retry               the operator's "not done yet" to a kopf handler
     └── SchemaError         the models made a CRD schema the API server would reject

Each branch lives beside the code that raises it; only the kopf handlers map these to
kopf's TemporaryError / PermanentError.
"""

from dataclasses import dataclass


class ConveyorError(Exception):
    """Every error Conveyor raises on purpose derives from this."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, and where: `spec.tasks[2].when: ...`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpecError(ConveyorError):
    """A Workflow spec that admission accepted but that cannot run.

    The operator reports it as `Ready=False, reason=InvalidSpec`, with `str(error)` as the
    condition's message.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class ExpressionError(ConveyorError):
    """A `${{ CEL }}` expression that does not compile or fails at evaluation.

    `path` is the expression's place in the spec (`spec.tasks[2].when`), `expression` its
    source; the message carries the position for syntax errors.
    """

    def __init__(self, path: str, expression: str, reason: str) -> None:
        self.path = path
        self.expression = expression
        self.reason = reason
        super().__init__(f"{path}: expression {expression!r}: {reason}")


class InvalidStatusError(ConveyorError):
    """A WorkflowRun status that does not describe a state the engine could have written."""

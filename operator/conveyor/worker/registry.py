"""`@task("type")`: marks a function as the handler of a task type, found by `discover`.

The mark lives on the function itself, not in a module-level registry, so importing a module
twice, or two workers in one process (tests), share no state.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from conveyor.worker.errors import NonRetryable, Retryable, WorkerConfigError

ATTRIBUTE = "__conveyor_task__"
TASK_TYPE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TaskDefinition:
    """A task type's handler and how to call it."""

    task_type: str
    function: Callable[..., Any]
    is_async: bool
    takes_context: bool
    """Whether the function takes `ctx` after `inputs` (one-argument functions do not)."""
    retry_on: tuple[type[BaseException], ...] | None = None
    """The exception types whose failures may be retried; None: any."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """The exception types whose failures are final."""

    def retries(self, error: BaseException) -> bool:
        """Whether a failure by `error` may be retried under the task's retry policy:
        `NonRetryable` never, `Retryable` always, else as `non_retryable` and `retry_on`
        say (non_retryable first: it names the exceptions to a rule `retry_on` states)."""
        if isinstance(error, NonRetryable):
            return False
        if isinstance(error, Retryable):
            return True
        if isinstance(error, self.non_retryable):
            return False
        return self.retry_on is None or isinstance(error, self.retry_on)

    @property
    def qualified_name(self) -> str:
        return f"{self.function.__module__}.{self.function.__qualname__}"


ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def task(task_type: str, *, retry_on: ExceptionTypes | None = None,
         non_retryable: ExceptionTypes = ()) -> Callable[[F], F]:
    """Declare `function(inputs, ctx)` (plain or async) as the handler of `task_type`.

    Any exception it raises fails the attempt, retried under the task's retry policy;
    `retry_on` (a type or a tuple, as `except` takes them) retries only those, and
    `non_retryable` never retries those. `Retryable` and `NonRetryable` say so outright."""
    if not TASK_TYPE.match(task_type):
        raise ValueError(f"task type {task_type!r} is not a DNS-1123 label")
    retried = None if retry_on is None else _exception_types("retry_on", retry_on)
    final = _exception_types("non_retryable", non_retryable)

    def mark(function: F) -> F:
        positional = [
            p for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        definition = TaskDefinition(
            task_type=task_type,
            function=function,
            is_async=inspect.iscoroutinefunction(function),
            takes_context=len(positional) >= 2 or any(
                p.kind is p.VAR_POSITIONAL for p in positional),
            retry_on=retried,
            non_retryable=final,
        )
        setattr(function, ATTRIBUTE, definition)
        return function

    return mark


def _exception_types(option: str, given: object) -> tuple[type[BaseException], ...]:
    """`given` as a tuple of exception classes; TypeError naming `option` if it is not."""
    checked: list[type[BaseException]] = []
    for each in given if isinstance(given, tuple) else (given,):
        if not (isinstance(each, type) and issubclass(each, BaseException)):
            raise TypeError(f"@task({option}=...) takes exception classes, not {each!r}")
        checked.append(each)
    return tuple(checked)


def discover(module: ModuleType) -> dict[str, TaskDefinition]:
    """The task types `module` defines at its top level."""
    found: dict[str, TaskDefinition] = {}
    for value in vars(module).values():
        definition = getattr(value, ATTRIBUTE, None)
        if not isinstance(definition, TaskDefinition):
            continue
        other = found.get(definition.task_type)
        if other is not None and other.function is not definition.function:
            raise WorkerConfigError(
                f"module {module.__name__} defines task type {definition.task_type!r} twice:"
                f" {other.qualified_name} and {definition.qualified_name}"
            )
        found[definition.task_type] = definition
    return found


def select(module: ModuleType, task_type: str | None) -> TaskDefinition:
    """The handler of `task_type` in `module`; without a type, the module's only one."""
    found = discover(module)
    if task_type is None:
        if len(found) == 1:
            return next(iter(found.values()))
        listing = ", ".join(sorted(found)) or "none"
        raise WorkerConfigError(
            f"CONVEYOR_TASK_TYPE is not set and module {module.__name__} defines"
            f" {len(found)} task types ({listing}): set it to one of them"
        )
    if task_type not in found:
        listing = ", ".join(sorted(found)) or "none"
        raise WorkerConfigError(
            f"module {module.__name__} defines no task of type {task_type!r}"
            f" (it defines: {listing})"
        )
    return found[task_type]
